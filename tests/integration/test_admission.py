"""Decoded audio in flight is capped: the real engine, real ffmpeg, the real `openai` client over HTTP."""

from __future__ import annotations

import threading
import time

import openai
import pytest

from tests.clips import JFK, SONNETS
from tests.servers import serve_asgi
from tuned_whisper.serving import ApiSettings, EngineBackend, create_app

pytestmark = pytest.mark.slow


def test_a_long_upload_beside_another_is_told_to_retry_and_a_short_one_still_fits(
    transcriber: object,
) -> None:
    app = create_app(EngineBackend(transcriber), ApiSettings(max_audio_in_flight_s=150))  # type: ignore[arg-type]
    budget = app.state.audio_budget
    with serve_asgi(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)
        first: list[str] = []
        running = threading.Thread(
            target=lambda: first.append(
                client.audio.transcriptions.create(model="whisper-1", file=SONNETS.path, language="en").text
            )
        )
        running.start()
        deadline = time.monotonic() + 60
        while budget.held_s == 0:  # the sonnets (106 s) are decoded and being transcribed
            assert time.monotonic() < deadline and running.is_alive(), "the first request never got going"
            time.sleep(0.02)

        with pytest.raises(openai.RateLimitError) as refused:
            client.audio.transcriptions.create(model="whisper-1", file=SONNETS.path)
        short = client.audio.transcriptions.create(model="whisper-1", file=JFK.path, language="en")
        running.join(timeout=300)

    assert refused.value.status_code == 429
    assert refused.value.response.headers["retry-after"].isdigit()
    assert "retry" in str(refused.value)
    assert JFK.missing_phrases(short.text) == []  # 11 s fits beside the 106 s held
    assert SONNETS.missing_phrases(first[0]) == []
    assert budget.held_s == 0 and budget.refused == 1
