"""A live transcription session, with no web code: an audio buffer, server-VAD turns, partial and final
transcripts as events. The realtime WebSocket, the UI's Live tab and tests drive it.

Turns are found with Silero over the incoming frames (the same VAD as files). Finals and partials are
decoded through a `transcribe` callable (the long-form path to the batched model replicas). Partials are
best-effort: one at a time per session, none while a final of any session of the process is being
decoded, and at most `LiveLoad.partial_slots` at once, so under load they are shed and finals go first.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tuned_whisper.audio import SAMPLE_RATE
from tuned_whisper.types import TranscribeOptions
from tuned_whisper.vad import FRAME_SAMPLES

log = logging.getLogger("tuned_whisper.streaming")


class Transcribe(Protocol):
    """Text of some 16 kHz audio; `partial` marks a best-effort re-decode of an open turn."""

    def __call__(
        self, audio: np.ndarray, options: TranscribeOptions, *, partial: bool = False
    ) -> Awaitable[str]: ...


CONTEXT_FRAMES = 16  # frames of earlier audio the VAD sees again with each chunk (it starts fresh each call)
MIN_COMMIT_SAMPLES = SAMPLE_RATE // 10


@dataclass(frozen=True)
class TurnDetection:
    """OpenAI's `server_vad` parameters (their defaults)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass
class LiveLoad:
    """What the sessions of one process are decoding, shared by them so that finals come first: a
    partial starts only while no session's final is owed and one of `partial_slots` is free."""

    partial_slots: int = 2
    partials: int = 0
    finals: int = 0

    def partial_allowed(self) -> bool:
        return self.finals == 0 and self.partials < self.partial_slots


@dataclass(frozen=True)
class SessionLimits:
    """How far one session may go; past these it gets an error event (and, for the hard ones, is closed)."""

    max_turn_s: float = 28.0
    """A turn this long is cut at its quietest frame of the last few seconds and continues as a new one."""
    max_buffer_s: float = 120.0
    """Uncommitted audio kept without turn detection; past it appends are refused until a commit."""
    partial_interval_s: float = 1.0


