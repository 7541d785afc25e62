"""The served product on Ray Serve: health, batching across concurrent users, bad input, the Serve config."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.clips import GERMAN, JFK
from tests.conftest import API_KEY, IVR_DEV, SECOND_KEY
from tuned_whisper.config import PROJECT_ROOT

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def post(url: str, path: Path | None, **form: str) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes())} if path else None
    return httpx.post(f"{url}/v1/audio/transcriptions", files=files, data=form, headers=AUTH, timeout=300)


def batch_counts(url: str) -> dict[int, int]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {int(size): int(count) for size, count in re.findall(r'tw_batches\{size="(\d+)"\} (\d+)', text)}


def test_health_and_readiness(served_app: str) -> None:
    assert httpx.get(f"{served_app}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{served_app}/readyz").json() == {"status": "ready"}


def test_eight_concurrent_requests_are_all_right_and_share_batches(served_app: str) -> None:
    before = batch_counts(served_app)
    clips = [JFK, GERMAN] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda clip: post(served_app, clip.path, response_format="verbose_json"), clips)
        )
    assert [r.status_code for r in responses] == [200] * 8
    for clip, response in zip(clips, responses, strict=True):
        body = response.json()
        assert body["language"] == ("english" if clip is JFK else "german")
        assert clip.missing_phrases(body["text"]) == []
    after = batch_counts(served_app)
    new_batches = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    jobs = sum(size * count for size, count in new_batches.items())
    batches = sum(new_batches.values())
    # At least one window job per clip (a last window Whisper ends early is read again), in fewer batches.
    assert jobs >= 8 and batches < jobs
    assert max(size for size, count in new_batches.items() if count > 0) > 1


def test_bad_inputs_get_clear_errors_and_the_server_keeps_serving(served_app: str, tmp_path: Path) -> None:
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio at all")
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    cases = [
        (post(served_app, None), 400, None),
        (post(served_app, not_audio), 400, "not_audio"),
        (post(served_app, empty), 400, "empty"),
        (post(served_app, JFK.path, response_format="docx"), 400, None),
        (httpx.post(f"{served_app}/v1/audio/transcriptions", files={"file": ("a.wav", b"x")}), 401, None),
    ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["message"]
        if code:
            assert error["code"] == code
    good = post(served_app, JFK.path, response_format="text")
    assert good.status_code == 200 and "fellow Americans" in good.text


def test_an_upload_over_the_limit_is_refused_with_413(served_app: str) -> None:
    big = b"\0" * (5 * 1024 * 1024)
    response = httpx.post(
        f"{served_app}/v1/audio/transcriptions", files={"file": ("big.wav", big)}, headers=AUTH, timeout=60
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_the_serve_config_file_matches_the_code() -> None:
    """deploy/serve_config.yaml is what `serve build tuned_whisper.serving.app:app` writes (kept in sync)."""
    from tuned_whisper.serving.deploy_config import serve_config

    committed = yaml.safe_load((PROJECT_ROOT / "deploy" / "serve_config.yaml").read_text())
    assert committed == serve_config()


def test_short_clips_of_one_key_share_windows_and_two_keys_never_share_one(served_app: str) -> None:
    """A call centre sends many short prompts with its key: they are packed; another key's never join."""
    from ray import serve

    from tuned_whisper.serving.app import APP_NAME

    model = serve.get_deployment_handle("WhisperASR", app_name=APP_NAME)
    seen = len(model.stats.remote().result()["recent_packs"])
    clips = sorted(IVR_DEV.glob("*.flac"))[:12]
    keys = [API_KEY, SECOND_KEY] * 6

    def send(pair: tuple[Path, str]) -> httpx.Response:
        path, key = pair
        files = {"file": (path.name, path.read_bytes())}
        headers = {"Authorization": f"Bearer {key}"}
        url = f"{served_app}/v1/audio/transcriptions"
        return httpx.post(url, files=files, data={"language": "en"}, headers=headers, timeout=300)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(send, zip(clips, keys, strict=True)))
    assert [r.status_code for r in responses] == [200] * 12
    assert all(r.json()["text"] for r in responses)
    packs = model.stats.remote().result()["recent_packs"][seen:]
    assert packs, "no short clips were packed"
    assert all(len(set(callers)) == 1 for callers in packs), packs
    assert len({callers[0] for callers in packs}) <= 2


def test_silence_noise_and_a_tenth_of_a_second_come_back_empty(served_app: str, tmp_path: Path) -> None:
    import numpy as np
    import soundfile

    cases = {
        "silence.wav": np.zeros(30 * 16000, dtype=np.float32),
        "noise.wav": np.random.default_rng(3).normal(0, 0.1, 20 * 16000).astype(np.float32),
        "blip.wav": np.random.default_rng(4).normal(0, 0.3, 1600).astype(np.float32),
    }
    for name, audio in cases.items():
        soundfile.write(tmp_path / name, audio, 16000)
        response = post(served_app, tmp_path / name, response_format="verbose_json")
        assert response.status_code == 200, response.text
        assert response.json()["text"] == "" and response.json()["segments"] == [], name


def test_verbose_json_carries_the_decoders_signals_and_models_name_the_backend(served_app: str) -> None:
    body = post(served_app, JFK.path, response_format="verbose_json").json()
    for segment in body["segments"]:
        assert -1.0 < segment["avg_logprob"] < 0.0 and 0.0 < segment["no_speech_prob"] < 0.6
        assert segment["compression_ratio"] > 1.0 and segment["tokens"]
    model = httpx.get(f"{served_app}/v1/models", headers=AUTH, timeout=30).json()["data"][0]
    assert (model["backend"], model["device"], model["dtype"]) == ("ctranslate2", "cpu", "int8")
