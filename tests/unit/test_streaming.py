"""A live session without a network or a model: real speech through the real Silero VAD, turns found,
finals and partials from a stand-in transcriber; and the raw formats clients send."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.clips import JFK, SONNETS
from tuned_whisper.audio import SAMPLE_RATE, decode_audio
from tuned_whisper.audio_formats import AudioFormat, decode_chunk, encode_pcm16, encode_ulaw
from tuned_whisper.streaming import (
    Committed,
    Completed,
    Delta,
    LiveLoad,
    LiveSession,
    SessionLimits,
    SpeechStarted,
    SpeechStopped,
    TurnDetection,
)
from tuned_whisper.types import TranscribeOptions


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


class Scribe:
    """Answers with the seconds of audio it was given, and remembers every call."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[float] = []
        self.delay_s = delay_s

    async def __call__(self, audio: np.ndarray, options: TranscribeOptions, *, partial: bool = False) -> str:
        self.calls.append(audio.size / SAMPLE_RATE)
        await asyncio.sleep(self.delay_s)
        return f"heard {audio.size / SAMPLE_RATE:.1f} seconds of speech here"


async def feed(session: LiveSession, audio: np.ndarray, chunk_s: float = 0.1) -> None:
    step = round(chunk_s * SAMPLE_RATE)
    for start in range(0, audio.size, step):
        session.append(audio[start : start + step])
        await asyncio.sleep(0)


async def settle(session: LiveSession) -> list[object]:
    while session.finals or session.partials:
        await asyncio.sleep(0.01)
    events = []
    while not session.events.empty():
        events.append(session.events.get_nowait())
    return events


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_two_utterances_with_a_pause_are_two_turns_each_started_stopped_committed_completed() -> None:
    async def story() -> list[object]:
        session = LiveSession(Scribe(), turn_detection=TurnDetection(silence_duration_ms=1200))
        speech = decode_audio(JFK.path)  # its own pauses are shorter than 1.2 s
        await feed(session, np.concatenate([silence(1), speech, silence(2.5), speech, silence(2.5)]))
        return await settle(session)

    events = run(story())
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("SpeechStarted") == kinds.count("SpeechStopped") == 2
    assert kinds.count("Committed") == kinds.count("Completed") == kinds.count("SpeechStarted")
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert 0.5 <= starts[0].audio_start_ms / 1000 <= 1.2  # speech at 1 s, minus the prefix padding
    committed = [e for e in events if isinstance(e, Committed)]
    assert committed[0].previous_item_id is None and committed[1].previous_item_id == committed[0].item_id
    completed = [e for e in events if isinstance(e, Completed)]
    assert {c.item_id for c in completed} == {c.item_id for c in committed}
    assert all(5 < c.audio_seconds < 13 for c in completed)


def test_silence_and_noise_start_no_turn() -> None:
    async def story() -> tuple[list[object], Scribe]:
        scribe = Scribe()
        session = LiveSession(scribe)
        noise = np.random.default_rng(5).normal(0, 0.1, 10 * SAMPLE_RATE).astype(np.float32)
        await feed(session, np.concatenate([silence(10), noise]))
        return await settle(session), scribe

    events, scribe = run(story())
    assert events == [] and scribe.calls == []


def test_a_turn_longer_than_the_limit_is_cut_and_goes_on_as_the_next() -> None:
    async def story() -> list[object]:
        session = LiveSession(Scribe(), limits=SessionLimits(max_turn_s=12))
        detection = TurnDetection(silence_duration_ms=3000)  # the reading's pauses do not end a turn
        session.turn_detection = detection
        await feed(session, np.concatenate([decode_audio(SONNETS.path)[: 40 * SAMPLE_RATE], silence(4)]))
        return await settle(session)

    events = run(story())
    completed = [e for e in events if isinstance(e, Completed)]
    assert len(completed) >= 3 and all(c.audio_seconds <= 12.1 for c in completed)
    stops = [e.audio_end_ms for e in events if isinstance(e, SpeechStopped)]
    restarts = [e.audio_start_ms for e in events if isinstance(e, SpeechStarted)][1:]
    assert set(stops[:-1]) & set(restarts)  # a cut turn continues where it was cut


def test_partials_come_while_a_turn_is_open_with_a_stable_prefix() -> None:
    async def story() -> list[object]:
        session = LiveSession(Scribe(), limits=SessionLimits(partial_interval_s=1.0))
        speech = decode_audio(SONNETS.path)[: 8 * SAMPLE_RATE]
        step = SAMPLE_RATE // 10
        for start in range(0, speech.size, step):
            session.append(speech[start : start + step])
            await asyncio.sleep(0.01)  # real time passes: partial decodes finish
        return await settle(session)

    events = run(story())
    deltas = [e for e in events if isinstance(e, Delta)]
    assert deltas, [type(e).__name__ for e in events]
    assert deltas[0].delta.startswith("heard") and not deltas[0].delta.endswith("here")  # last word held


def test_partials_are_shed_while_the_process_is_busy() -> None:
    async def story() -> tuple[list[object], Scribe]:
        load = LiveLoad(partial_slots=1, partials=1)  # another session holds the only slot
        scribe = Scribe()
        session = LiveSession(scribe, load=load)
        await feed(session, decode_audio(SONNETS.path)[: 6 * SAMPLE_RATE])
        await asyncio.sleep(0.05)
        load.partials = 0
        return await settle(session), scribe

    events, scribe = run(story())
    assert not [e for e in events if isinstance(e, Delta)]
    assert len(scribe.calls) == len([e for e in events if isinstance(e, Completed)])  # finals only