@dataclass(frozen=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class Committed:
    item_id: str
    previous_item_id: str | None


@dataclass(frozen=True)
class Cleared:
    pass


@dataclass(frozen=True)
class Delta:
    item_id: str
    delta: str


@dataclass(frozen=True)
class Completed:
    item_id: str
    transcript: str
    audio_seconds: float


@dataclass(frozen=True)
class Failed:
    item_id: str
    message: str


Event = SpeechStarted | SpeechStopped | Committed | Cleared | Delta | Completed | Failed


def new_item_id() -> str:
    return f"item_{uuid.uuid4().hex[:20]}"


@dataclass
class _Turn:
    item_id: str
    start: int  # sample index in the session's audio
    emitted: str = ""
    last_partial_at: int = 0
    partial_running: bool = False


@dataclass
class LiveSession:
    """Feed it 16 kHz float32 chunks; it puts events on `events` as turns start, end and are transcribed."""

    transcribe: Transcribe
    options: TranscribeOptions = field(default_factory=TranscribeOptions)
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    limits: SessionLimits = field(default_factory=SessionLimits)
    load: LiveLoad = field(default_factory=LiveLoad)
    events: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)

    def __post_init__(self) -> None:
        self.audio = np.zeros(0, dtype=np.float32)
        self.offset = 0  # samples dropped from the front of `audio` (already committed)
        self.probs = np.zeros(0, dtype=np.float32)  # one per frame of the session's audio
        self.turn: _Turn | None = None
        self.silent_frames = 0
        self.last_item: str | None = None
        self.finals: set[asyncio.Task[None]] = set()
        self._last_final: asyncio.Task[None] | None = None
        self.partials: set[asyncio.Task[None]] = set()

    @property
    def buffered_s(self) -> float:
        return self.audio.size / SAMPLE_RATE

    @property
    def total_samples(self) -> int:
        return self.offset + self.audio.size

    def append(self, samples: np.ndarray) -> None:
        """Add audio; with turn detection, find where speech starts and stops."""
        if (
            self.turn_detection is None
            and self.buffered_s + samples.size / SAMPLE_RATE > self.limits.max_buffer_s
        ):
            raise BufferError(
                f"more than {self.limits.max_buffer_s:.0f} s of audio is waiting: commit the buffer first"
            )
        self.audio = np.concatenate([self.audio, np.asarray(samples, dtype=np.float32)])
        if self.turn_detection is not None:
            self._detect(self.turn_detection)
            self._trim_idle()
        self._maybe_partial()

    def _detect(self, detection: TurnDetection) -> None:
        from tuned_whisper.vad import speech_probabilities

        available = -(-self.offset // FRAME_SAMPLES)  # the first frame still wholly in the buffer
        if self.probs.size < available:  # frames committed before they were scored count as silence
            self.probs = np.concatenate([self.probs, np.zeros(available - self.probs.size, np.float32)])
        done, whole = self.probs.size, self.total_samples // FRAME_SAMPLES
        if whole <= done:
            return
        first = max(available, done - CONTEXT_FRAMES)
        chunk = self.audio[first * FRAME_SAMPLES - self.offset : whole * FRAME_SAMPLES - self.offset]
        fresh = speech_probabilities(chunk)[done - first :]
        self.probs = np.concatenate([self.probs, fresh])
        for index, prob in enumerate(fresh.tolist()):
            self._step(done + index, prob, detection)

    def _step(self, frame: int, prob: float, detection: TurnDetection) -> None:
        at = frame * FRAME_SAMPLES
        if self.turn is None:
            if prob >= detection.threshold:
                start = max(self.offset, at - detection.prefix_padding_ms * SAMPLE_RATE // 1000)
                self.turn = _Turn(new_item_id(), start, last_partial_at=at)
                self.silent_frames = 0
                self.events.put_nowait(SpeechStarted(self.turn.item_id, start * 1000 // SAMPLE_RATE))
            return
        quiet = prob < detection.threshold - 0.15
        self.silent_frames = self.silent_frames + 1 if quiet else 0
        silence_samples = self.silent_frames * FRAME_SAMPLES
        end = at + FRAME_SAMPLES
        if silence_samples >= detection.silence_duration_ms * SAMPLE_RATE // 1000:
            self._end_turn(end - silence_samples + min(silence_samples, SAMPLE_RATE // 5))
        elif end - self.turn.start >= self.limits.max_turn_s * SAMPLE_RATE:
            self._end_turn(self._quietest(self.turn.start, end), continues=True)

    def _quietest(self, start: int, end: int) -> int:
        """Where to cut an over-long turn: the least speech-like frame of its last 5 s."""
        lo = max(start + SAMPLE_RATE, end - 5 * SAMPLE_RATE) // FRAME_SAMPLES
        hi = end // FRAME_SAMPLES
        frame = lo + int(np.argmin(self.probs[lo:hi])) if hi > lo else hi
        return frame * FRAME_SAMPLES

    def _end_turn(self, end: int, *, continues: bool = False) -> None:
        turn = self.turn
        assert turn is not None
        self.events.put_nowait(SpeechStopped(turn.item_id, end * 1000 // SAMPLE_RATE))
        self._commit(turn.item_id, turn.start, end)
        self.turn = None
        if continues:  # the speaker goes on: a new turn from the cut
            self.turn = _Turn(new_item_id(), end, last_partial_at=end)
            self.events.put_nowait(SpeechStarted(self.turn.item_id, end * 1000 // SAMPLE_RATE))

    def commit(self) -> None:
        """`input_audio_buffer.commit`: everything buffered (or the open turn) becomes an item."""
        if self.buffered_s * SAMPLE_RATE < MIN_COMMIT_SAMPLES and self.turn is None:
            raise ValueError("the input audio buffer holds less than 100 ms of audio; append more first")
        if self.turn is not None:
            self._end_turn(self.total_samples)
            return
        self._commit(new_item_id(), self.offset, self.total_samples)

    def clear(self) -> None:
        """The client's `input_audio_buffer.clear`: drop what is buffered and any open turn."""
        self.offset += self.audio.size
        self.audio = np.zeros(0, dtype=np.float32)
        self.turn = None
        self.events.put_nowait(Cleared())

    def _commit(self, item_id: str, start: int, end: int) -> None:
        audio = self.audio[start - self.offset : end - self.offset].copy()
        self.events.put_nowait(Committed(item_id, self.last_item))
        self.last_item = item_id
        self._drop_before(end)
        self.load.finals += 1
        task = asyncio.get_running_loop().create_task(self._final(item_id, audio, self._last_final))
        self._last_final = task
        self.finals.add(task)
        task.add_done_callback(self.finals.discard)

    def _drop_before(self, sample: int) -> None:
        keep_from = max(0, sample - self.offset)
        self.audio = self.audio[keep_from:]
        self.offset += keep_from

    def _trim_idle(self) -> None:
        """Without an open turn, only the prefix padding's worth of audio needs keeping."""
        if self.turn is None:
            keep = (self.turn_detection.prefix_padding_ms if self.turn_detection else 0) * SAMPLE_RATE // 1000
            self._drop_before(max(self.offset, self.total_samples - keep - FRAME_SAMPLES))

    async def _final(self, item_id: str, audio: np.ndarray, previous: asyncio.Task[None] | None) -> None:
        """Decode a committed turn; its result is told after the turn before it (turns decode together,
        and a short one may finish first), so that transcripts arrive in the order they were spoken."""
        event: Event
        try:
            text = (await self.transcribe(audio, self.options)).strip()
            event = Completed(item_id, text, audio.size / SAMPLE_RATE)
        except Exception as exc:
            log.exception("final transcription of %s failed", item_id)
            event = Failed(item_id, f"transcription failed: {exc}")
        finally:
            self.load.finals -= 1
        if previous is not None:
            await asyncio.wait([previous])
        self.events.put_nowait(event)

    def _maybe_partial(self) -> None:
        turn = self.turn
        if turn is None or turn.partial_running or self.finals:
            return  # one partial at a time, and none while a final waits
        if self.total_samples - turn.last_partial_at < self.limits.partial_interval_s * SAMPLE_RATE:
            return
        if not self.load.partial_allowed():
            return  # the process is busy: shed this partial
        turn.partial_running = True
        turn.last_partial_at = self.total_samples
        audio = self.audio[turn.start - self.offset :].copy()
        task = asyncio.get_running_loop().create_task(self._partial(turn, audio))
        self.partials.add(task)
        task.add_done_callback(self.partials.discard)

    async def _partial(self, turn: _Turn, audio: np.ndarray) -> None:
        self.load.partials += 1
        try:
            text = await self.transcribe(audio, self.options, partial=True)
        except Exception:
            log.warning("a partial transcription failed; the final one will still come", exc_info=True)
            return
        finally:
            self.load.partials -= 1
            turn.partial_running = False
        if self.turn is not turn:
            return  # the turn ended meanwhile: its final says it all
        words = text.strip().split()
        stable = " ".join(words[:-1])  # the last word may still change
        if stable.startswith(turn.emitted) and len(stable) > len(turn.emitted):
            delta = stable[len(turn.emitted) :]
            turn.emitted = stable
            self.events.put_nowait(Delta(turn.item_id, delta))

    async def close(self) -> None:
        """Stop: pending decodes are cancelled and the buffer freed."""
        for task in [*self.finals, *self.partials]:
            task.cancel()
        self.audio = np.zeros(0, dtype=np.float32)
        self.turn = None
