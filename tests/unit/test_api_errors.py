"""The HTTP API's contract without a model: OpenAI-shaped errors, the streaming upload limit, API keys.

A fake backend sits behind the real FastAPI app, driven in-process through `httpx.ASGITransport`, which
hands the request body to the app one chunk at a time, as a socket would.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import struct
import threading
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tuned_whisper.engine.base import ModelInfo
from tuned_whisper.serving import ApiSettings, EngineBackend, create_app
from tuned_whisper.types import Segment, TranscribeOptions, Transcript, Word

pytestmark = pytest.mark.anyio

TRANSCRIPT = Transcript(
    text="Ask not what your country can do for you.",
    language="en",
    duration=0.5,
    segments=(
        Segment(
            0,
            0.0,
            0.5,
            " Ask not what your country can do for you.",
            (Word(0.0, 0.2, " Ask"), Word(0.2, 0.5, " not")),
        ),
    ),
)
CARD = {"id": "whisper-base", "created": 1_700_000_000, "owned_by": "tests", "provenance": {"kind": "hf-dir"}}
KEY = "sk-test-123"


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    """A short 440 Hz tone as a 16-bit mono WAV file."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


WAV = wav_bytes()


class FakeBackend:
    """Returns TRANSCRIPT for any audio and records the options it was called with."""

    def __init__(self) -> None:
        self.calls: list[TranscribeOptions] = []
        self.callers: list[str] = []
        self.is_ready = True
        self.fail = False

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, progress: object = None, *, caller: str = ""
    ) -> Transcript:
        if self.fail:
            raise RuntimeError("the model fell over")
        self.calls.append(options)
        self.callers.append(caller)
        return Transcript(TRANSCRIPT.text, "en", TRANSCRIPT.duration, TRANSCRIPT.segments, options.task)

    def model_card(self) -> dict[str, Any]:
        return dict(CARD)

    def ready(self) -> bool:
        return self.is_ready


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


def client_for(backend: FakeBackend, **settings: Any) -> httpx.AsyncClient:
    app = create_app(backend, ApiSettings(**settings))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(backend: FakeBackend) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(backend) as client:
        yield client


