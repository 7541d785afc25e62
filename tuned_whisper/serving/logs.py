"""Logs: one format across the driver, the ingress and the model replicas, with the request id on every line
a request causes.

Serve writes each replica's log lines to a file of its own, as JSON with `TW_SERVE__LOG_ENCODING=JSON`
(`request_id`, `deployment`, `replica`, `message`, ...); the request id is the proxy's (the client's
`X-Request-ID` when it sends one), carried through every handle call a request makes. Our own loggers
(`tuned_whisper.*`) write through the same handlers in a replica. In JSON mode the driver prints every
line of those files on stdout, one JSON object per line, which is what Cloud Logging and `kubectl logs`
read; the driver's own lines are JSON too.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Literal

LogEncoding = Literal["TEXT", "JSON"]
SERVE_LOGGER = "ray.serve"
OUR_LOGGER = "tuned_whisper"


def logging_config(encoding: LogEncoding, level: str) -> dict[str, str]:
    """Serve's `logging_config` for the deployments, the proxy and the controller."""
    return {"encoding": encoding, "log_level": level}


def use_serve_handlers() -> None:
    """In a replica: `tuned_whisper.*` lines go where Serve's go, with the same request context."""
    serve_logger = logging.getLogger(SERVE_LOGGER)
    if not serve_logger.handlers:  # not in a Serve replica: leave our loggers as they are
        return
    ours = logging.getLogger(OUR_LOGGER)
    for handler in serve_logger.handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
    ours.setLevel(serve_logger.level or logging.INFO)
    ours.propagate = False


class JsonFormatter(logging.Formatter):
    """The driver's lines in the shape of Serve's JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "asctime": self.formatTime(record),
            "levelname": record.levelname,
            "message": record.getMessage(),
            "name": record.name,
            "process": record.process,
            "component_name": "driver",
        }
        if record.exc_info:
            line["exc_text"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class JsonLines(io.TextIOBase):
    """A text stream that passes JSON lines through and wraps any other line as one: what Ray itself
    prints on the driver's stdout (its raylet's messages at shutdown) stays one JSON object per line."""

    def __init__(self, out: IO[str], component: str = "driver") -> None:
        self.out = out
        self.component = component
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                if line.strip():
                    self.out.write(as_json_line(line, self.component) + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def configure_driver(encoding: LogEncoding, level: str) -> None:
    """The serving script's own logging; in JSON mode stdout carries JSON lines only, and replicas stop
    writing to stderr (their lines come through `LogForwarder`, whole)."""
    if encoding == "JSON" and not isinstance(sys.stdout, JsonLines):
        sys.stdout = JsonLines(sys.stdout)
    handler = logging.StreamHandler(sys.stdout if encoding == "JSON" else sys.stderr)
    if encoding == "JSON":
        handler.setFormatter(JsonFormatter())
        os.environ["RAY_SERVE_LOG_TO_STDERR"] = "0"  # read by the Serve processes this driver starts
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def route_driver_serve_logs() -> None:
    """Serve's own lines in the driver (its text handler on stderr) through the driver's JSON handler."""
    serve_logger = logging.getLogger(SERVE_LOGGER)
    for handler in list(serve_logger.handlers):
        serve_logger.removeHandler(handler)
    serve_logger.propagate = True


def as_json_line(line: str, component: str) -> str:
    """A log line as one JSON object: as it is when it is one, else wrapped (a text line of a component
    that does not write JSON)."""
    text = line.rstrip("\n")
    try:
        if isinstance(json.loads(text), dict):
            return text
    except ValueError:
        pass
    return json.dumps({"message": text, "component_name": component}, ensure_ascii=False)


class LogForwarder(threading.Thread):
    """Copies every line that Serve's processes append to their log files (`serve/*.log` under Ray's
    session directory) to `out`, as JSON lines."""

    def __init__(self, directory: Path, out: IO[str] | None = None, poll_s: float = 0.2) -> None:
        super().__init__(name="log-forwarder", daemon=True)
        self.directory = directory
        self.out = out or sys.stdout
        self.poll_s = poll_s
        self._files: dict[Path, IO[str]] = {}
        self._pending: dict[Path, str] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.forward()
            self._done.wait(self.poll_s)
        self.forward()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def forward(self) -> None:
        """Write out whatever whole lines the files gained since the last call."""
        for path in sorted(self.directory.glob("*.log")):
            handle = self._files.get(path)
            if handle is None:
                handle = self._files[path] = path.open(encoding="utf-8", errors="replace")
            chunk = self._pending.pop(path, "") + handle.read()
            lines = chunk.split("\n")
            if lines[-1]:
                self._pending[path] = lines[-1]  # a line still being written
            component = path.stem.split("_", 1)[0]
            for line in lines[:-1]:
                if line.strip():
                    self.out.write(as_json_line(line, component) + "\n")
        self.out.flush()


def serve_log_dir() -> Path:
    """Where this node's Serve processes write their logs (after `ray.init`)."""
    import ray

    node = ray._private.worker._global_node  # no public API names the session directory
    session = Path(node.get_session_dir_path()) if node is not None else Path("/tmp/ray/session_latest")
    return session / "logs" / "serve"


def wait_for(directory: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not directory.is_dir() and time.monotonic() < deadline:
        time.sleep(0.1)
