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
from typing import Any

import httpx
import pytest

from tests.clips import JFK, SONNETS
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


def start_script(
    port: int,
    *args: str,
    stdout: Any = subprocess.DEVNULL,
    stderr: Any = subprocess.DEVNULL,
    new_session: bool = False,
    **env: str,
) -> subprocess.Popen[str]:
    """`python serve_predictor_script.py` on `port` with a local Ray, the API only, and `env` on top."""
    environment = {
        **os.environ,
        "PORT": str(port),
        "TW_SERVE__MODEL_NUM_CPUS": "0.5",
        "TW_SERVE__UI": "false",
        **env,
    }
    environment.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "serve_predictor_script.py", *args],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=new_session,
    )


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
    process = start_script(port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
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


def in_flight(port: int) -> int:
    """Requests the ingress is working on, from its /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    gauge = next(line for line in text.splitlines() if line.startswith("tw_requests_in_flight "))
    return int(gauge.split()[1])


@pytest.mark.faults
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_process_group_answers_every_request_and_exits_cleanly(
    sig: signal.Signals, checkpoint_dir: object, tmp_path: Path
) -> None:
    """As a supervisor (or Ctrl-C in a terminal) signals every process of the service at once."""
    import psutil

    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    grace_s = 60
    log = tmp_path / "service.log"
    with log.open("w") as out:
        process = start_script(
            port,
            stdout=out,
            stderr=subprocess.STDOUT,
            new_session=True,  # its own process group, as under a supervisor
            TW_SERVE__GRACEFUL_SHUTDOWN_S=str(grace_s),
            TMPDIR=str(scratch),  # where uploads are spooled
            RAY_TMPDIR="/tmp",  # Ray's session files are Ray's, not ours
        )
    answers: list[httpx.Response | Exception] = []

    def transcribe() -> None:
        try:
            with SONNETS.path.open("rb") as audio:
                answers.append(
                    httpx.post(
                        f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                        files={"file": (SONNETS.path.name, audio, "audio/flac")},
                        data={"language": "en"},
                        timeout=300,
                    )
                )
        except Exception as error:  # a lost request is what the test looks for
            answers.append(error)

    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", timeout_s=240)
        deadline = time.monotonic() + 60
        while "ready in" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)  # the script's handlers are installed once it logs "ready in"
        ray_processes = psutil.Process(process.pid).children(recursive=True)
        assert ray_processes, "the service started no Ray processes of its own"
        warm_up = httpx.post(
            f"http://127.0.0.1:{port}/v1/audio/transcriptions",
            files={"file": (JFK.path.name, JFK.path.read_bytes(), "audio/flac")},
            timeout=120,
        )
        assert warm_up.status_code == 200, warm_up.text
        started_with = set(scratch.rglob("*"))  # what the service keeps for its lifetime
        clients = [threading.Thread(target=transcribe) for _ in range(3)]
        for client in clients:
            client.start()
        deadline = time.monotonic() + 60
        while in_flight(port) < len(clients):
            assert time.monotonic() < deadline, "the requests never reached the ingress"
            time.sleep(0.05)

        signalled = time.monotonic()
        os.killpg(process.pid, sig)
        rc = process.wait(timeout=grace_s + 30)
        stopped_after = time.monotonic() - signalled
        for client in clients:
            client.join(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log.read_text()
    print(f"{sig.name}: exit {rc} after {stopped_after:.1f} s")

    assert rc == 0, output[-3000:]
    assert stopped_after < grace_s, output[-3000:]
    assert "Failed to connect to GCS" not in output
    assert len(answers) == len(clients)
    for answer in answers:
        assert isinstance(answer, httpx.Response), answer
        assert answer.status_code == 200, answer.text
        assert SONNETS.missing_phrases(answer.json()["text"]) == []
    left = [p for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], [p.cmdline() for p in left]
    assert set(scratch.rglob("*")) <= started_with, "requests left temp files behind"


def test_two_replicas_one_metrics_scrape_and_json_logs_that_follow_each_request(
    checkpoint_dir: object,
) -> None:
    """As the container runs (`TW_SERVE__LOG_ENCODING=JSON`) with two model replicas: one `/metrics`
    scrape counts the windows of both; every stdout line is one JSON object; each request's id (its
    `X-Request-ID`) is on its lines in the ingress and in the model replica that decoded it, and on our
    own line for a refused upload."""
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    process = start_script(port, "--replicas", "2", stdout=subprocess.PIPE, TW_SERVE__LOG_ENCODING="JSON")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{url}/readyz", timeout_s=240)
        clip = JFK.path.read_bytes()

        def post(n: int) -> httpx.Response:
            return httpx.post(
                f"{url}/v1/audio/transcriptions",
                files={"file": (JFK.path.name, clip, "audio/flac")},
                data={"language": "en"},
                headers={"X-Request-ID": f"story-{n}"},
                timeout=180,
            )

        answers: list[httpx.Response] = []
        clients = [threading.Thread(target=lambda n=n: answers.append(post(n))) for n in range(6)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=240)
        assert [a.status_code for a in answers] == [200] * 6
        assert sorted(a.headers["x-request-id"] for a in answers) == [f"story-{n}" for n in range(6)]
        bad = httpx.post(
            f"{url}/v1/audio/transcriptions",
            files={"file": ("notes.wav", b"not audio at all", "audio/wav")},
            headers={"X-Request-ID": "story-bad"},
            timeout=60,
        )
        assert bad.status_code == 400 and bad.headers["x-request-id"] == "story-bad"

        deadline = time.monotonic() + 60
        while True:  # Ray exports every few seconds
            text = httpx.get(f"{url}/metrics", timeout=30).text
            windows = {
                sample.labels.get("replica", "?"): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "tw_model_windows_total"
            }
            if sum(windows.values()) >= 6 or time.monotonic() > deadline:
                break
            time.sleep(1)
        print(f"windows by replica: {windows}")
        assert sum(windows.values()) == 6  # one 30 s window per clip, wherever it was decoded
        assert len(windows) == 2  # Serve spread six requests in flight over both replicas
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
        reader.join(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    records = [json.loads(line) for line in lines if line.strip()]  # every line parses
    assert all(isinstance(record, dict) for record in records) and len(records) > 20
    for n in range(6):
        mine = [r for r in records if r.get("request_id") == f"story-{n}"]
        assert {r.get("deployment", "").rsplit("_", 1)[-1] for r in mine} >= {"GradioServer", "WhisperASR"}
    replicas = {r.get("replica") for r in records if r.get("deployment", "").endswith("WhisperASR")}
    assert len(replicas - {None}) == 2  # lines from both model replicas
    refused = [r for r in records if r.get("request_id") == "story-bad"]
    assert any("-> 400" in r["message"] for r in refused), refused  # our own error line
    assert any(r.get("component_name") == "driver" and "ready in" in r["message"] for r in records)
