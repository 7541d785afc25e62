"""THE long-file path, for every mode (CLI, API, UI, and what comes): voice-activity filter, 30 s
windows with strides, language, windows sent to a runner (in-process or the model replicas), the
merge, and times mapped back to the original audio."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE, Samples
from tuned_whisper.engine.batching import WindowJob
from tuned_whisper.engine.segments import segments_from_chunks, segments_from_words
from tuned_whisper.engine.windows import (
    TIME_PRECISION_S,
    WINDOW_SAMPLES,
    Decoded,
    Window,
    is_cut,
    merge_windows,
    plan_cuts,
    plan_windows,
)
from tuned_whisper.languages import language_code
from tuned_whisper.types import Segment, TranscribeOptions, Transcript, Word

if TYPE_CHECKING:
    from tuned_whisper.config import EngineSettings
    from tuned_whisper.engine.base import ProgressCallback
    from tuned_whisper.vad import SpeechOnly

TAIL_RETRY_SAMPLES = SAMPLE_RATE  # speech left after the last window's last segment worth a decode
MIN_SAMPLES = SAMPLE_RATE // 10
"""Audio shorter than 0.1 s (after the voice-activity filter) holds no word; it is not decoded."""


@dataclass(frozen=True)
class TextDelta:
    """A piece of transcript text that is final (streamed before the whole transcript is ready)."""

    text: str


async def final(items: AsyncIterator[TextDelta | Transcript]) -> Transcript:
    """The `Transcript` a stream ends with (its deltas are dropped)."""
    async for item in items:
        if isinstance(item, Transcript):
            return item
    raise AssertionError("a transcript stream ends with a Transcript")


@dataclass(frozen=True)
class WindowLog:
    """A job's windows: those decoded by an earlier attempt (not decoded again) and where each window is
    recorded once it is finished, so that a job taken over by another worker resumes there."""

    known: Mapping[int, Decoded] = field(default_factory=dict)
    record: Callable[[int, Decoded], None] | None = None


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

    def speech(self, audio: Samples) -> SpeechOnly | None:
        """The speech to decode, or None when the voice-activity filter is off."""
        if not self.engine.vad_filter:
            return None
        from tuned_whisper.vad import VadSettings, keep_speech

        # Only silences over 3 s go, and 1 s of each stays: shorter joins changed Whisper's reading of the
        # sonnets (normalised WER 9.7 % without VAD, 11.0 % at 2 s / 0.4 s, 9.7 % at 3 s / 1 s).
        return keep_speech(audio, VadSettings(min_silence_ms=3000, speech_pad_ms=1000))

    async def transcribe(
        self,
        audio: Samples,
        options: TranscribeOptions,
        runner: WindowRunner,
        *,
        caller: str = "",
        progress: ProgressCallback | None = None,
        speech: SpeechOnly | None = None,
        partial: bool = False,
        log: WindowLog | None = None,
    ) -> Transcript:
        """The whole transcript, once every window is decoded."""
        stream = self.stream(
            audio,
            options,
            runner,
            caller=caller,
            progress=progress,
            eager=False,
            speech=speech,
            partial=partial,
            log=log,
            deltas=False,
        )
        return await final(stream)

    async def stream(
        self,
        audio: Samples,
        options: TranscribeOptions,
        runner: WindowRunner,
        *,
        caller: str = "",
        progress: ProgressCallback | None = None,
        eager: bool = True,
        speech: SpeechOnly | None = None,
        partial: bool = False,
        log: WindowLog | None = None,
        deltas: bool = True,
    ) -> AsyncIterator[TextDelta | Transcript]:
        """Text as it becomes final, window by window in order, then the whole `Transcript`.

        The deltas joined are the transcript's text. Windows are decoded concurrently (up to
        `windows_in_flight`); a delta waits for the windows before it. `eager` decodes the first window
        on its own, so that the first text comes after one window's time, not after the first batch's.
        `speech` is `self.speech(audio)` when the caller has already run the voice-activity filter;
        `partial` marks background work (a live turn's partial text, a job), which waits for all other
        windows; `log` skips windows an earlier attempt decoded and records each finished one.
        """
        duration = len(audio) / SAMPLE_RATE
        if speech is None and self.engine.vad_filter:
            speech = await asyncio.to_thread(self.speech, audio)
        # No silence is appended after the speech: Whisper said "Thank you." into an appended second of it
        # on short turns, and a last segment it ends early is read again (`_finish_tail`). Measured with
        # CTranslate2 int8: ivr-en dev (30 prompts) 4.8 % WER with the second, 4.2 % without; JFK and the
        # sonnets unchanged.
        work = audio if speech is None else speech.audio
        language = language_code(options.language) if options.language else None
        if len(work) < MIN_SAMPLES:
            yield Transcript(text="", language=language, duration=duration, task=options.task)
            return
        # Cutting at pauses reads the audio near every cut (minutes of it for hours): off the event loop.
        windows = (
            await asyncio.to_thread(self.windows, work) if self.engine.cut_at_pauses else self.windows(work)
        )
        packable = len(windows) == 1 and len(work) < WINDOW_SAMPLES
        # Without overlaps no later window covers what Whisper leaves unread at a window's end
        finish = set(range(len(windows))) if is_cut(windows) else {len(windows) - 1}
        done = 0

        def job(window: Window, language: str | None, *, tail: bool = False) -> WindowJob:
            # a window's unread tail is short audio like a clip: it may share a window with others
            return WindowJob(
                window.samples, options, language, caller=caller, packable=packable or tail, partial=partial
            )

        async def decode(index: int, language: str | None, gate: asyncio.Semaphore) -> Decoded:
            nonlocal done
            if log is not None and index in log.known:
                decoded = log.known[index]
            else:
                async with gate:
                    # Read here, on the loop: one window from the page cache takes about a millisecond, and
                    # a read in a thread lets the runner start a batch before the other windows are queued.
                    window = windows[index].read(work)
                    decoded = await runner.decode(job(window, language))
                if index in finish:
                    decoded = await self._finish_tail(window, decoded, runner, job)
                if log is not None and log.record is not None:
                    log.record(index, decoded)
            done += 1
            if progress is not None:
                progress(done / len(windows))
            return decoded

        gate = asyncio.Semaphore(self.windows_in_flight)
        decoded: list[Decoded] = []
        if language is None or (eager and len(windows) > 1):  # the first window also finds the language
            decoded.append(await decode(0, None, gate))
            language = decoded[0].language
        tasks = [asyncio.create_task(decode(i, language, gate)) for i in range(len(decoded), len(windows))]
        emitted = ""
        try:
            for task in [None, *tasks]:  # None: what was decoded before the tasks started
                if task is not None:
                    decoded.append(await task)
                if deltas and decoded and len(decoded) < len(windows):
                    stable = _stable_text(self.tokenizer, windows, decoded, options, language)
                    if stable.startswith(emitted) and len(stable) > len(emitted):
                        delta = stable[len(emitted) :]
                        yield TextDelta(delta if emitted else delta.lstrip())
                        emitted = stable
        finally:
            for pending in tasks:
                pending.cancel()
        transcript = build_transcript(self.tokenizer, windows, decoded, options, language, len(work))
        full = "".join(s.text for s in transcript.segments)
        rest = full[len(emitted) :] if full.startswith(emitted) else ""
        if rest.strip():
            yield TextDelta(rest.lstrip() if not emitted else rest)
        yield remap(transcript, speech, duration)

    def windows(self, audio: Samples) -> list[Window]:
        """The 30 s windows `audio` is decoded in, planned: each is read when it is decoded."""
        if self.engine.cut_at_pauses:
            return plan_cuts(audio, self.engine.chunk_length_s)
        return plan_windows(len(audio), self.engine.chunk_length_s, self.stride_s)

    async def _finish_tail(
        self, window: Window, decoded: Decoded, runner: WindowRunner, job: Callable[..., WindowJob]
    ) -> Decoded:
        """Whisper sometimes ends a window early (a lone timestamp, then end-of-text: the last segment runs
        past the window) although speech follows; the rest is decoded on its own and appended."""
        end = last_time(decoded, self.tokenizer)
        if end is None:
            return decoded
        rest = window.samples[round(end * SAMPLE_RATE) :]
        if len(rest) < TAIL_RETRY_SAMPLES or not await asyncio.to_thread(_has_speech, rest):
            return decoded
        more = await runner.decode(job(Window(rest, (len(rest), 0, 0)), decoded.language, tail=True))
        if not len(more.tokens):
            return decoded
        return append_decoded(decoded, more, end, self.tokenizer)


def _stable_text(
    tokenizer: Any,
    windows: Sequence[Window],
    decoded: Sequence[Decoded],
    options: TranscribeOptions,
    language: str,
) -> str:
    """Text of the first decoded windows that no later window can change: segments ending before the
    next window starts (what both read is spliced where they agree, which may be anywhere in it)."""
    prefix = windows[: len(decoded)]
    merged = build_transcript(
        tokenizer, prefix, decoded, options, language, prefix[-1].offset + prefix[-1].length
    )
    unseen_until = windows[len(decoded)].offset / SAMPLE_RATE
    return "".join(s.text for s in merged.segments if s.end <= unseen_until)


def last_time(decoded: Decoded, tokenizer: Any) -> float | None:
    """Seconds of the decode's last timestamp token; None when it ends without one."""
    first = tokenizer.convert_tokens_to_ids("<|0.00|>")
    if not len(decoded.tokens) or int(decoded.tokens[-1]) < first:
        return None
    return (int(decoded.tokens[-1]) - first) * TIME_PRECISION_S


def append_decoded(decoded: Decoded, more: Decoded, at: float, tokenizer: Any) -> Decoded:
    """`more` (decoded from `at` seconds on) appended to `decoded`, its times shifted by `at`."""
    first = tokenizer.convert_tokens_to_ids("<|0.00|>")
    shift = round(at / TIME_PRECISION_S)
    tokens = [int(t) + shift if int(t) >= first else int(t) for t in more.tokens]
    times = None
    if decoded.token_timestamps is not None and more.token_timestamps is not None:
        times = np.concatenate([decoded.token_timestamps, np.asarray(more.token_timestamps) + at])
    return dataclasses.replace(
        decoded,
        tokens=np.concatenate([decoded.tokens, np.asarray(tokens, dtype=np.int64)]),
        token_timestamps=times,
    )


def _has_speech(audio: np.ndarray) -> bool:
    from tuned_whisper.vad import speech_spans

    return bool(speech_spans(audio))


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
