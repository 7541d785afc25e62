"""The UI's transcribe endpoint as a script meets it: the official `gradio_client` against the real server."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import srt
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, AuthenticationError

from tests.clips import JFK
from tests.conftest import API_KEY
from tests.servers import serve_ui
from tuned_whisper.audio import ffmpeg_binary
from tuned_whisper.types import Segment, TranscribeOptions, Transcript

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def client(served_app: str, tmp_path_factory: pytest.TempPathFactory) -> Client:
    """gradio_client against the real served app (Ray Serve ingress, model replica)."""
    downloads = tmp_path_factory.mktemp("gradio-downloads")
    return Client(served_app, download_files=str(downloads), verbose=False, headers=AUTH)


def test_with_an_api_key_set_the_gradio_api_refuses_a_script_without_it(served_app: str) -> None:
    with pytest.raises(AuthenticationError):
        Client(served_app, verbose=False)
    config = httpx.get(f"{served_app}/config", timeout=30)
    assert config.status_code == 401
    wrong = httpx.get(f"{served_app}/config", headers={"Authorization": "Bearer sk-wrong"}, timeout=30)
    assert wrong.status_code == 401


def by_suffix(files: list[str]) -> dict[str, Path]:
    return {"".join(Path(f).suffixes): Path(f) for f in files}


def test_an_uploaded_clip_comes_back_as_text_segments_and_files(client: Client) -> None:
    text, language, segments, files = client.predict(audio=handle_file(JFK.path), api_name="/transcribe")
    assert JFK.missing_phrases(text) == []
    assert language == "English"
    assert segments["headers"] == ["start", "end", "text"]
    assert segments["data"] and segments["data"][0][0] == "00:00:00.000"
    assert sorted(by_suffix(files)) == [".srt", ".txt", ".verbose.json", ".vtt"]
    assert all(Path(f).stem.startswith("jfk") for f in files)


def test_a_video_file_is_transcribed_with_word_timestamps(client: Client, tmp_path: Path) -> None:
    video = tmp_path / "speech.mp4"
    make_video = [ffmpeg_binary(), "-loglevel", "error", "-f", "lavfi", "-i", "color=size=64x64:duration=11"]
    make_video += ["-i", str(JFK.path), "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(video)]
    subprocess.run(make_video, check=True, timeout=60)

    text, _, _, files = client.predict(
        media=handle_file(video), language="en", word_timestamps=True, api_name="/transcribe"
    )
    assert JFK.missing_phrases(text) == []
    outputs = by_suffix(files)
    cues = list(srt.parse(outputs[".srt"].read_text(encoding="utf-8")))
    assert JFK.missing_phrases(" ".join(cue.content for cue in cues)) == []
    words = json.loads(outputs[".verbose.json"].read_text(encoding="utf-8"))["words"]
    assert any(w["word"].strip(",.").lower() == "americans" for w in words)


def test_silence_comes_back_as_no_text_and_no_segments(client: Client, tmp_path: Path) -> None:
    import soundfile

    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(25 * 16000, dtype=np.float32), 16000)
    text, _, segments, _ = client.predict(audio=handle_file(silence), language="en", api_name="/transcribe")
    assert text == "" and segments["data"] in ([], [[]], [["", "", ""]])


def test_a_file_that_is_not_audio_is_refused_with_a_readable_error(client: Client, tmp_path: Path) -> None:
    notes = tmp_path / "notes.wav"
    notes.write_text("meeting notes, not a recording\n", encoding="utf-8")
    with pytest.raises(AppError, match=re.escape("could not decode 'notes.wav'")):
        client.predict(audio=handle_file(notes), api_name="/transcribe")


class SlowBackend:
    """Takes a while per request and counts how many requests it holds at once."""

    def __init__(self) -> None:
        self.running = self.most = 0

    async def transcribe(
        self, audio: np.ndarray, options: TranscribeOptions, progress: object = None
    ) -> Transcript:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(1.0)
        self.running -= 1
        return Transcript("hello", "en", len(audio) / 16000, (Segment(0, 0.0, 1.0, "hello"),))

    def model_card(self) -> dict[str, Any]:
        return {"id": "slow"}


def test_users_are_served_side_by_side_not_one_after_another() -> None:
    backend = SlowBackend()
    with serve_ui(backend, concurrency_limit=4) as url:
        client = Client(url, verbose=False)
        jobs = [client.submit(audio=handle_file(JFK.path), api_name="/transcribe") for _ in range(3)]
        assert [job.result(timeout=30)[0] for job in jobs] == ["hello"] * 3
    assert backend.most == 3
