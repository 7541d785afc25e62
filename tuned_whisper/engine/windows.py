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


@dataclass(frozen=True)
class Window:
    """Up to 30 s of audio and its stride in samples: (length, overlap on the left, overlap on the right)."""

    samples: np.ndarray
    stride: tuple[int, int, int]


@dataclass(frozen=True)
class WindowOutput:
    """What the model produced for one window: token ids and, for word timestamps, a time per token."""

    tokens: np.ndarray
    stride: tuple[int, int, int]
    token_timestamps: np.ndarray | None = None


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
            windows.append(Window(samples=samples, stride=(len(samples), left, 0 if is_last else stride)))
        if is_last:
            break
    return windows


def merge_windows(
    tokenizer: Any, outputs: Sequence[WindowOutput], *, word_timestamps: bool
) -> tuple[str, list[dict[str, Any]]]:
    """Stitch decoded windows into (text, chunks), chunks as the pipeline returns them."""
    model_outputs = []
    for output in outputs:
        length, left, right = output.stride
        item: dict[str, Any] = {
            "tokens": output.tokens[np.newaxis, :],
            "stride": (length / SAMPLE_RATE, left / SAMPLE_RATE, right / SAMPLE_RATE),
        }
        if word_timestamps and output.token_timestamps is not None:
            item["token_timestamps"] = output.token_timestamps[np.newaxis, :]
        model_outputs.append(item)
    text, optional = tokenizer._decode_asr(
        model_outputs,
        return_timestamps="word" if word_timestamps else True,
        return_language=None,
        time_precision=TIME_PRECISION_S,
    )
    return text, optional.get("chunks", [])