async def transcribe(
    client: httpx.AsyncClient,
    fields: dict[str, Any] | None = None,
    *,
    audio: bytes | None = WAV,
    path: str = "/v1/audio/transcriptions",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a multipart upload the way OpenAI's SDK does."""
    files: list[tuple[str, Any]] = [(name, (None, str(value))) for name, value in (fields or {}).items()]
    if audio is not None:
        files.append(("file", ("tone.wav", audio, "audio/wav")))
    return await client.post(path, files=files, headers=headers)


def assert_openai_error(response: httpx.Response, status: int, *, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    assert error["param"] == param
    return error


# --- successful requests -----------------------------------------------------------------------------


async def test_json_is_the_default_and_form_fields_reach_the_backend(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    fields = {"model": "whisper-1", "language": "English", "prompt": "JFK", "temperature": "0.2"}
    response = await transcribe(client, fields)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"text": TRANSCRIPT.text}
    assert backend.calls == [
        TranscribeOptions(language="en", task="transcribe", initial_prompt="JFK", temperature=0.2)
    ]


@pytest.mark.parametrize(
    ("response_format", "content_type", "starts_with"),
    [
        ("text", "text/plain; charset=utf-8", "Ask not"),
        ("srt", "application/x-subrip; charset=utf-8", "1\n00:00:00,000 --> 00:00:00,500\n"),
        ("vtt", "text/vtt; charset=utf-8", "WEBVTT\n\n00:00:00.000 --> 00:00:00.500\n"),
        ("verbose_json", "application/json", '{"task": "transcribe", "language": "english"'),
    ],
)
async def test_each_response_format_has_its_media_type(
    client: httpx.AsyncClient, response_format: str, content_type: str, starts_with: str
) -> None:
    response = await transcribe(client, {"response_format": response_format})
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.text.startswith(starts_with)


async def test_word_granularity_asks_for_word_timestamps(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    files = [("timestamp_granularities[]", (None, g)) for g in ("word", "segment")]
    files += [("response_format", (None, "verbose_json")), ("file", ("tone.wav", WAV, "audio/wav"))]
    response = await client.post("/v1/audio/transcriptions", files=files)
    assert response.status_code == 200
    assert backend.calls[-1].word_timestamps
    body = response.json()
    assert body["words"][0] == {"word": "Ask", "start": 0.0, "end": 0.2}
    assert body["segments"][0]["text"] == TRANSCRIPT.segments[0].text


async def test_translation_ignores_language_and_reports_english(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    fields = {"response_format": "verbose_json", "language": "de"}
    response = await transcribe(client, fields, path="/v1/audio/translations")
    assert response.status_code == 200
    assert response.json()["language"] == "english"
    assert backend.calls == [TranscribeOptions(language=None, task="translate")]


# --- bad requests --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "in_message"),
    [
        ({"response_format": "xml"}, "response_format", "json, text, srt, verbose_json, vtt"),
        ({"response_format": "diarized_json"}, "response_format", "verbose_json"),
        ({"temperature": "hot"}, "temperature", "0 to 1"),
        ({"temperature": "1.5"}, "temperature", "0 to 1"),
        ({"temperature": "nan"}, "temperature", "0 to 1"),
        ({"language": "klingon"}, "language", "unknown language"),
        ({"timestamp_granularities[]": "word"}, "timestamp_granularities", "verbose_json"),
        (
            {"timestamp_granularities[]": "sentence", "response_format": "verbose_json"},
            "timestamp_granularities",
            "segment, word",
        ),
        ({"prompt": "call centre " * 400}, "prompt", "at most 4000"),
        ({"model": "m" * 201}, "model", "at most 200"),
    ],
)
async def test_bad_form_values_are_400s_naming_the_field(
    client: httpx.AsyncClient, backend: FakeBackend, fields: dict[str, str], param: str, in_message: str
) -> None:
    error = assert_openai_error(await transcribe(client, fields), 400, param=param)
    assert in_message in error["message"]
    assert backend.calls == []


async def test_a_missing_file_is_a_400(client: httpx.AsyncClient) -> None:
    error = assert_openai_error(
        await transcribe(client, {"model": "whisper-1"}, audio=None), 400, param="file"
    )
    assert "'file'" in error["message"]


async def test_a_file_sent_as_text_or_a_non_multipart_body_is_a_400(client: httpx.AsyncClient) -> None:
    as_text = await client.post("/v1/audio/transcriptions", files={"file": (None, "not a file")})
    assert_openai_error(as_text, 400, param="file")
    as_json = await client.post("/v1/audio/transcriptions", json={"file": "x", "model": "whisper-1"})
    assert "multipart/form-data" in assert_openai_error(as_json, 400, param="file")["message"]
    no_boundary = await client.post(
        "/v1/audio/transcriptions", content=b"--xyz\r\n", headers={"Content-Type": "multipart/form-data"}
    )
    assert "malformed" in assert_openai_error(no_boundary, 400)["message"]


@pytest.mark.parametrize(("audio", "code"), [(b"", "empty"), (b"this is not audio " * 50, "not_audio")])
async def test_undecodable_audio_is_a_400_with_the_reason_as_code(
    client: httpx.AsyncClient, backend: FakeBackend, audio: bytes, code: str
) -> None:
    error = assert_openai_error(await transcribe(client, audio=audio), 400, param="file")
    assert error["code"] == code
    assert "tone.wav" in error["message"]
    assert backend.calls == []


async def test_audio_over_max_audio_s_is_a_400_too_long(backend: FakeBackend) -> None:
    async with client_for(backend, max_audio_s=0.2) as client:
        error = assert_openai_error(await transcribe(client), 400, param="file")
    assert error["code"] == "too_long"


# --- the streaming upload limit ------------------------------------------------------------------------


async def test_an_upload_over_the_limit_is_a_413_and_never_reaches_the_backend(backend: FakeBackend) -> None:
    async with client_for(backend, max_upload_bytes=len(WAV) // 2) as client:
        error = assert_openai_error(await transcribe(client), 413, param="file")
        assert error["code"] == "request_too_large"
        assert backend.calls == []
        assert (await transcribe(client, audio=wav_bytes(0.1))).status_code == 200  # under the limit
    assert len(backend.calls) == 1


async def test_a_chunked_upload_is_cut_off_as_soon_as_it_passes_the_limit(backend: FakeBackend) -> None:
    chunk, limit = 64 * 1024, 1024 * 1024
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(100):  # 6.4 MB in all, far over the limit
            sent.append(chunk)
            yield b"\0" * chunk

    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    async with client_for(backend, max_upload_bytes=limit) as client:
        response = await client.post("/v1/audio/transcriptions", content=body(), headers=headers)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_openai_error(response, 413, param="file")
    assert sum(sent) <= limit + chunk  # the server stopped pulling right after passing the limit
    assert backend.calls == []


async def test_a_declared_content_length_over_the_limit_is_refused_before_the_body_is_read(
    backend: FakeBackend,
) -> None:
    app = create_app(backend, ApiSettings(max_upload_bytes=1000))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/audio/transcriptions",
        "raw_path": b"/v1/audio/transcriptions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b"), (b"content-length", b"5000000")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    received: list[str] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        received.append("read")
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_too_large"
    assert received == []


# --- API keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", f"Basic {KEY}"])
async def test_a_missing_or_wrong_api_key_is_a_401(backend: FakeBackend, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else None
    async with client_for(backend, api_key=KEY) as client:
        response = await transcribe(client, headers=headers)
        models = await client.get("/v1/models", headers=headers)
    assert assert_openai_error(response, 401)["code"] == "invalid_api_key"
    assert response.headers["www-authenticate"] == "Bearer"
    assert_openai_error(models, 401)
    assert backend.calls == []


async def test_the_right_api_key_is_served_and_probes_need_none(backend: FakeBackend) -> None:
    async with client_for(backend, api_key=KEY) as client:
        ok = await transcribe(client, headers={"Authorization": f"Bearer {KEY}"})
        probes = [await client.get(path) for path in ("/healthz", "/readyz")]
    assert ok.status_code == 200
    assert [p.status_code for p in probes] == [200, 200]


def basic(password: str, user: str = "anyone") -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_with_a_key_set_the_pages_beyond_v1_ask_for_it_as_a_browser_can_send_it(
    backend: FakeBackend,
) -> None:
    async with client_for(backend, api_key=KEY) as client:
        refused = {path: await client.get(path) for path in ("/docs", "/openapi.json", "/anything")}
        wrong = await client.get("/docs", headers={"Authorization": basic("wrong-key")})
        as_browser = await client.get("/docs", headers={"Authorization": basic(KEY)})
        as_code = await client.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
        open_paths = [await client.get(path) for path in ("/healthz", "/readyz", "/metrics")]
    for response in [*refused.values(), wrong]:
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith('Basic realm="tuned-whisper"')
        assert "API key" in response.text
    assert as_browser.status_code == 200 and as_code.status_code == 200
    assert [p.status_code for p in open_paths][:2] == [200, 200]
    assert open_paths[2].status_code == 404  # not a 401: this app has no /metrics, the ingress adds it


async def test_an_open_server_shows_its_pages_to_anyone(backend: FakeBackend) -> None:
    async with client_for(backend) as client:
        assert (await client.get("/docs")).status_code == 200


async def test_keys_from_a_file_are_read_again_when_it_changes(backend: FakeBackend, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# one per client\nsk-first\n\n")
    async with client_for(backend, api_keys_file=keys_file) as client:
        first = await transcribe(client, headers={"Authorization": "Bearer sk-first"})
        keys_file.write_text("sk-second-and-longer\n")
        old = await transcribe(client, headers={"Authorization": "Bearer sk-first"})
        new = await transcribe(client, headers={"Authorization": "Bearer sk-second-and-longer"})
        page = await client.get("/docs", headers={"Authorization": basic("sk-second-and-longer")})
    assert first.status_code == 200
    assert assert_openai_error(old, 401)["code"] == "invalid_api_key"
    assert new.status_code == 200 and page.status_code == 200


def test_a_keys_file_that_is_not_there_stops_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no API keys file"):
        ApiSettings(api_keys_file=tmp_path / "missing")


# --- admission: decoded audio in flight ----------------------------------------------------------------


class GatedBackend(FakeBackend):
    """Holds every request inside `transcribe` until `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.inside = 0

    async def transcribe(self, *args: Any, **kwargs: Any) -> Transcript:
        self.inside += 1
        await self.gate.wait()
        return await super().transcribe(*args, **kwargs)


async def test_past_the_audio_in_flight_cap_a_request_is_a_429_to_retry_and_the_next_one_fits() -> None:
    backend = GatedBackend()
    two_seconds = wav_bytes(seconds=2.0)
    async with client_for(backend, max_audio_in_flight_s=3.0) as client:
        first = asyncio.create_task(transcribe(client, audio=two_seconds))
        while backend.inside == 0:
            await asyncio.sleep(0.01)
        refused = await transcribe(client, audio=two_seconds)
        streamed_refusal = await transcribe(client, {"stream": "true"}, audio=two_seconds)
        fits = asyncio.create_task(transcribe(client, audio=wav_bytes(seconds=0.5)))
        while backend.inside < 2:
            await asyncio.sleep(0.01)
        backend.gate.set()
        served = [await first, await fits]
        after = await transcribe(client, audio=two_seconds)
    for response in (refused, streamed_refusal):
        assert response.status_code == 429, response.text
        error = response.json()["error"]
        assert error["code"] == "audio_in_flight_limit" and "retry" in error["message"]
        assert int(response.headers["retry-after"]) > 0
    assert [r.status_code for r in served] == [200, 200]
    assert after.status_code == 200  # the first request's audio was let go with its answer


async def test_one_client_past_its_requests_in_flight_gets_a_429_and_another_client_does_not() -> None:
    backend = GatedBackend()
    first_key, second_key = {"Authorization": f"Bearer {KEY}"}, {"Authorization": "Bearer sk-other"}
    async with client_for(
        backend, api_key=KEY, extra_api_keys=("sk-other",), max_requests_per_client=2
    ) as client:
        held = [asyncio.create_task(transcribe(client, headers=first_key)) for _ in range(2)]
        while backend.inside < 2:
            await asyncio.sleep(0.01)
        third = await transcribe(client, headers=first_key)
        other = asyncio.create_task(transcribe(client, headers=second_key))
        while backend.inside < 3:
            await asyncio.sleep(0.01)
        backend.gate.set()
        served = [await task for task in (*held, other)]
        again = await transcribe(client, headers=first_key)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "too_many_requests_in_flight"
    assert int(third.headers["retry-after"]) > 0
    assert [r.status_code for r in served] == [200, 200, 200]
    assert again.status_code == 200  # the slots came back with the answers


async def test_a_refused_upload_gives_its_client_slot_back() -> None:
    backend = FakeBackend()
    async with client_for(backend, max_requests_per_client=1) as client:
        for _ in range(3):  # a leaked slot would make the second a 429
            bad = await transcribe(client, audio=b"not audio at all")
            assert bad.status_code == 400
        assert (await transcribe(client)).status_code == 200


async def test_a_finished_stream_lets_its_audio_go() -> None:
    backend = FakeBackend()
    async with client_for(backend, max_audio_in_flight_s=3.0) as client:
        for _ in range(3):  # each 2 s stream would not fit beside a leaked one
            response = await transcribe(client, {"stream": "true"}, audio=wav_bytes(seconds=2.0))
            assert response.status_code == 200 and "transcript.text.done" in response.text


# --- models, probes, ids, resilience -------------------------------------------------------------------


async def test_models_list_the_served_checkpoint_with_its_provenance(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/v1/models")).json()
    assert listed == {"object": "list", "data": [{**CARD, "object": "model"}]}
    one = await client.get("/v1/models/whisper-base")
    assert one.json()["provenance"] == {"kind": "hf-dir"}
    assert (await client.get("/v1/models/whisper-1")).json()["id"] == "whisper-base"  # OpenAI: the base
    missing = await client.get("/v1/models/whisper-large")
    assert assert_openai_error(missing, 404, param="model")["code"] == "model_not_found"


async def test_model_id_setting_overrides_the_backends(backend: FakeBackend) -> None:
    async with client_for(backend, model_id="acme/whisper-ivr") as client:
        assert (await client.get("/v1/models")).json()["data"][0]["id"] == "acme/whisper-ivr"
        assert (await client.get("/v1/models/acme/whisper-ivr")).status_code == 200


async def test_unknown_routes_and_methods_are_openai_shaped(client: httpx.AsyncClient) -> None:
    assert assert_openai_error(await client.get("/v1/nope"), 404)["code"] == "not_found"
    assert (
        assert_openai_error(await client.get("/v1/audio/transcriptions"), 405)["code"] == "method_not_allowed"
    )


async def test_a_backend_failure_is_a_500_and_the_server_keeps_serving(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    backend.fail = True
    error = assert_openai_error(await transcribe(client), 500)
    assert "request id" in error["message"]
    backend.fail = False
    for fields in ({"response_format": "xml"}, {"temperature": "9"}):
        assert (await transcribe(client, fields)).status_code == 400
    assert (await transcribe(client, audio=b"junk")).status_code == 400
    assert (await transcribe(client)).json() == {"text": TRANSCRIPT.text}


async def test_readyz_follows_the_backend_and_healthz_is_always_ok(
    client: httpx.AsyncClient, backend: FakeBackend
) -> None:
    backend.is_ready = False
    assert (await client.get("/readyz")).status_code == 503
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    backend.is_ready = True
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_request_ids_are_echoed_or_generated_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tuned_whisper.api")
    echoed = await transcribe(client, headers={"X-Request-ID": "call-42"})
    failed = await transcribe(client, {"response_format": "xml"}, headers={"X-Request-ID": "call-43"})
    generated = await transcribe(client)
    assert echoed.headers["x-request-id"] == "call-42"
    assert failed.headers["x-request-id"] == "call-43"
    assert len(generated.headers["x-request-id"]) == 32
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "request_id=call-42" in logged and "request_id=call-43" in logged
    forged = await transcribe(client, headers={"X-Request-ID": "x y\tz"})
    assert forged.headers["x-request-id"] != "x y\tz"


# --- EngineBackend ---------------------------------------------------------------------------------------


class SlowTranscriber:
    """A synchronous engine that notes which threads use it and whether two ever overlap."""

    def __init__(self, checkpoint: Path) -> None:
        self.info = ModelInfo(str(checkpoint), "cpu", "float32", is_multilingual=True)
        self.active = 0
        self.overlapped = False
        self.threads: set[int] = set()

    def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, progress: object = None
    ) -> Transcript:
        self.active += 1
        self.overlapped |= self.active > 1
        self.threads.add(threading.get_ident())
        time.sleep(0.05)
        self.active -= 1
        return TRANSCRIPT


@pytest.fixture
def checkpoint(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "whisper-ivr"
    path.mkdir()
    provenance = {"source": "base", "kind": "hf-dir", "model": "openai/whisper-base"}
    (path / "provenance.json").write_text(
        json.dumps({**provenance, "created_at": "2026-01-02T03:04:05+00:00"})
    )
    yield path


async def test_engine_backend_runs_one_call_at_a_time_off_the_event_loop(checkpoint: Path) -> None:
    engine = SlowTranscriber(checkpoint)
    backend = EngineBackend(engine)  # type: ignore[arg-type]
    audio = np.zeros(16000, dtype=np.float32)
    results = await asyncio.gather(*(backend.transcribe(audio, TranscribeOptions()) for _ in range(4)))
    assert results == [TRANSCRIPT] * 4
    assert not engine.overlapped
    assert threading.get_ident() not in engine.threads


def test_engine_backend_card_names_the_checkpoint_and_its_provenance(checkpoint: Path) -> None:
    card = EngineBackend(SlowTranscriber(checkpoint)).model_card()  # type: ignore[arg-type]
    assert card["id"] == "whisper-ivr"
    assert card["created"] == 1767323045
    assert card["provenance"]["model"] == "openai/whisper-base"
    assert card["owned_by"] == "tuned-whisper"


async def test_each_request_is_its_own_caller_without_keys_and_one_key_is_one_caller() -> None:
    """Packing shares windows only within a caller: without keys a request, with keys the key."""
    anonymous = FakeBackend()
    async with client_for(anonymous) as client:
        for _ in range(2):
            assert (await transcribe(client)).status_code == 200
    assert len(set(anonymous.callers)) == 2
    keyed = FakeBackend()
    async with client_for(keyed, api_key=KEY) as client:
        for _ in range(2):
            assert (await transcribe(client, headers={"Authorization": f"Bearer {KEY}"})).status_code == 200
    assert len(set(keyed.callers)) == 1 and KEY not in keyed.callers[0]


async def test_a_failure_after_the_stream_began_is_an_error_event_not_a_dropped_connection() -> None:
    from tuned_whisper.engine.longform import TextDelta

    class FailsMidway(FakeBackend):
        async def stream(self, audio: np.ndarray, options: TranscribeOptions, *, caller: str = "") -> Any:
            yield TextDelta("Hello")
            raise RuntimeError("replica died")

    async with client_for(FailsMidway()) as client:
        response = await transcribe(client, {"stream": "true"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[0] == {"type": "transcript.text.delta", "delta": "Hello"}
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "stream_failed"


async def test_a_backend_without_streaming_still_answers_stream_true_in_one_delta(
    backend: FakeBackend,
) -> None:
    async with client_for(backend) as client:
        response = await transcribe(client, {"stream": "true", "response_format": "text"})
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["transcript.text.delta", "transcript.text.done"]
    assert events[0]["delta"] == events[1]["text"] == TRANSCRIPT.text
    assert events[1]["usage"] == {"type": "duration", "seconds": TRANSCRIPT.duration}


async def test_other_sites_pages_get_no_cors_grant_unless_their_origin_is_configured(
    backend: FakeBackend,
) -> None:
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    async with client_for(backend) as closed:
        response = await closed.options("/v1/audio/transcriptions", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        listed = await closed.get("/v1/models", headers={"Origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in listed.headers
    async with client_for(backend, cors_origins=("https://app.example.com",)) as open_to_one:
        response = await open_to_one.options("/v1/audio/transcriptions", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example.com"
        other = await open_to_one.options(
            "/v1/audio/transcriptions", headers={**preflight, "Origin": "https://evil.example.net"}
        )
        assert "access-control-allow-origin" not in other.headers
