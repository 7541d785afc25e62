"""The engine protocol: what the CLI, the server and the benchmarks rely on, whatever runs the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tuned_whisper.types import TranscribeOptions, Transcript

ProgressCallback = Callable[[float], None]
"""Called with the fraction of the work done, from 0.0 to 1.0."""


@dataclass(frozen=True)
class ModelInfo:
    """What is loaded and where it runs."""

    checkpoint: str
    device: str
    dtype: str
    is_multilingual: bool
    adapter: str | None = None


class Transcriber(Protocol):
    """Turns 16 kHz mono float32 audio into a `Transcript`.

    `transcribe_many` takes several requests at once so that an engine can put their 30 s windows in one
    forward pass (the server batches across users through it); `transcribe` is the single-request form.
    """

    info: ModelInfo

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, progress: ProgressCallback | None = None
    ) -> Transcript: ...

    def transcribe_many(
        self, requests: Sequence[tuple[np.ndarray, TranscribeOptions]]
    ) -> list[Transcript]: ...

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]: ...
