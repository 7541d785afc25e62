"""What one ingress lets in, with the real engine, real ffmpeg and the real `openai` client over HTTP:
decoded audio in flight is capped, and so are one client's requests in flight."""

from __future__ import annotations

import threading
import time

import openai
import pytest

from tests.clips import JFK, SONNETS
from tests.servers import serve_asgi
from tuned_whisper.serving import ApiSettings, EngineBackend, create_app

pytestmark = pytest.mark.slow

FIRST, SECOND = "sk-admission-first", "sk-admission-second"


def test_past_a_cap_a_caller_is_told_to_retry_and_a_request_that_fits_is_served(transcriber: object) -> None:
    settings = ApiSettings(
        api_key=FIRST, extra_api_keys=(SECOND,), max_audio_in_flight_s=150, max_requests_per_client=1
    )
    app = create_app(EngineBackend(transcriber), settings)  # type: ignore[arg-type]
    budget = app.state.audio_budget
    with serve_asgi(app) as url:
        first, second = (
            openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)
            for key in (FIRST, SECOND)
        )
        answers: list[str] = []
        running = threading.Thread(
            target=lambda: answers.append(
                first.audio.transcriptions.create(model="whisper-1", file=SONNETS.path, language="en").text
            )
        )
        running.start()
        deadline = time.monotonic() + 60
        while budget.held_s == 0:  # the sonnets (106 s) are decoded and being transcribed
            assert time.monotonic() < deadline and running.is_alive(), "the first request never got going"
            time.sleep(0.02)

        with pytest.raises(openai.RateLimitError) as busy_client:  # its one request is in flight
            first.audio.transcriptions.create(model="whisper-1", file=JFK.path)
        with pytest.raises(openai.RateLimitError) as too_much_audio:  # 106 s + 106 s > 150 s
            second.audio.transcriptions.create(model="whisper-1", file=SONNETS.path)
        short = second.audio.transcriptions.create(model="whisper-1", file=JFK.path, language="en")
        running.join(timeout=300)

    assert busy_client.value.code == "too_many_requests_in_flight"
    assert too_much_audio.value.code == "audio_in_flight_limit"
    for refusal in (busy_client.value, too_much_audio.value):
        assert refusal.status_code == 429 and refusal.response.headers["retry-after"].isdigit()
    assert JFK.missing_phrases(short.text) == []  # 11 s of another client fits beside the 106 s held
    assert SONNETS.missing_phrases(answers[0]) == []
    assert budget.held_s == 0 and budget.refused == 1
