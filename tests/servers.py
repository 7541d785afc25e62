"""A plain FastAPI server (API + UI, no Ray) on loopback, for tests that need a custom backend."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from tests.clips import GERMAN, JFK
from tuned_whisper.serving import ApiSettings, TranscribeBackend, create_app
from tuned_whisper.serving.ui import mount_ui

MAX_AUDIO_S = 120.0


@contextlib.contextmanager
def serve_ui(backend: TranscribeBackend, **ui_options: Any) -> Iterator[str]:
    """`create_app` with the UI mounted at `/`, on 127.0.0.1 at a free port, from a background thread."""
    app = create_app(backend, ApiSettings(max_audio_s=MAX_AUDIO_S))
    ui_options = {"max_audio_s": MAX_AUDIO_S, "examples": [JFK.path, GERMAN.path], **ui_options}
    mount_ui(app, backend, **ui_options)
    with serve_asgi(app) as url:
        yield url


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 at a free port, from a background thread; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port before uvicorn starts
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
