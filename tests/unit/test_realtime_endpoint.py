"""The realtime WebSocket's own rules, over a slow stand-in model (the real one is in
tests/integration/test_realtime.py): a client waiting for its transcripts is not idle."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest
from fastapi import FastAPI, WebSocketDisconnect
from fastapi.testclient import TestClient

from tests.clips import JFK
from tuned_whisper.audio import SAMPLE_RATE, decode_audio
from tuned_whisper.audio_formats import encode_pcm16
from tuned_whisper.config import ApiSettings, RealtimeSettings
from tuned_whisper.serving.realtime import RealtimeEndpoint, add_realtime_route
from tuned_whisper.types import TranscribeOptions, Transcript

DECODE_S = 1.5
IDLE_S = 0.5


class SlowModel:
    async def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        progress: object = None,
        *,
        caller: str = "",
        partial: bool = False,
    ) -> Transcript:
        await asyncio.sleep(DECODE_S)  # a busy replica: longer than the idle timeout
        return Transcript(text=f"{audio.size / SAMPLE_RATE:.1f} seconds", language="en", duration=0.0)


def test_a_client_waiting_for_a_slow_transcript_gets_it_and_only_then_times_out() -> None:
    app = FastAPI()
    settings = RealtimeSettings(idle_timeout_s=IDLE_S)
    add_realtime_route(app, RealtimeEndpoint(SlowModel(), ApiSettings(), settings))
    audio = encode_pcm16(decode_audio(JFK.path)[: 2 * SAMPLE_RATE], 24000)
    session = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}
    with TestClient(app).websocket_connect("/v1/realtime?intent=transcription") as ws:
        assert ws.receive_json()["type"] == "session.created"
        ws.send_json({"type": "session.update", "session": session})
        ws.send_json({"type": "input_audio_buffer.append", "audio": base64.b64encode(audio).decode()})
        ws.send_json({"type": "input_audio_buffer.commit"})
        events = [ws.receive_json() for _ in range(4)]
    types = [e["type"] for e in events]
    assert types == [
        "session.updated",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "error",
    ]
    assert events[2]["transcript"] == "2.0 seconds"
    assert events[3]["error"]["code"] == "idle_timeout"


def test_one_client_past_its_sessions_is_told_to_retry_later_and_a_closed_session_frees_its_place() -> None:
    app = FastAPI()
    add_realtime_route(
        app, RealtimeEndpoint(SlowModel(), ApiSettings(), RealtimeSettings(max_sessions_per_client=1))
    )
    client = TestClient(app)
    with client.websocket_connect("/v1/realtime?intent=transcription") as first:
        assert first.receive_json()["type"] == "session.created"
        with client.websocket_connect("/v1/realtime?intent=transcription") as second:
            refusal = second.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
    assert refusal["type"] == "error" and refusal["error"]["code"] == "too_many_sessions_for_client"
    assert closed.value.code == 1013
    with client.websocket_connect("/v1/realtime?intent=transcription") as later:
        assert later.receive_json()["type"] == "session.created"


def test_a_session_decodes_with_the_model_it_names_and_an_unknown_one_is_an_error_event() -> None:
    from tuned_whisper.serving.errors import ApiError

    seen: list[str | None] = []

    class Recording(SlowModel):
        async def transcribe(
            self, audio: np.ndarray, options: TranscribeOptions, *args: object, **kw: object
        ):  # type: ignore[no-untyped-def, override]
            seen.append(options.adapter)
            return Transcript(text="ok", language="en", duration=0.0)

    def adapter_for(model: str | None) -> str | None:
        if model in (None, "whisper-1"):
            return None
        if model == "bank-a":
            return "bank-a"
        raise ApiError(404, f"model {model!r} does not exist", param="model", code="model_not_found")

    app = FastAPI()
    endpoint = RealtimeEndpoint(Recording(), ApiSettings(), RealtimeSettings())
    endpoint.adapter_for = adapter_for
    add_realtime_route(app, endpoint)
    audio = base64.b64encode(encode_pcm16(decode_audio(JFK.path)[: 2 * SAMPLE_RATE], 24000)).decode()

    def naming(model: str) -> dict:
        inputs = {"transcription": {"model": model}, "turn_detection": None}
        return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": inputs}}}

    with TestClient(app).websocket_connect("/v1/realtime?intent=transcription") as ws:
        assert ws.receive_json()["type"] == "session.created"
        for model in ("bank-a", "nope", "whisper-1"):
            ws.send_json(naming(model))
            answer = ws.receive_json()
            if model == "nope":
                assert answer["type"] == "error" and answer["error"]["code"] == "model_not_found"
            else:
                assert answer["session"]["audio"]["input"]["transcription"]["model"] == model
            ws.send_json({"type": "input_audio_buffer.append", "audio": audio})
            ws.send_json({"type": "input_audio_buffer.commit"})
            kinds = [ws.receive_json()["type"] for _ in range(2)]
            assert kinds[-1] == "conversation.item.input_audio_transcription.completed"
    assert seen == ["bank-a", "bank-a", None]  # the refused update left the session on bank-a
