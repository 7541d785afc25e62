"""Long audio as 30 s windows with overlapping strides, and the merge of their decoded tokens.

Splitting and merging live apart from the model so that a server can cut requests into windows, let a
model replica decode windows of many requests in one batch, and stitch each request back together.
The cut follows transformers' chunked ASR pipeline (window, step = window - 2 * stride), and the merge is
its Whisper decoder (`_decode_asr`), which resolves the overlaps with the timestamp tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE

TIME_PRECISION_S = 0.02  # one Whisper timestamp token: 30 s over 1,500 encoder positions
WINDOW_SAMPLES = 30 * SAMPLE_RATE


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


def merge_windows(
    tokenizer: Any, parts: Sequence[tuple[Window, Decoded]], *, word_timestamps: bool
) -> tuple[str, list[dict[str, Any]]]:
    """Stitch decoded windows into (text, chunks), chunks as the pipeline returns them."""
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
