"""Live transcription as an OpenAI Realtime user meets it: the real `openai` client's
`realtime.connect` against the real served app, real speech streamed in 100 ms appends."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.clips import JFK, SONNETS
from tests.conftest import API_KEY
from tuned_whisper.audio import SAMPLE_RATE, decode_audio
from tuned_whisper.audio_formats import encode_pcm16, encode_ulaw

pytestmark = pytest.mark.slow
SPEED = 4.0  # times real time
SESSION_PCM24K = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500},
        }
    },
}


@pytest.fixture(scope="module")
def client(served_app: str) -> openai.OpenAI:
    ws = served_app.replace("http://", "ws://")
    return openai.OpenAI(base_url=f"{served_app}/v1", websocket_base_url=f"{ws}/v1", api_key=API_KEY)


def chunks(data: bytes, bytes_per_100ms: int) -> Iterator[bytes]:
    for start in range(0, len(data), bytes_per_100ms):
        yield data[start : start + bytes_per_100ms]


def stream(connection: Any, data: bytes, bytes_per_100ms: int, speed: float = SPEED) -> None:
    for piece in chunks(data, bytes_per_100ms):
        connection.input_audio_buffer.append(audio=base64.b64encode(piece).decode())
        time.sleep(0.1 / speed)


def events_until(connection: Any, done: Any, timeout_s: float = 120) -> list[Any]:
    """Read events until `done(events)` holds; the reader runs in a thread so the test can time out."""
    events: list[Any] = []
    finished = threading.Event()

    def read() -> None:
        try:
            for event in connection:
                events.append(event)
                if done(events):
                    break
        finally:
            finished.set()

    threading.Thread(target=read, daemon=True).start()
    assert finished.wait(timeout_s), [e.type for e in events]
    return events


def completed(events: list[Any]) -> list[str]:
    return [e.transcript for e in events if e.type == "conversation.item.input_audio_transcription.completed"]


def test_a_reading_streamed_as_24khz_pcm_comes_back_turn_by_turn(client: openai.OpenAI) -> None:
    audio = decode_audio(SONNETS.path)[: 22 * SAMPLE_RATE]
    trailing = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)  # the speaker stops: the last turn ends
    data = encode_pcm16(np.concatenate([audio, trailing]), 24000)
    with client.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}) as connection:
        connection.session.update(session=SESSION_PCM24K)  # type: ignore[arg-type]
        sender = threading.Thread(target=stream, args=(connection, data, 4800))
        sender.start()
        events = events_until(connection, lambda ev: len(completed(ev)) >= 3 and not sender.is_alive())
        sender.join()
    kinds = [e.type for e in events]
    assert kinds[0] == "session.created" and "session.updated" in kinds
    for kind in ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"):
        assert kind in kinds
    assert kinds.count("input_audio_buffer.committed") >= 3
    text = " ".join(completed(events))
    assert "fairest creatures" in text.lower() and "memory" in text.lower(), text
    items = {e.item_id for e in events if e.type == "conversation.item.input_audio_transcription.completed"}
    assert len(items) == len(completed(events))  # one completed transcript per turn


def test_telephone_mu_law_at_8khz_works_the_same_way(client: openai.OpenAI) -> None:
    audio = np.concatenate([decode_audio(JFK.path), np.zeros(2 * SAMPLE_RATE, dtype=np.float32)])
    session = json.loads(json.dumps(SESSION_PCM24K))
    session["audio"]["input"]["format"] = {"type": "audio/pcmu"}
    with client.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}) as connection:
        connection.session.update(session=session)
        stream(connection, encode_ulaw(audio), 800)
        events = events_until(
            connection, lambda ev: len(completed(ev)) >= 2 and "country" in completed(ev)[-1].lower()
        )
    heard = " ".join(completed(events)).lower()
    assert "fellow americans" in heard and "your country" in heard, heard
    updated = next(e for e in events if e.type == "session.updated")
    assert updated.session.audio.input.format.type == "audio/pcmu"


def test_twenty_seconds_of_silence_and_noise_give_no_transcript(client: openai.OpenAI) -> None:
    rng = np.random.default_rng(11)
    audio = np.concatenate([np.zeros(10 * SAMPLE_RATE), rng.normal(0, 0.1, 10 * SAMPLE_RATE)]).astype(
        np.float32
    )
    with client.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}) as connection:
        connection.session.update(session=SESSION_PCM24K)  # type: ignore[arg-type]
        stream(connection, encode_pcm16(audio, 24000), 4800, speed=20)
        connection.send({"type": "input_audio_buffer.clear"})
        events = events_until(connection, lambda ev: ev[-1].type == "input_audio_buffer.cleared")
    assert "input_audio_buffer.speech_started" not in [e.type for e in events]
    assert completed(events) == []


def test_bad_messages_get_error_events_and_the_session_still_transcribes(served_app: str) -> None:
    from websockets.sync.client import connect

    url = served_app.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    with connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
        bad = [
            "this is not json",
            json.dumps({"type": "response.create"}),
            json.dumps({"type": "input_audio_buffer.append", "audio": "@@not base64@@"}),
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"audio": {"input": {"format": {"type": "audio/opus"}}}},
                }
            ),
            json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"odd").decode()}),
        ]
        codes = []
        for message in bad:
            ws.send(message)
            event = json.loads(ws.recv(timeout=30))
            assert event["type"] == "error" and event["error"]["message"], event
            codes.append(event["error"]["code"])
        assert codes == [
            "invalid_json",
            "unknown_event",
            "invalid_base64",
            "invalid_audio_format",
            "invalid_audio",
        ]
        ws.send(
            json.dumps({"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}})
        )
        assert json.loads(ws.recv(timeout=30))["type"] == "session.updated"
        pcm = encode_pcm16(decode_audio(JFK.path), 24000)
        for piece in chunks(pcm, 48000):
            ws.send(
                json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()})
            )
        ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        transcript = None
        while transcript is None:
            event = json.loads(ws.recv(timeout=120))
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                transcript = event["transcript"]
    assert JFK.missing_phrases(transcript) == []


def open_sessions(served_app: str) -> int:
    text = httpx.get(f"{served_app}/metrics", timeout=30).text
    return int(
        next(line.split()[1] for line in text.splitlines() if line.startswith("tw_realtime_sessions "))
    )


def test_a_client_that_vanishes_mid_turn_leaves_no_session_behind(served_app: str) -> None:
    from websockets.sync.client import connect

    url = served_app.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    ws = connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"})
    ws.recv(timeout=30)
    half = encode_pcm16(decode_audio(JFK.path)[: 5 * SAMPLE_RATE], 24000)
    for piece in chunks(half, 4800):
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}))
    assert open_sessions(served_app) >= 1
    ws.socket.close()  # no close frame: the client is simply gone
    deadline = time.monotonic() + 30
    while open_sessions(served_app) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_sessions(served_app) == 0


def test_a_wrong_key_is_refused_at_the_handshake(served_app: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = served_app.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    with pytest.raises(InvalidStatus), connect(url, additional_headers={"Authorization": "Bearer wrong"}):
        pass


def test_a_browser_opens_a_session_with_a_short_lived_client_secret(
    client: openai.OpenAI, served_app: str
) -> None:
    """A web page cannot hold the API key: the page's server mints a client secret with the real client,
    and the page connects with it as a subprotocol, as browsers do with OpenAI."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    secret = client.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 60})
    assert secret.value.startswith("ek_") and secret.expires_at > time.time()
    url = served_app.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    protocols = ["realtime", f"openai-insecure-api-key.{secret.value}"]
    with connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"
        assert json.loads(ws.recv(timeout=30))["type"] == "session.created"
    forged = secret.value[:-4] + ("0000" if not secret.value.endswith("0000") else "1111")
    for refused in (forged, "ek_1_abc_def", API_KEY + "x"):
        with (
            pytest.raises(InvalidStatus),
            connect(url, subprotocols=["realtime", f"openai-insecure-api-key.{refused}"]),
        ):  # type: ignore[list-item]
            pass
    with pytest.raises(openai.BadRequestError):
        client.realtime.client_secrets.create(expires_after={"anchor": "created_at", "seconds": 99999})


def test_the_stream_command_prints_each_turn_of_a_file_and_fails_clearly(served_app: str) -> None:
    import subprocess
    import sys

    url = served_app.replace("http://", "ws://") + "/v1/realtime"
    command = [sys.executable, "-m", "tuned_whisper.cli", "stream", str(JFK.path), "--url", url]
    done = subprocess.run(
        [*command, "--speed", "4", "--api-key", API_KEY], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    turns = [re.fullmatch(r"\[(\d\d):(\d\d\.\d)\] (.+)", line) for line in done.stdout.splitlines() if line]
    assert len(turns) >= 2 and all(turns), done.stdout  # "[mm:ss.s] text", a line a turn
    starts = [60 * int(t[1]) + float(t[2]) for t in turns if t]
    heard = " ".join(t[3] for t in turns if t).lower()
    assert starts == sorted(starts) and starts[-1] > 5, done.stdout
    assert "fellow americans" in heard and "for your country" in heard, done.stdout
    refused = subprocess.run([*command, "--api-key", "wrong"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "key" in refused.stderr.lower(), refused.stderr
