"""Typed results and options shared by the engine, the writers, the CLI and the server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class Word:
    """One word with its time span in seconds from the start of the audio."""

    start: float
    end: float
    word: str


@dataclass(frozen=True)
class Segment:
    """A stretch of speech as Whisper emitted it between two timestamp tokens."""

    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    tokens: tuple[int, ...] = ()
    """The segment's text tokens (Whisper's vocabulary)."""
    avg_logprob: float = 0.0
    """Average log-probability of the tokens of the decode this segment came from."""
    compression_ratio: float = 0.0
    """gzip compression ratio of that decode's text (high: repetition)."""
    no_speech_prob: float = 0.0
    """Probability of `<|nospeech|>` at the start of that decode."""
    temperature: float = 0.0
    """The temperature that decode was made at (above 0 after a fallback)."""


@dataclass(frozen=True)
class Transcript:
    """The result of transcribing (or translating) one piece of audio."""

    text: str
    language: str | None
    duration: float
    segments: tuple[Segment, ...] = ()
    task: Task = "transcribe"

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in self.segments for w in s.words)


@dataclass(frozen=True)
class TranscribeOptions:
    """What the caller asks of one transcription; decoding defaults are set in the engine."""

    language: str | None = None  # None: detect
    task: Task = "transcribe"
    initial_prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    adapter: str | None = None
    """The registry adapter (by name) to decode with; None: the base checkpoint."""
