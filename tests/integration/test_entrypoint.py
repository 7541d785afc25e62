"""`python serve_predictor_script.py` as Cloud Run runs it: $PORT, ready, and a clean drain on SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.clips import JFK
from tests.conftest import free_port
from tuned_whisper.config import PROJECT_ROOT
from tuned_whisper.server import wait_until_ready

pytestmark = pytest.mark.slow


def multipart(fields: dict[str, str], file: Path, media_type: str) -> tuple[bytes, str]:
    """A multipart/form-data body with these fields and the file as `file`, and its Content-Type."""
    boundary = uuid.uuid4().hex
    disposition = f"--{boundary}\r\nContent-Disposition: form-data; name="
    parts = [f'{disposition}"{name}"\r\n\r\n{value}\r\n' for name, value in fields.items()]
    parts.append(f'{disposition}"file"; filename="{file.name}"\r\nContent-Type: {media_type}\r\n\r\n')
    body = "".join(parts).encode() + file.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def read_head(sock: socket.socket) -> bytes:
    """One response head (status line and headers), read a byte at a time so nothing after it is taken."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError(f"the server closed the connection after {head!r}")
        head += byte
    return head


def wait_until_draining(process: subprocess.Popen[str], port: int, timeout_s: float = 60) -> None:
    """Until /readyz answers 503: the ingress has been told to drain and refuses new requests."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server stopped without waiting for the request in flight"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 503:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"the ingress did not start draining within {timeout_s} s of SIGTERM")


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
    output: list[str] = []
    handles_sigterm = threading.Event()

    def read_output() -> None:
        for line in process.stdout or []:
            output.append(line)
            if "ready in" in line:  # logged once the script's SIGTERM handler is installed
                handles_sigterm.set()

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    try:
        ready_after = wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=240)
        print(f"ready after {ready_after:.1f} s")
        assert handles_sigterm.wait(timeout=60), "".join(output)

        body, content_type = multipart({"language": "en"}, JFK.path, "audio/flac")
        head = (
            f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(head.encode())
            # The server asks for the body (100 Continue) only once Serve has handed the request on.
            interim = read_head(sock)
            assert interim.startswith(b"HTTP/1.1 100 "), interim
            process.send_signal(signal.SIGTERM)
            # The body goes only once the drain has begun: a request that was not in flight by then
            # would be refused (503), so a 200 here is a request the drain waited for.
            wait_until_draining(process, port)
            sock.sendall(body)
            response = http.client.HTTPResponse(sock)
            response.begin()
            answer = response.read()

        assert response.status == 200, answer
        assert JFK.missing_phrases(json.loads(answer)["text"]) == []
        assert process.wait(timeout=120) == 0
        reader.join(timeout=30)
        log = "".join(output)
        assert "shutting down" in log and "stopped" in log
        assert "still in flight" not in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
