"""Long audio as 30 s windows, and the merge of their decoded tokens.

Splitting and merging live apart from the model so that a server can cut requests into windows, let a
model replica decode windows of many requests in one batch, and stitch each request back together.
Two cuts: transformers' chunked ASR pipeline's overlapping strides (window, step = window - 2 * stride;
the default), or at pauses, with no overlap (`cut_at_pauses`: each window ends at the quietest moment of
its last seconds, as a reader would pause). Overlapping windows are trimmed where neighbours read the same
words (`trim_overlaps`); then every window's tokens are read alone by the pipeline's Whisper decoder
(`_decode_asr`) and joined, shifted to the window's start.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE, Samples

TIME_PRECISION_S = 0.02  # one Whisper timestamp token: 30 s over 1,500 encoder positions
WINDOW_SAMPLES = 30 * SAMPLE_RATE
CUT_SEARCH_S = 5.0
"""A window cut at a pause ends at the quietest moment of its last this many seconds."""
QUIET_FRAME = SAMPLE_RATE // 50  # 20 ms energy frames
QUIET_SPAN = 5  # frames averaged: the quietest 100 ms, not one click-free frame inside a word


_UNREAD = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class Window:
    """Up to 30 s of audio, its start (samples) and stride: (length, left overlap, right overlap).

    A planned window (`Window.planned`) has a place but no samples yet: long audio is read one window
    at a time (`read`), as it is decoded, and the merge needs only the places."""

    samples: np.ndarray
    stride: tuple[int, int, int]
    offset: int = 0

    @classmethod
    def planned(cls, stride: tuple[int, int, int], offset: int) -> Window:
        return cls(_UNREAD, stride, offset)

    @property
    def length(self) -> int:
        """Its length in samples."""
        return self.stride[0]

    def read(self, audio: Samples) -> Window:
        """This window with its samples read from `audio`."""
        return dataclasses.replace(self, samples=audio[self.offset : self.offset + self.length])

    @property
    def core(self) -> tuple[float, float]:
        """The span in seconds this window alone answers for (its overlaps belong to its neighbours too)."""
        length, left, right = self.stride
        return (self.offset + left) / SAMPLE_RATE, (self.offset + length - right) / SAMPLE_RATE


@dataclass(frozen=True)
class Decoded:
    """What the model made of one window: generated tokens (timestamps included, no prompt, no
    end-of-text) and Whisper's quality signals for that decode."""

    tokens: np.ndarray
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    language: str
    compression_ratio: float = 0.0
    token_timestamps: np.ndarray | None = None
    """Seconds from the window's start for each token, when word timestamps were asked for."""


def split_windows(audio: Samples, chunk_s: float, stride_s: float) -> list[Window]:
    """Cut audio into `chunk_s` windows that overlap their neighbours by `stride_s` on each side."""
    return [window.read(audio) for window in plan_windows(len(audio), chunk_s, stride_s)]


def plan_windows(n_samples: int, chunk_s: float, stride_s: float) -> list[Window]:
    """Where `split_windows` cuts `n_samples` of audio, as planned windows (no samples read)."""
    chunk = round(chunk_s * SAMPLE_RATE)
    stride = round(stride_s * SAMPLE_RATE)
    step = chunk - 2 * stride
    if step <= 0:
        raise ValueError(f"stride {stride_s} s leaves no step in a {chunk_s} s window")
    windows: list[Window] = []
    for start in range(0, max(n_samples, 1), step):
        length = max(0, min(chunk, n_samples - start))
        is_last = start + chunk >= n_samples
        left = 0 if start == 0 else stride
        if length > left or not windows:
            windows.append(Window.planned((length, left, 0 if is_last else stride), start))
        if is_last:
            break
    return windows


def cut_windows(audio: Samples, chunk_s: float, search_s: float = CUT_SEARCH_S) -> list[Window]:
    """Cut audio into windows of at most `chunk_s` that do not overlap, each ending at the quietest
    100 ms of its last `search_s` seconds (fewer windows than strides: 4 for 106 s instead of 5)."""
    return [window.read(audio) for window in plan_cuts(audio, chunk_s, search_s)]


