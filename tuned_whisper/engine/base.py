"""The engine's protocols: `WindowDecoder`, which every backend implements (30 s windows in, tokens and
Whisper's quality signals out), and `Transcriber`, the whole-file API the CLI and benchmarks use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tuned_whisper.audio import Samples
from tuned_whisper.engine.windows import Decoded
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
    backend: str = "transformers"


@dataclass(frozen=True)
class Vocabulary:
    """The special token ids that decoding logic outside the backend needs."""

    eot: int
    timestamp_begin: int
    """Id of `<|0.00|>`; the id of a time t is timestamp_begin + round(t / 0.02)."""

    def is_timestamp(self, token: int) -> bool:
        return token >= self.timestamp_begin

    def timestamp(self, seconds: float) -> int:
        return self.timestamp_begin + max(0, min(1500, round(seconds / 0.02)))


class WindowDecoder(Protocol):
    """A backend: decodes batches of up to 30 s windows. Nothing else about long audio is its business."""

    info: ModelInfo
    vocab: Vocabulary
    tokenizer: Any
    """The checkpoint's Hugging Face `WhisperTokenizer` (text of tokens, the long-form merge)."""

    def detect_languages(self, heads: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Language code and probability of each window, in one batch."""
        ...

    def decode(
        self,
        windows: Sequence[np.ndarray],
        languages: Sequence[str | None],
        options: TranscribeOptions,
        temperature: float,
    ) -> list[Decoded]:
        """One decode of each window at `temperature`; a `None` language is detected from that window."""
        ...


class Transcriber(Protocol):
    """Turns 16 kHz mono float32 audio into a `Transcript`.

    `transcribe_many` takes several requests at once so that their 30 s windows share forward passes;
    `transcribe` is the single-request form.
    """

    info: ModelInfo

    def transcribe(
        self, audio: Samples, options: TranscribeOptions, progress: ProgressCallback | None = None
    ) -> Transcript: ...

    def transcribe_many(self, requests: Sequence[tuple[Samples, TranscribeOptions]]) -> list[Transcript]: ...

    def detect_language(self, audio: np.ndarray) -> tuple[str, float]: ...
