"""Several short clips in one 30 s window: silence between them, one decode, each clip's segments back.

On a CPU the encoder costs the same for 1 s or 30 s of audio, so packing short clips is what pays. A
packed decode is only trusted when every segment falls inside one clip's span and every clip got text;
otherwise the clips it touched are decoded alone.

Which clip a segment belongs to is read from where its words were heard (the decoder's alignment of each
token, `Decoded.token_timestamps`) when the decode has them, else from Whisper's timestamp tokens alone.
Whisper often times the segments of a packed window as if they followed each other without the silence
between them (`<|0.00|> One.<|2.00|><|2.00|> Two.<|4.00|>` for clips at 0 s and 5 s); its segment
boundaries still fall between the clips, and the alignment places each segment in the right one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE
from tuned_whisper.engine.base import Vocabulary
from tuned_whisper.engine.windows import WINDOW_SAMPLES, Decoded

_MARGIN = SAMPLE_RATE // 2  # room left at the window's end: Whisper ends late segments at the edge
CAPACITY_S = (WINDOW_SAMPLES - _MARGIN) / SAMPLE_RATE
"""Seconds of clips and gaps one packed window holds."""


@dataclass(frozen=True)
class Pack:
    """Clips laid out in one window: their indices (in the caller's list) and sample offsets."""

    members: tuple[int, ...]
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    samples: np.ndarray


_MOSTLY = 0.75
"""The share of a segment's hearing that must lie in one clip when it overlaps several."""


@dataclass(frozen=True)
class TimedSegment:
    """A stretch between two timestamp tokens of a decode, in seconds from the window's start; when the
    decode was aligned, `heard` holds where its text began to be heard and where each text token ended."""

    start: float
    end: float
    text: tuple[int, ...]
    heard: tuple[float, ...] = ()


def plan(lengths: Sequence[int], gap: int, capacity: int = WINDOW_SAMPLES - _MARGIN) -> list[list[int]]:
    """Group clip indices, in order, into windows that hold them with `gap` samples between them."""
    groups: list[list[int]] = []
    used: list[int] = []
    for index, length in enumerate(lengths):
        for group, size in enumerate(used):
            if size + gap + length <= capacity:
                groups[group].append(index)
                used[group] = size + gap + length
                break
        else:
            groups.append([index])
            used.append(length)
    return groups


def build(members: Sequence[int], clips: Sequence[np.ndarray], gap: int) -> Pack:
    """The packed window for `members` (indices into `clips`)."""
    pieces: list[np.ndarray] = []
    offsets: list[int] = []
    position = 0
    for n, index in enumerate(members):
        if n:
            pieces.append(np.zeros(gap, dtype=np.float32))
            position += gap
        offsets.append(position)
        pieces.append(np.asarray(clips[index], dtype=np.float32))
        position += len(clips[index])
    # silence after the last clip too: Whisper tends to drop a last segment that ends at the window's edge
    pieces.append(np.zeros(max(0, min(gap, WINDOW_SAMPLES - position)), dtype=np.float32))
    lengths = tuple(len(clips[i]) for i in members)
    return Pack(tuple(members), tuple(offsets), lengths, np.concatenate(pieces))


def timed_segments(
    tokens: Sequence[int], vocab: Vocabulary, times: Sequence[float] | None = None
) -> list[TimedSegment] | None:
    """The decode's segments; None when it does not close its last segment with a timestamp. `times`
    (one per token) give each segment's `heard`."""
    segments: list[TimedSegment] = []
    start: float | None = None
    text: list[int] = []
    heard: list[float] = []
    ended = 0.0  # where the alignment heard the last text token end (a token's time is its end)
    for n, token in enumerate(tokens):
        if token == vocab.eot:
            break
        if not vocab.is_timestamp(token):
            text.append(token)
            if times is not None:
                if not heard:
                    heard.append(ended)  # the segment was heard from where the text before it ended
                ended = float(times[n])
                heard.append(ended)
            continue
        seconds = (token - vocab.timestamp_begin) * 0.02
        if start is None or not text:
            start = seconds
        else:
            segments.append(TimedSegment(start, seconds, tuple(text), tuple(heard)))
            start, text, heard = None, [], []
    return None if text else segments


def unpack(pack: Pack, decoded: Decoded, vocab: Vocabulary, gap: int) -> list[Decoded | None]:
    """Each member's share of the packed decode, timed from its own start; None where in doubt."""
    times = decoded.token_timestamps
    segments = timed_segments([int(t) for t in decoded.tokens], vocab, times)
    if segments is None:
        return [None] * len(pack.members)
    slack = gap / 2 / SAMPLE_RATE
    spans = [
        (offset / SAMPLE_RATE, (offset + length) / SAMPLE_RATE)
        for offset, length in zip(pack.offsets, pack.lengths, strict=True)
    ]
    mine: list[list[TimedSegment]] = [[] for _ in spans]
    doubt = [False] * len(spans)
    last_owner = -1
    for segment in segments:
        if times is not None:
            owner, touched = _heard_owner(segment, spans, slack)
        else:
            owner, touched = _timed_owner(segment, spans, slack)
        if owner is None or owner < last_owner:  # out of order: something was made up or misheard
            for n in (*touched, *([last_owner] if owner is not None and owner < last_owner else [])):
                doubt[n] = True
            continue
        mine[owner].append(_timed_within(segment, spans[owner]) if times is not None else segment)
        last_owner = owner
    results: list[Decoded | None] = []
    for n, (start, end) in enumerate(spans):
        if doubt[n] or not mine[n]:
            results.append(None)
            continue
        tokens: list[int] = []
        for segment in mine[n]:
            tokens.append(vocab.timestamp(min(max(segment.start - start, 0.0), end - start)))
            tokens.extend(segment.text)
            tokens.append(vocab.timestamp(min(max(segment.end - start, 0.0), end - start)))
        share = np.asarray(tokens, dtype=np.int64)
        results.append(dataclasses.replace(decoded, tokens=share, token_timestamps=None))
    return results


def _timed_owner(
    segment: TimedSegment, spans: Sequence[tuple[float, float]], slack: float
) -> tuple[int | None, list[int]]:
    """The clip a segment's timestamps put it in, and every clip it touches."""
    owners = [n for n, (a, b) in enumerate(spans) if segment.start < b + slack and segment.end > a - slack]
    # A segment that starts after its clip's last sample (or ends before its first) was said in the
    # silence between clips: Whisper's "Thank you." on silence, attributed to the clip before it.
    inside = [
        n
        for n in owners
        if spans[n][0] - slack <= segment.start < spans[n][1]
        and spans[n][0] < segment.end <= spans[n][1] + slack
    ]
    return (owners[0] if len(owners) == 1 and inside else None), owners


def _heard_owner(
    segment: TimedSegment, spans: Sequence[tuple[float, float]], slack: float
) -> tuple[int | None, list[int]]:
    """The clip a segment was heard in, and the clips its hearing overlaps.

    The alignment gives the silence between two clips to a word next to it (either one), so a segment's
    hearing often reaches into the silence and a little past it: the segment belongs to the one clip it
    overlaps, or to the one holding most (`_MOSTLY`) of its overlap, where Whisper's times agree or say
    nothing. Heard only in silence, or timed in silence with no word ending in the clip, it is in doubt.
    """
    if len(segment.heard) < 2:
        return None, []
    start, end = segment.heard[0], segment.heard[-1]
    overlaps = {n: min(b, end) - max(a, start) for n, (a, b) in enumerate(spans)}
    touched = sorted(n for n, overlap in overlaps.items() if overlap > 0)
    if not touched:  # heard only in silence: made up, or misheard; the clips beside it are decoded alone
        return None, [n for n, (a, b) in enumerate(spans) if a - slack <= end and start <= b + slack]
    owner = max(touched, key=lambda n: overlaps[n])
    timed, _ = _timed_owner(segment, spans, slack)
    if len(touched) > 1 and timed != owner and overlaps[owner] < _MOSTLY * sum(overlaps[n] for n in touched):
        return None, touched
    a, b = spans[owner]
    timed_in_silence = segment.start >= b or segment.end <= a
    if timed_in_silence and not any(a - 0.5 <= t <= b + 0.5 for t in segment.heard[1:]):
        return None, touched
    return owner, touched


def _timed_within(segment: TimedSegment, span: tuple[float, float]) -> TimedSegment:
    """The segment with Whisper's times where they lie in its clip, else where its words were heard (each
    token's time is where it ends, so the segment starts a little before its first)."""
    a, b = span
    if a <= segment.start < b and a < segment.end <= b + 0.5:
        return segment
    start = min(max(a, segment.heard[1] - 0.5), b)
    return dataclasses.replace(segment, start=start, end=min(b, max(segment.heard[-1], start + 0.1)))
