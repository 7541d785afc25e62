"""The API as an OpenAI user meets it: the real Ray Serve app, called by the official `openai` SDK."""

from __future__ import annotations

import http.client
from pathlib import Path

import openai
import pytest
import srt
import webvtt

from tests.clips import GERMAN, JFK
from tests.conftest import API_KEY, UPLOAD_LIMIT

pytestmark = pytest.mark.slow

KEY = API_KEY


@pytest.fixture(scope="module")
def server(served_app: str) -> tuple[str, int]:
    """The real app (Ray Serve ingress + model replica) on 127.0.0.1."""
    host, port = served_app.removeprefix("http://").split(":")
    return host, int(port)


@pytest.fixture(scope="module")
def client(server: tuple[str, int]) -> openai.OpenAI:
    host, port = server
    return openai.OpenAI(base_url=f"http://{host}:{port}/v1", api_key=KEY, max_retries=0, timeout=120)


def transcribe(client: openai.OpenAI, path: Path, **kwargs: object) -> object:
    with path.open("rb") as audio:
        return client.audio.transcriptions.create(model="whisper-1", file=audio, **kwargs)  # type: ignore[call-overload]


def test_json_transcription_has_the_key_phrases(client: openai.OpenAI) -> None:
    transcription = transcribe(client, JFK.path)
    assert isinstance(transcription, openai.types.audio.Transcription)
    assert JFK.missing_phrases(transcription.text) == []


def test_text_srt_and_vtt_come_back_as_strings(client: openai.OpenAI) -> None:
    text = transcribe(client, JFK.path, response_format="text", language="en")
    subtitles = transcribe(client, JFK.path, response_format="srt", language="english")
    captions = transcribe(client, JFK.path, response_format="vtt", language="en")
    assert isinstance(text, str) and JFK.missing_phrases(text) == []
    assert isinstance(subtitles, str)
    cues = list(srt.parse(subtitles))
    assert cues and cues[-1].end.total_seconds() <= JFK.duration + 0.001
    assert JFK.missing_phrases(" ".join(c.content for c in cues)) == []
    assert isinstance(captions, str) and captions.startswith("WEBVTT\n\n")
    assert JFK.missing_phrases(" ".join(c.text for c in webvtt.from_string(captions))) == []


def test_verbose_json_with_word_and_segment_timestamps(client: openai.OpenAI) -> None:
    verbose = transcribe(
        client, JFK.path, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert isinstance(verbose, openai.types.audio.TranscriptionVerbose)
    assert verbose.language == "english"
    assert verbose.duration == pytest.approx(JFK.duration, abs=0.05)
    assert verbose.segments and verbose.words
    assert JFK.missing_phrases(" ".join(w.word for w in verbose.words)) == []
    assert all(0 <= w.start <= w.end <= JFK.duration + 0.01 for w in verbose.words)


def test_german_speech_is_translated_to_english(client: openai.OpenAI) -> None:
    with GERMAN.path.open("rb") as audio:
        translation = client.audio.translations.create(model="whisper-1", file=audio)
    assert "doctor" in translation.text.lower() or "practice" in translation.text.lower()


def test_models_list_the_checkpoint_with_its_provenance(client: openai.OpenAI, checkpoint_dir: Path) -> None:
    (model,) = client.models.list().data
    assert model.id == checkpoint_dir.name
    assert client.models.retrieve(model.id).id == model.id
    assert (model.model_extra or {})["provenance"]["model"] == "openai/whisper-base"


def test_bad_requests_raise_the_sdks_errors_with_our_message(server: tuple[str, int]) -> None:
    host, port = server
    client = openai.OpenAI(base_url=f"http://{host}:{port}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad_format:
        transcribe(client, JFK.path, response_format="diarized_json")
    assert bad_format.value.param == "response_format"
    assert "json, text, srt, verbose_json, vtt" in bad_format.value.message
    with pytest.raises(openai.BadRequestError) as not_audio:
        transcribe(client, Path(__file__))
    assert not_audio.value.code == "not_audio"
    assert "test_openai_api.py" in not_audio.value.message
    stranger = client.with_options(api_key="sk-wrong")
    with pytest.raises(openai.AuthenticationError, match="incorrect API key"):
        stranger.models.list()
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    assert client.models.retrieve("whisper-1").id == client.models.list().data[0].id  # the base model


def _start_upload(server: tuple[str, int], headers: dict[str, str]) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection(*server, timeout=10)
    connection.putrequest("POST", "/v1/audio/transcriptions")
    for name, value in {"Authorization": f"Bearer {KEY}", **headers}.items():
        connection.putheader(name, value)
    connection.endheaders()
    return connection


def test_a_declared_oversize_upload_is_refused_before_its_body_is_sent(server: tuple[str, int]) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(10**9)}
    connection = _start_upload(server, headers)
    response = connection.getresponse()  # no body sent at all: the headers alone earn the 413
    assert response.status == 413
    assert b"request_too_large" in response.read()


def test_a_chunked_upload_gets_413_once_it_passes_the_limit_without_finishing(
    server: tuple[str, int],
) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=b", "Transfer-Encoding": "chunked"}
    connection = _start_upload(server, headers)
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
    connection.send(b"%x\r\n%s\r\n" % (len(part), part))
    chunk = b"\0" * 64 * 1024
    for _ in range(UPLOAD_LIMIT // len(chunk) + 1):  # just past the limit; the body is never terminated
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    response = connection.getresponse()
    assert response.status == 413
    assert b"request_too_large" in response.read()


def test_stream_true_yields_deltas_long_before_the_done_event(client: openai.OpenAI) -> None:
    """A 106 s reading (five windows): text arrives window by window; the joined deltas are the text."""
    import time

    from tests.clips import SONNETS

    started = time.perf_counter()
    deltas: list[tuple[float, str]] = []
    done = None
    with SONNETS.path.open("rb") as audio:
        stream = client.audio.transcriptions.create(model="whisper-1", file=audio, language="en", stream=True)
        for event in stream:
            if event.type == "transcript.text.delta":
                deltas.append((time.perf_counter() - started, event.delta))
            elif event.type == "transcript.text.done":
                done = (time.perf_counter() - started, event)
    assert done is not None and len(deltas) >= 3
    finished, event = done
    assert "".join(d for _, d in deltas) == event.text
    assert SONNETS.missing_phrases(event.text) == []
    assert deltas[0][0] < finished / 2, (deltas[0][0], finished)
    assert event.usage.seconds == pytest.approx(SONNETS.duration, abs=0.01)


def test_stream_true_with_subtitles_is_refused_and_errors_stay_in_openai_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused, JFK.path.open("rb") as audio:
        client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt", stream=True)
    assert refused.value.body["param"] == "stream"  # type: ignore[index]
