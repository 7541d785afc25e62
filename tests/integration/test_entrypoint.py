"""`python serve_predictor_script.py` as Cloud Run runs it: $PORT, ready, and a clean drain on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.clips import JFK
from tests.conftest import free_port
from tuned_whisper.config import PROJECT_ROOT
from tuned_whisper.server import wait_until_ready

pytestmark = pytest.mark.slow


def test_script_serves_on_port_and_drains_in_flight_requests_on_sigterm(checkpoint_dir: object) -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "TW_SERVE__MODEL_NUM_CPUS": "0.5", "TW_SERVE__UI": "false"}
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen(
        [sys.executable, "serve_predictor_script.py"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready_after = wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=240)
        print(f"ready after {ready_after:.1f} s")
        result: dict[str, httpx.Response] = {}

        def transcribe() -> None:
            files = {"file": (JFK.path.name, JFK.path.read_bytes())}
            result["response"] = httpx.post(
                f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                files=files,
                data={"language": "en"},
                timeout=120,
            )

        request = threading.Thread(target=transcribe)
        request.start()
        time.sleep(2.0)  # the request has reached the ingress (under load too) and is in flight
        process.send_signal(signal.SIGTERM)
        request.join(timeout=120)
        assert result["response"].status_code == 200
        assert JFK.missing_phrases(result["response"].json()["text"]) == []
        assert process.wait(timeout=120) == 0
        output = process.stdout.read() if process.stdout else ""
        assert "shutting down" in output and "stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
