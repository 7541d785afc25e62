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
