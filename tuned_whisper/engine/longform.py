"""THE long-file path, for every mode (CLI, API, UI, and what comes): voice-activity filter, 30 s
windows with strides, language, windows sent to a runner (in-process or the model replicas), the
merge, and times mapped back to the original audio."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE
from tuned_whisper.engine.batching import WindowJob
from tuned_whisper.engine.segments import segments_from_chunks, segments_from_words
from tuned_whisper.engine.windows import WINDOW_SAMPLES, Decoded, Window, merge_windows, split_windows
from tuned_whisper.languages import language_code
from tuned_whisper.types import Segment, TranscribeOptions, Transcript, Word

if TYPE_CHECKING:
    from tuned_whisper.config import EngineSettings
    from tuned_whisper.engine.base import ProgressCallback
    from tuned_whisper.vad import SpeechOnly

MIN_SAMPLES = SAMPLE_RATE // 10
"""Audio shorter than 0.1 s (after the voice-activity filter) holds no word; it is not decoded."""


class WindowRunner(Protocol):
    """Where windows are decoded: a batcher in this process, or the model replicas."""

    async def decode(self, job: WindowJob) -> Decoded: ...


def stride_seconds(engine: EngineSettings) -> float:
    """The overlap on each side of a window: the setting, else a sixth of the window (5 s of 30 s)."""
    return engine.stride_length_s if engine.stride_length_s is not None else engine.chunk_length_s / 6


class LongForm:
    """Turns one request's audio into a `Transcript` through any `WindowRunner`."""

    def __init__(self, tokenizer: Any, engine: EngineSettings, *, windows_in_flight: int = 16) -> None:
        self.tokenizer = tokenizer
        self.engine = engine
        self.stride_s = stride_seconds(engine)
        self.windows_in_flight = windows_in_flight

    def speech(self, audio: np.ndarray) -> SpeechOnly | None:
        """The speech to decode, or None when the voice-activity filter is off."""
        if not self.engine.vad_filter:
            return None
        from tuned_whisper.vad import keep_speech

        return keep_speech(audio)

    async def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        runner: WindowRunner,
        *,
        caller: str = "",
        progress: ProgressCallback | None = None,
    ) -> Transcript:
        duration = len(audio) / SAMPLE_RATE
        speech = await asyncio.to_thread(self.speech, audio) if self.engine.vad_filter else None
        work = speech.audio if speech is not None else audio
        language = language_code(options.language) if options.language else None
        if len(work) < MIN_SAMPLES:
            return Transcript(text="", language=language, duration=duration, task=options.task)
        windows = split_windows(work, self.engine.chunk_length_s, self.stride_s)
        packable = len(windows) == 1 and len(work) < WINDOW_SAMPLES
        done = 0

        def job(window: Window, language: str | None) -> WindowJob:
            return WindowJob(window.samples, options, language, caller=caller, packable=packable)

        async def decode(window: Window, language: str | None, gate: asyncio.Semaphore) -> Decoded:
            nonlocal done
            async with gate:
                decoded = await runner.decode(job(window, language))
            done += 1
            if progress is not None:
                progress(done / len(windows))
            return decoded

        gate = asyncio.Semaphore(self.windows_in_flight)
        head: list[Decoded] = []
        if language is None:  # the first window's decode finds the language for the rest
            head = [await decode(windows[0], None, gate)]
            language = head[0].language
        rest = await asyncio.gather(*(decode(w, language, gate) for w in windows[len(head) :]))
        transcript = build_transcript(self.tokenizer, windows, [*head, *rest], options, language, len(work))
        return remap(transcript, speech, duration)


def build_transcript(
    tokenizer: Any,
    windows: Sequence[Window],
    decoded: Sequence[Decoded],
    options: TranscribeOptions,
    language: str,
    n_samples: int,
) -> Transcript:
    """Merge decoded windows into a `Transcript`, each segment with the signals of its window's decode."""
    parts = list(zip(windows, decoded, strict=True))
    text, chunks = merge_windows(tokenizer, parts, word_timestamps=options.word_timestamps)
    duration = n_samples / SAMPLE_RATE
    merged = (
        segments_from_words(chunks, duration)
        if options.word_timestamps
        else segments_from_chunks(chunks, duration)
    )
    segments = tuple(_with_signals(s, windows, decoded, tokenizer) for s in merged)
    return Transcript(
        text=text.strip(), language=language, duration=duration, segments=segments, task=options.task
    )


def _with_signals(
    segment: Segment, windows: Sequence[Window], decoded: Sequence[Decoded], tokenizer: Any
) -> Segment:
    index = next((i for i, w in enumerate(windows) if segment.start < w.core[1]), len(windows) - 1)
    source = decoded[index]
    return dataclasses.replace(
        segment,
        tokens=tuple(tokenizer.encode(segment.text, add_special_tokens=False)),
        avg_logprob=source.avg_logprob,
        compression_ratio=source.compression_ratio,
        no_speech_prob=source.no_speech_prob,
        temperature=source.temperature,
    )


def remap(transcript: Transcript, speech: SpeechOnly | None, duration: float) -> Transcript:
    """Times in the speech-only audio → times in the original; the original's duration."""
    if speech is None:
        return dataclasses.replace(transcript, duration=duration)

    def word(w: Word) -> Word:
        return Word(speech.original_time(w.start), speech.original_time(w.end, is_end=True), w.word)

    segments = tuple(
        dataclasses.replace(
            s,
            start=speech.original_time(s.start),
            end=speech.original_time(s.end, is_end=True),
            words=tuple(word(w) for w in s.words),
        )
        for s in transcript.segments
    )
    return dataclasses.replace(transcript, segments=segments, duration=duration)
