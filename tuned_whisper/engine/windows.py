"""Long audio as 30 s windows, and the merge of their decoded tokens.

Splitting and merging live apart from the model so that a server can cut requests into windows, let a
model replica decode windows of many requests in one batch, and stitch each request back together.
Two cuts: at pauses, with no overlap (`cut_at_pauses`, the default: each window ends at the quietest
moment of its last seconds, as a reader would pause), or transformers' chunked ASR pipeline's overlapping
strides (window, step = window - 2 * stride). The merge is the pipeline's Whisper decoder (`_decode_asr`),
which resolves overlaps with the timestamp tokens; windows cut at pauses are merged one by one and joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE

TIME_PRECISION_S = 0.02  # one Whisper timestamp token: 30 s over 1,500 encoder positions
WINDOW_SAMPLES = 30 * SAMPLE_RATE
CUT_SEARCH_S = 5.0
"""A window cut at a pause ends at the quietest moment of its last this many seconds."""
QUIET_FRAME = SAMPLE_RATE // 50  # 20 ms energy frames
QUIET_SPAN = 5  # frames averaged: the quietest 100 ms, not one click-free frame inside a word


@dataclass(frozen=True)
class Window:
    """Up to 30 s of audio, its start (samples) and stride: (length, left overlap, right overlap)."""

    samples: np.ndarray
    stride: tuple[int, int, int]
    offset: int = 0

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


def split_windows(audio: np.ndarray, chunk_s: float, stride_s: float) -> list[Window]:
    """Cut audio into `chunk_s` windows that overlap their neighbours by `stride_s` on each side."""
    chunk = round(chunk_s * SAMPLE_RATE)
    stride = round(stride_s * SAMPLE_RATE)
    step = chunk - 2 * stride
    if step <= 0:
        raise ValueError(f"stride {stride_s} s leaves no step in a {chunk_s} s window")
    windows: list[Window] = []
    for start in range(0, max(len(audio), 1), step):
        samples = audio[start : start + chunk]
        is_last = start + chunk >= len(audio)
        left = 0 if start == 0 else stride
        if len(samples) > left or not windows:
            windows.append(
                Window(samples=samples, stride=(len(samples), left, 0 if is_last else stride), offset=start)
            )
        if is_last:
            break
    return windows


def cut_windows(audio: np.ndarray, chunk_s: float, search_s: float = CUT_SEARCH_S) -> list[Window]:
    """Cut audio into windows of at most `chunk_s` that do not overlap, each ending at the quietest
    100 ms of its last `search_s` seconds (fewer windows than strides: 4 for 106 s instead of 5)."""
    chunk = round(chunk_s * SAMPLE_RATE)
    search = min(round(search_s * SAMPLE_RATE), chunk // 2)
    windows: list[Window] = []
    start = 0
    while len(audio) - start > chunk:
        low = start + chunk - search
        cut = low + _quietest(audio[low : start + chunk])
        windows.append(Window(samples=audio[start:cut], stride=(cut - start, 0, 0), offset=start))
        start = cut
    rest = audio[start:]
    windows.append(Window(samples=rest, stride=(len(rest), 0, 0), offset=start))
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
    if len(parts) > 1 and is_cut([window for window, _ in parts]):
        return _join(tokenizer, parts, word_timestamps=word_timestamps)
    return _decode_asr(tokenizer, parts, word_timestamps=word_timestamps)


def _join(
    tokenizer: Any, parts: Sequence[tuple[Window, Decoded]], *, word_timestamps: bool
) -> tuple[str, list[dict[str, Any]]]:
    """Windows without overlaps, merged one by one: their chunks shifted to the window's start, joined.
    (The pipeline's merge would look for overlaps and could drop a phrase that ends one window and
    happens to start the next.)"""
    texts: list[str] = []
    chunks: list[dict[str, Any]] = []
    for window, decoded in parts:
        text, own = _decode_asr(tokenizer, [(window, decoded)], word_timestamps=word_timestamps)
        texts.append(text)
        offset = window.offset / SAMPLE_RATE
        end = offset + len(window.samples) / SAMPLE_RATE
        for chunk in own:
            first, last = chunk.get("timestamp") or (None, None)
            shifted = (offset if first is None else offset + first, end if last is None else offset + last)
            chunks.append({**chunk, "timestamp": shifted})
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