def test_no_partial_is_decoded_while_another_session_waits_for_its_final() -> None:
    async def story() -> tuple[list[object], list[object], Scribe]:
        load = LiveLoad()
        scribe = Scribe(delay_s=0.5)
        talking, done = LiveSession(scribe, load=load), LiveSession(scribe, load=load, turn_detection=None)
        speech = decode_audio(SONNETS.path)
        await feed(done, speech[: 2 * SAMPLE_RATE])
        done.commit()  # its final decodes for 0.5 s
        await feed(talking, speech[2 * SAMPLE_RATE : 6 * SAMPLE_RATE])  # one turn, open 3.6 s: partials due
        while done.finals:
            await asyncio.sleep(0.01)
        return await settle(talking), await settle(done), scribe

    talking_events, done_events, scribe = run(story())
    assert [type(e).__name__ for e in done_events] == ["Committed", "Completed"]
    assert [type(e).__name__ for e in talking_events] == ["SpeechStarted"]  # the turn is still open
    assert scribe.calls == [2.0]  # the final alone: the talking session's partial was shed


def test_manual_commits_without_turn_detection_and_clear() -> None:
    async def story() -> list[object]:
        session = LiveSession(Scribe(), turn_detection=None, limits=SessionLimits(max_buffer_s=5))
        await feed(session, decode_audio(JFK.path)[: 3 * SAMPLE_RATE])
        session.commit()
        with pytest.raises(ValueError, match="100 ms"):
            session.commit()  # nothing left to commit
        with pytest.raises(BufferError, match="commit"):
            session.append(silence(6))
        session.append(silence(1))
        session.clear()
        return await settle(session)

    events = run(story())
    assert sorted(type(e).__name__ for e in events) == ["Cleared", "Committed", "Completed"]
    assert isinstance(events[0], Committed)  # the final decode may finish after the clear
    done = next(e for e in events if isinstance(e, Completed))
    assert done.audio_seconds == pytest.approx(3.0)


def test_transcripts_come_in_the_order_spoken_even_when_a_later_turn_decodes_first() -> None:
    class LongTurnsAreSlow(Scribe):
        async def __call__(
            self, audio: np.ndarray, options: TranscribeOptions, *, partial: bool = False
        ) -> str:
            await asyncio.sleep(0.3 if audio.size > 2 * SAMPLE_RATE else 0.0)
            return await super().__call__(audio, options, partial=partial)

    async def story() -> list[object]:
        session = LiveSession(LongTurnsAreSlow(), turn_detection=None)
        speech = decode_audio(JFK.path)
        await feed(session, speech[: 3 * SAMPLE_RATE])
        session.commit()  # 3 s: its decode takes longer
        await feed(session, speech[3 * SAMPLE_RATE : 4 * SAMPLE_RATE])
        session.commit()  # 1 s: decoded first
        return await settle(session)

    events = run(story())
    committed = [e.item_id for e in events if isinstance(e, Committed)]
    done = [e for e in events if isinstance(e, Completed)]
    assert [e.item_id for e in done] == committed
    assert [e.audio_seconds for e in done] == [pytest.approx(3.0), pytest.approx(1.0)]


def test_a_closed_session_cancels_its_decodes_and_frees_its_audio() -> None:
    async def story() -> tuple[LiveSession, Scribe]:
        scribe = Scribe(delay_s=10)
        session = LiveSession(scribe, turn_detection=None)
        await feed(session, decode_audio(JFK.path))
        session.commit()
        await asyncio.sleep(0.01)
        await session.close()
        await asyncio.sleep(0.01)
        return session, scribe

    session, scribe = run(story())
    assert session.audio.size == 0 and not session.finals and scribe.calls


@pytest.mark.parametrize(
    ("fmt", "encode"),
    [
        (AudioFormat("audio/pcm", 24000), lambda a: encode_pcm16(a, 24000)),
        (AudioFormat("audio/pcm", 16000), lambda a: encode_pcm16(a, 16000)),
        (AudioFormat("audio/pcm", 8000), lambda a: encode_pcm16(a, 8000)),
        (AudioFormat("audio/pcmu", 8000), encode_ulaw),
    ],
)
def test_client_formats_decode_to_the_same_16khz_speech(fmt: AudioFormat, encode: object) -> None:
    speech = decode_audio(JFK.path)[: 3 * SAMPLE_RATE]
    back = decode_chunk(encode(speech), fmt)  # type: ignore[operator]
    assert abs(back.size - speech.size) <= 2
    n = min(back.size, speech.size)
    assert np.corrcoef(back[:n], speech[:n])[0, 1] > 0.95


def test_g711_tables_match_the_standard() -> None:
    ulaw = decode_chunk(bytes([0x00, 0x80, 0xFF]), AudioFormat("audio/pcmu", 8000))[::2] * 32768
    alaw = decode_chunk(bytes([0xD5, 0x2A]), AudioFormat("audio/pcma", 8000))[::2] * 32768
    assert ulaw.round().tolist() == [-32124, 32124, 0]
    assert alaw.round().tolist() == [8, -32256]


def test_bad_formats_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="rate"):
        AudioFormat.parse({"type": "audio/pcm", "rate": 44100})
    with pytest.raises(ValueError, match="unsupported audio format"):
        AudioFormat.parse({"type": "audio/opus"})
    with pytest.raises(ValueError, match="even number"):
        decode_chunk(b"abc", AudioFormat())
    assert AudioFormat.parse({"type": "audio/pcma"}) == AudioFormat("audio/pcma", 8000)