def plan_cuts(audio: Samples, chunk_s: float, search_s: float = CUT_SEARCH_S) -> list[Window]:
    """Where `cut_windows` cuts, as planned windows: only the last seconds of each are read."""
    chunk = round(chunk_s * SAMPLE_RATE)
    search = min(round(search_s * SAMPLE_RATE), chunk // 2)
    windows: list[Window] = []
    start = 0
    while len(audio) - start > chunk:
        low = start + chunk - search
        cut = low + _quietest(audio[low : start + chunk])
        windows.append(Window.planned((cut - start, 0, 0), start))
        start = cut
    windows.append(Window.planned((len(audio) - start, 0, 0), start))
    return windows


def _quietest(audio: np.ndarray) -> int:
    """Where in `audio` its quietest `QUIET_SPAN` frames are centred, in samples."""
    frames = len(audio) // QUIET_FRAME
    if frames <= QUIET_SPAN:
        return len(audio)
    energy = np.square(audio[: frames * QUIET_FRAME].astype(np.float64)).reshape(frames, QUIET_FRAME).sum(1)
    smooth = np.convolve(energy, np.ones(QUIET_SPAN), mode="valid")
    return (int(np.argmin(smooth)) + QUIET_SPAN // 2) * QUIET_FRAME + QUIET_FRAME // 2


def is_cut(windows: Sequence[Window]) -> bool:
    """Whether the windows were cut without overlaps (one window counts as either)."""
    return all(w.stride[1] == 0 and w.stride[2] == 0 for w in windows)


def merge_windows(
    tokenizer: Any, parts: Sequence[tuple[Window, Decoded]], *, word_timestamps: bool
) -> tuple[str, list[dict[str, Any]]]:
    """Stitch decoded windows into (text, chunks), chunks as the pipeline returns them."""
    if len(parts) == 1:
        return _decode_asr(tokenizer, parts, word_timestamps=word_timestamps)
    if not is_cut([window for window, _ in parts]):
        parts = trim_overlaps(parts, tokenizer)
    return _join(tokenizer, parts, word_timestamps=word_timestamps)


MIN_AGREEMENT = 2
"""Text tokens two overlapping windows must read alike, in a row, to be spliced there."""


@dataclass
class _Piece:
    """One window's decoded tokens, the span [start, stop) of them it keeps, and each token's segment
    (seconds from the start of the audio) as its timestamps bound it."""

    window: Window
    decoded: Decoded
    tokens: list[int]
    seg_start: list[float]
    seg_end: list[float]
    is_text: list[bool]
    start: int = 0
    stop: int = 0
    opening: float | None = None
    closing: float | None = None

    @classmethod
    def of(cls, window: Window, decoded: Decoded, first_timestamp: int) -> _Piece:
        tokens = [int(t) for t in decoded.tokens]
        at = window.offset / SAMPLE_RATE
        end = at + window.length / SAMPLE_RATE
        is_text = [t < first_timestamp for t in tokens]
        seg_start, seg_end = [at] * len(tokens), [end] * len(tokens)
        current = at
        for i, token in enumerate(tokens):
            if not is_text[i]:
                current = at + (token - first_timestamp) * TIME_PRECISION_S
            seg_start[i] = current
        current = end
        for i in range(len(tokens) - 1, -1, -1):
            if not is_text[i]:
                current = at + (tokens[i] - first_timestamp) * TIME_PRECISION_S
            seg_end[i] = current
        return cls(window, decoded, tokens, seg_start, seg_end, is_text, stop=len(tokens))

    def text_where(self, keep: Callable[[int], bool]) -> list[int]:
        return [i for i in range(self.start, self.stop) if self.is_text[i] and keep(i)]

    def kept(self, first_timestamp: int) -> tuple[Window, Decoded]:
        """The window cut to what it keeps, as a window without overlaps (timestamps closed)."""
        at = self.window.offset / SAMPLE_RATE
        tokens = self.tokens[self.start : self.stop]
        times = self.decoded.token_timestamps
        kept_times = None if times is None else [float(t) for t in times[self.start : self.stop]]

        def stamp(seconds: float) -> int:
            return first_timestamp + max(0, min(1500, round((seconds - at) / TIME_PRECISION_S)))

        if self.opening is not None:
            tokens.insert(0, stamp(self.opening))
            if kept_times is not None:
                kept_times.insert(0, self.opening - at)
        if self.closing is not None:
            tokens.append(stamp(self.closing))
            if kept_times is not None:
                kept_times.append(self.closing - at)
        decoded = dataclasses.replace(
            self.decoded,
            tokens=np.asarray(tokens, dtype=np.int64),
            token_timestamps=None if kept_times is None else np.asarray(kept_times, dtype=np.float32),
        )
        return Window(self.window.samples, (self.window.length, 0, 0), self.window.offset), decoded


def trim_overlaps(parts: Sequence[tuple[Window, Decoded]], tokenizer: Any) -> list[tuple[Window, Decoded]]:
    """Overlapping windows cut to pieces that do not overlap, so that each word is read once.

    Where two neighbours read the same run of words in their overlap, the earlier keeps the run's first
    half and the later the rest (the earlier window's reading of its last seconds is cut off mid-word at
    its end; the later one heard them with context). Where they agree on nothing, whole segments go to
    the window whose core holds them: the earlier keeps the segments starting before its core ends, the
    later those whose middle lies past the end of what the earlier kept.
    """
    first_timestamp = tokenizer.convert_tokens_to_ids("<|0.00|>")
    pieces = [_Piece.of(window, decoded, first_timestamp) for window, decoded in parts]

    def starts_word(token: int) -> bool:
        return tokenizer.decode([token]).startswith(" ")

    for left, right in itertools.pairwise(pieces):
        _splice(left, right, starts_word)
    return [piece.kept(first_timestamp) for piece in pieces]


def _splice(left: _Piece, right: _Piece, starts_word: Callable[[int], bool]) -> None:
    overlap_from = right.window.offset / SAMPLE_RATE
    overlap_to = (left.window.offset + left.window.length) / SAMPLE_RATE
    ours = left.text_where(lambda i: left.seg_end[i] > overlap_from)
    theirs = right.text_where(lambda i: right.seg_start[i] < overlap_to)
    match = difflib.SequenceMatcher(
        None, [left.tokens[i] for i in ours], [right.tokens[i] for i in theirs], autojunk=False
    ).find_longest_match()
    if match.size >= MIN_AGREEMENT:
        run_left, run_right = ours[match.a : match.a + match.size], theirs[match.b : match.b + match.size]
        k = _split_point(run_left, run_right, [starts_word(left.tokens[i]) for i in run_left])
        cut_left, cut_right = run_left[k], run_right[k]
        left.stop = max(left.start, _segment_opening(left, cut_left))
        right.start = _segment_opening(right, cut_right)
        if left.stop != cut_left:  # at a segment boundary of the earlier window: its time holds
            seconds = left.seg_start[cut_left]
        elif right.start != cut_right:
            seconds = right.seg_start[cut_right]
        else:
            seconds = _time_of(left, cut_left)
        if left.stop == cut_left:
            left.closing = seconds
        if right.start == cut_right:
            right.opening = seconds
        return
    core_end = left.window.core[1]
    late = left.text_where(lambda i: left.seg_start[i] >= core_end)
    if late:
        left.stop = max(left.start, _segment_opening(left, late[0]))
    kept = left.text_where(lambda i: True)
    covered = left.seg_end[kept[-1]] if kept else left.window.offset / SAMPLE_RATE
    early = right.text_where(lambda i: (right.seg_start[i] + right.seg_end[i]) / 2 >= covered)
    right.start = _segment_opening(right, early[0]) if early else right.stop


def _split_point(ours: list[int], theirs: list[int], word_starts: list[bool]) -> int:
    """Where in a run both windows read alike to cut it: at a segment boundary of the earlier window
    (its times are the ones kept), else of the later one, else at the word start nearest the middle."""
    middle = len(ours) // 2
    for run in (ours, theirs):
        bounds = [k for k in range(1, len(run)) if run[k] != run[k - 1] + 1]  # timestamps between
        if bounds:
            return min(bounds, key=lambda k: abs(k - middle))
    starts = [k for k in range(1, len(ours)) if word_starts[k]] or [middle]
    return min(starts, key=lambda k: abs(k - middle))


def _time_of(piece: _Piece, index: int) -> float:
    """A text token's time, spread evenly over its segment."""
    first, last = piece.seg_start[index], piece.seg_end[index]
    same = [i for i in range(len(piece.tokens)) if piece.is_text[i] and piece.seg_start[i] == first]
    share = same.index(index) / len(same) if index in same else 0.0
    return first + (last - first) * share


def _segment_opening(piece: _Piece, text_index: int) -> int:
    """The index of the timestamp that opens the segment of text token `text_index` (or the token)."""
    if text_index > piece.start and not piece.is_text[text_index - 1]:
        return text_index - 1
    return text_index


def _join(
    tokenizer: Any, parts: Sequence[tuple[Window, Decoded]], *, word_timestamps: bool
) -> tuple[str, list[dict[str, Any]]]:
    """Windows without overlaps, merged one by one: their chunks shifted to the window's start, joined.
    (The pipeline's merge would look for overlaps and could drop a phrase that ends one window and
    happens to start the next.)"""
    texts: list[str] = []
    chunks: list[dict[str, Any]] = []
    previous = 0.0  # times only move forward, whatever a window's estimate at a splice
    for window, decoded in parts:
        text, own = _decode_asr(tokenizer, [(window, decoded)], word_timestamps=word_timestamps)
        texts.append(text)
        offset = window.offset / SAMPLE_RATE
        end = offset + window.length / SAMPLE_RATE
        for chunk in own:
            first, last = chunk.get("timestamp") or (None, None)
            start = max(offset if first is None else offset + first, previous)
            previous = max(start, end if last is None else offset + last)
            chunks.append({**chunk, "timestamp": (start, previous)})
    return "".join(texts), chunks


def _decode_asr(
    tokenizer: Any, parts: Sequence[tuple[Window, Decoded]], *, word_timestamps: bool
) -> tuple[str, list[dict[str, Any]]]:
    model_outputs = []
    for window, decoded in parts:
        length, left, right = window.stride
        item: dict[str, Any] = {
            "tokens": np.asarray(decoded.tokens, dtype=np.int64)[np.newaxis, :],
            "stride": (length / SAMPLE_RATE, left / SAMPLE_RATE, right / SAMPLE_RATE),
        }
        if word_timestamps:
            times = decoded.token_timestamps
            if times is None or len(times) != len(decoded.tokens):
                times = np.zeros(len(decoded.tokens), dtype=np.float32)
            item["token_timestamps"] = np.asarray(times, dtype=np.float32)[np.newaxis, :]
        model_outputs.append(item)
    text, optional = tokenizer._decode_asr(
        model_outputs,
        return_timestamps="word" if word_timestamps else True,
        return_language=None,
        time_precision=TIME_PRECISION_S,
    )
    return text, optional.get("chunks", [])
