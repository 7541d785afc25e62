"""Several short clips in one 30 s window: silence between them, one decode, each clip's segments back.

On a CPU the encoder costs the same for 1 s or 30 s of audio, so packing short clips is what pays. A
packed decode is only trusted when every segment falls inside one clip's span and every clip got text;
otherwise the clips it touched are decoded alone.
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


@dataclass(frozen=True)
class Pack:
    """Clips laid out in one window: their indices (in the caller's list) and sample offsets."""

    members: tuple[int, ...]
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    samples: np.ndarray


@dataclass(frozen=True)
class TimedSegment:
    """A stretch between two timestamp tokens of a decode, in seconds from the window's start."""

    start: float
    end: float
    text: tuple[int, ...]


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


def timed_segments(tokens: Sequence[int], vocab: Vocabulary) -> list[TimedSegment] | None:
    """The decode's segments; None when it does not close its last segment with a timestamp."""
    segments: list[TimedSegment] = []
    start: float | None = None
    text: list[int] = []
    for token in tokens:
        if token == vocab.eot:
            break
        if not vocab.is_timestamp(token):
            text.append(token)
            continue
        seconds = (token - vocab.timestamp_begin) * 0.02
        if start is None or not text:
            start = seconds
        else:
            segments.append(TimedSegment(start, seconds, tuple(text)))
            start, text = None, []
    return None if text else segments


def unpack(pack: Pack, decoded: Decoded, vocab: Vocabulary, gap: int) -> list[Decoded | None]:
    """Each member's share of the packed decode, timed from its own start; None where in doubt."""
    segments = timed_segments([int(t) for t in decoded.tokens], vocab)
    if segments is None:
        return [None] * len(pack.members)
    slack = gap / 2 / SAMPLE_RATE
    spans = [
        (offset / SAMPLE_RATE, (offset + length) / SAMPLE_RATE)
        for offset, length in zip(pack.offsets, pack.lengths, strict=True)
    ]
    mine: list[list[TimedSegment]] = [[] for _ in spans]
    doubt = [False] * len(spans)
    for segment in segments:
        owners = [
            n for n, (a, b) in enumerate(spans) if segment.start < b + slack and segment.end > a - slack
        ]
        # A segment that starts after its clip's last sample (or ends before its first) was said in the
        # silence between clips: Whisper's "Thank you." on silence, attributed to the clip before it.
        inside = [
            n
            for n in owners
            if spans[n][0] - slack <= segment.start < spans[n][1]
            and spans[n][0] < segment.end <= spans[n][1] + slack
        ]
        if len(owners) == 1 and inside:
            mine[owners[0]].append(segment)
        else:
            for n in owners:
                doubt[n] = True
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
        results.append(dataclasses.replace(decoded, tokens=np.asarray(tokens, dtype=np.int64)))
    return results
