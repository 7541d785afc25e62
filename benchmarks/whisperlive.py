"""The peer: WhisperLive's WebSocket server under the same live sessions as `stream.py`, on the same weights.

WhisperLive (the `whisper-live` package, 0.10.0) runs in one subprocess: its `TranscriptionServer` with the
faster_whisper backend on our base CTranslate2 int8 export (`.cache/ct2/*-int8`, the weights the served
app's ct2-int8 backend loads), on the CPU, `OMP_NUM_THREADS=2`, one shared model for all sessions (its
default for a custom model, `single_model`), on a free loopback port. It loads the model when the first
session connects, so one short warm-up session (the JFK clip) goes first. The subprocess runs offline and
proves it: an audit hook refuses any non-loopback connection or name lookup and any subprocess (WhisperLive's
own Silero download is a `wget` in `whisper_live/vad.py`, used only by its TensorRT backend; the
faster_whisper backend's VAD is faster-whisper's bundled `silero_vad_v6.onnx`), and `HF_HUB_OFFLINE=1`.

Then for each session count N, N sessions at once stream `stream.py`'s session streams (`session_stream`,
same seed, same ~45 s of JFK and ivr-en prompts with 0.8-1.5 s pauses, 1.5 s trailing silence; session i
streams the same audio whatever N is; starts staggered by up to 1 s as there) as float32 16 kHz binary frames
of 100 ms, each sent once its 100 ms would have been recorded. Each session sends the options WhisperLive's
own `Client` sends, with its defaults (language en, task transcribe, `use_vad` true, `send_last_n_segments`
10, `no_speech_thresh` 0.45, `same_output_threshold` 10, no translation, no diarization).

WhisperLive re-transcribes the session's unconfirmed audio over and over and sends the last 10 confirmed
segments plus the current unconfirmed one; a segment becomes `completed` once Whisper has started a segment
after it, or once the same text came back `same_output_threshold` + 1 times in a row. Per session:

- **latency** of a completed segment: when this script first saw it completed − when the frame holding the
  segment's end (`end`, stream seconds from the session's first frame) had been sent. This is what
  `stream.py` calls "speech end → completed", with Whisper's segment end in place of the VAD's turn end.
- **drain**: the last newly completed segment's arrival − the last frame's sending.
- **keeps up**: no error, nothing left unconfirmed at the end, completed segments reach the last clip's end
  (within 1 s), and drain ≤ 3 s. A session waits up to 30 s after its last frame for that, then sends
  `END_OF_AUDIO`; words never completed count as deletions in the WER.
- **WER**: normalised (Whisper's English normaliser, `benchmarks.harness.normalised_wer`, as `stream.py`),
  corpus-level: per session its completed segments in order against its clips' references. **WER s0** is
  session 0's alone, the same audio in every row. **WER with unconfirmed tail** adds the text of the segment
  still unconfirmed when the session ended (what WhisperLive's client would display; its faster_whisper
  backend does not confirm it on `END_OF_AUDIO`).

Needs an environment with `whisper-live` and this repository's benchmark imports (numpy, httpx, psutil,
ffmpeg-python, jiwer, transformers, whisper-normalizer) but not the served app; e.g. `/tmp/wl-venv` built with
`pip install --no-deps whisper-live==0.10.0` plus torch 2.13.0 (CPU), faster-whisper 1.2.1,
ctranslate2 4.8.5, onnxruntime, websockets, fastapi, uvicorn and those. Run it with that environment's python:

    /tmp/wl-venv/bin/python benchmarks/whisperlive.py                    # 1, 2, 4 sessions of 45 s
    /tmp/wl-venv/bin/python benchmarks/whisperlive.py --sessions 1 --seconds 20
    /tmp/wl-venv/bin/python benchmarks/whisperlive.py --no-vad --json wl.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

from benchmarks.harness import (  # noqa: E402  (after the sys.path line above)
    SAMPLE_RATE,
    THREADS,
    fixture_clips,
    load_average,
    normalised_wer,
    process_peak_rss_mb,
)
from benchmarks.load import _percentile  # noqa: E402
from benchmarks.stream import (  # noqa: E402
    CHUNK_S,
    STAGGER_S,
    Stream,
    build_stream,
    send_in_real_time,
    session_stream,
)

CT2_CACHE = REPO / ".cache" / "ct2"
FRAME = round(SAMPLE_RATE * CHUNK_S)
"""Samples per binary frame (100 ms at 16 kHz)."""
DRAIN_LIMIT_S = 3.0
"""A session keeps up only if its last segment completed within this of its last frame."""
COVER_SLACK_S = 1.0
"""... and its completed segments end no earlier than this before its last clip's end."""
DRAIN_WAIT_S = 30.0
"""How long a session waits, after its last frame, for its segments to be completed."""
OPEN_TIMEOUT_S = 60.0
"""The handshake includes loading the model on the first connection."""
STARTUP_TIMEOUT_S = 120.0
VERSIONED = ("whisper-live", "faster-whisper", "ctranslate2", "onnxruntime", "torch", "websockets", "numpy")
OPTIONS: dict[str, Any] = {
    # what whisper_live.client.Client sends, with its defaults (model: the server's custom model wins)
    "language": "en",
    "task": "transcribe",
    "use_vad": True,
    "send_last_n_segments": 10,
    "no_speech_thresh": 0.45,
    "clip_audio": False,
    "same_output_threshold": 10,
    "enable_translation": False,
    "target_language": "fr",
    "hotwords": None,
    "enable_diarization": False,
    "max_speakers": 10,
    "known_speakers": None,
    "word_timestamps": False,
    "initial_prompt": None,
    "vad_parameters": None,
}


# --- the server (subprocess) --------------------------------------------------------------------------------


def _offline_guard() -> None:
    """Refuse (and report) any non-loopback connection or lookup and any subprocess in this process."""

    def loopback(host: object) -> bool:
        if not isinstance(host, str):
            return True  # AF_UNIX paths and the like
        if host in ("localhost", ""):
            return True
        with contextlib.suppress(ValueError):
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        return False

    def hook(event: str, args: tuple[Any, ...]) -> None:
        refused = None
        if event == "socket.connect" and isinstance(args[1], tuple) and not loopback(args[1][0]):
            refused = f"connection to {args[1]!r}"
        elif event == "socket.getaddrinfo" and not loopback(args[0]):
            refused = f"name lookup of {args[0]!r}"
        elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn"):
            refused = f"subprocess {args[:2]!r}"
        if refused:
            print(f"[offline guard] refused {refused}", file=sys.stderr, flush=True)
            raise PermissionError(f"offline benchmark: {refused} refused")

    sys.addaudithook(hook)


def serve(port: int, model_dir: Path, cache_dir: Path) -> None:
    """WhisperLive's server, faster_whisper backend, our CT2 weights; runs until killed."""
    import logging

    _offline_guard()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from whisper_live.server import TranscriptionServer

    TranscriptionServer().run(
        "127.0.0.1",
        port=port,
        backend="faster_whisper",
        faster_whisper_custom_model_path=str(model_dir),
        single_model=True,
        max_clients=16,
        max_connection_time=600,
        cache_path=str(cache_dir),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def find_model_dir() -> Path:
    """The base CTranslate2 int8 export the served app made (`.cache/ct2/<sha>-int8/model.bin`)."""
    found = sorted(CT2_CACHE.glob("*-int8/model.bin"))
    if not found:
        raise SystemExit(f"no CTranslate2 int8 export under {CT2_CACHE}; pass --model DIR")
    return found[0].parent


@contextlib.contextmanager
def server_process(model_dir: Path, log_path: Path) -> Any:
    """Start `serve` in a subprocess on a free port; yield (port, process) once it accepts connections."""
    port = free_port()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(THREADS),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    cache_dir = Path(tempfile.mkdtemp(prefix="wl-cache-"))
    command = [sys.executable, __file__, "--serve", str(port), "--model", str(model_dir)]
    command += ["--cache-dir", str(cache_dir)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the WhisperLive server exited ({process.returncode}); see {log_path}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the WhisperLive server did not listen in {STARTUP_TIMEOUT_S:.0f} s")
            time.sleep(0.2)
        yield port, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        leftovers = [str(p) for p in cache_dir.rglob("*")]
        if leftovers:
            print(f"note: WhisperLive wrote into its cache dir: {leftovers}", file=sys.stderr)


# --- one live session ---------------------------------------------------------------------------------------


@dataclass
class Segment:
    start: float
    end: float
    text: str
    completed_at: float
    latency_s: float


@dataclass
class Session:
    """What one live session sent and saw."""

    index: int
    stream: Stream
    speech_end_s: float
    """Where the stream's last clip ends (stream seconds)."""
    sent_at: float = math.nan
    """When frame 0 went out: frame k (audio up to 100 ms × (k + 1)) was due 100 ms × (k + 1) later."""
    last_frame_at: float = math.nan
    send_lag_s: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    pending: str = ""
    """The text of the unconfirmed segment in the latest message ('' when none)."""
    messages: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def transcript(self) -> str:
        return " ".join(
            s.text.strip() for s in sorted(self.segments, key=lambda s: s.start) if s.text.strip()
        )

    @property
    def with_pending(self) -> str:
        """The completed segments and then the text still unconfirmed at the end (what a caller displays)."""
        return f"{self.transcript} {self.pending}".strip()

    @property
    def covered(self) -> bool:
        return bool(self.segments) and max(s.end for s in self.segments) >= self.speech_end_s - COVER_SLACK_S

    @property
    def done(self) -> bool:
        return not self.pending and self.covered

    @property
    def drain_s(self) -> float:
        if not self.segments:
            return math.inf
        return max(0.0, max(s.completed_at for s in self.segments) - self.last_frame_at)

    @property
    def keeps_up(self) -> bool:
        return not self.errors and self.done and self.drain_s <= DRAIN_LIMIT_S

    def record(self, message: dict[str, Any], at: float) -> None:
        self.messages += 1
        if message.get("status") in ("ERROR", "WAIT", "WARNING"):
            self.errors.append(f"{message['status']}: {message.get('message')}")
        segments = message.get("segments")
        if not segments:
            return
        for seg in segments:
            if not seg.get("completed"):
                continue
            key = (seg["start"], seg["end"], seg["text"])
            if key in self.seen:
                continue
            self.seen.add(key)
            end = float(seg["end"])
            frames = math.ceil(round(end / CHUNK_S, 6))
            latency = at - (self.sent_at + frames * CHUNK_S)
            self.segments.append(Segment(float(seg["start"]), end, seg["text"], at, latency))
        last = segments[-1]
        self.pending = "" if last.get("completed") else str(last.get("text", "")).strip()


def frames_of(stream: Stream) -> list[bytes]:
    audio = stream.audio.astype(np.float32)
    return [audio[i : i + FRAME].tobytes() for i in range(0, audio.size, FRAME)]


async def live_session(url: str, session: Session, delay_s: float, use_vad: bool) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    frames = frames_of(session.stream)
    await asyncio.sleep(delay_s)
    options = {"uid": str(uuid.uuid4()), "model": "custom", **OPTIONS, "use_vad": use_vad}
    try:
        async with connect(url, max_size=None, open_timeout=OPEN_TIMEOUT_S) as ws:
            await ws.send(json.dumps(options))
            ready = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
            if ready.get("message") != "SERVER_READY":
                session.errors.append(f"not ready: {ready}")
                return
            reader = asyncio.create_task(_read(ws, session))
            try:
                await _send(ws, session, frames)
                deadline = time.monotonic() + DRAIN_WAIT_S
                while time.monotonic() < deadline and not reader.done() and not session.done:
                    await asyncio.sleep(0.02)
                await ws.send(b"END_OF_AUDIO")
                await asyncio.sleep(0.2)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
    except (OSError, TimeoutError, ConnectionClosed) as exc:
        session.errors.append(f"connection: {type(exc).__name__}: {exc}")


async def _send(ws: Any, session: Session, frames: Sequence[bytes]) -> None:
    session.sent_at = time.monotonic()
    session.send_lag_s = await send_in_real_time(ws, frames, session.sent_at)
    session.last_frame_at = time.monotonic()


async def _read(ws: Any, session: Session) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for message in ws:
            if isinstance(message, str):
                session.record(json.loads(message), time.monotonic())
    except ConnectionClosed as exc:
        if math.isnan(session.last_frame_at):
            session.errors.append(f"disconnected: {exc}")


def speech_end_s(stream: Stream) -> float:
    """Where the last clip ends: the stream less its trailing silence (`build_stream`'s layout)."""
    from tuned_whisper.live_client import TRAILING_SILENCE_S

    return stream.duration_s - TRAILING_SILENCE_S


async def run_sessions(url: str, streams: Sequence[Stream], seed: int, use_vad: bool) -> list[Session]:
    """One session per stream, all at once; starts staggered as in `stream.py`."""
    rng = random.Random(seed + len(streams))
    sessions = [Session(i, s, speech_end_s(s)) for i, s in enumerate(streams)]
    delays = [rng.uniform(0, STAGGER_S) if len(streams) > 1 else 0.0 for _ in sessions]
    await asyncio.gather(*(live_session(url, s, d, use_vad) for s, d in zip(sessions, delays, strict=True)))
    return sessions


# --- the report ---------------------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    return "-" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.2f}")


def row(n: int, sessions: Sequence[Session], rss_mb: float) -> str:
    latencies = [s.latency_s for session in sessions for s in session.segments]
    wer = normalised_wer([s.stream.reference for s in sessions], [s.transcript for s in sessions])
    wer_s0 = normalised_wer([sessions[0].stream.reference], [sessions[0].transcript])
    wer_pending = normalised_wer([s.stream.reference for s in sessions], [s.with_pending for s in sessions])
    keeps = all(s.keeps_up for s in sessions)
    cells = [
        str(n),
        str(len(latencies)),
        _seconds(_percentile(latencies, 50)),
        _seconds(_percentile(latencies, 95)),
        f"{wer:.1%}",
        "yes" if keeps else "**no**",
        f"{wer_s0:.1%}",
        f"{wer_pending:.1%}",
        _seconds(max(s.drain_s for s in sessions)),
        str(sum(bool(s.pending) or not s.covered for s in sessions)),
        str(sum(len(s.errors) for s in sessions)),
        f"{rss_mb:.0f}",
        f"{max(s.send_lag_s for s in sessions) * 1000:.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = [
    "| sessions | completed segments | latency p50 s | latency p95 s | WER norm. | keeps up | WER s0 "
    "| WER with unconfirmed tail | drain max s | sessions unfinished | errors | server RSS MB "
    "| send lag max ms |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def main() -> None:
    args = parse_args()
    if args.serve is not None:
        serve(args.serve, args.model or find_model_dir(), args.cache_dir or Path(tempfile.mkdtemp()))
        return
    model_dir = args.model or find_model_dir()
    counts = sorted({int(n) for n in args.sessions.split(",")})
    streams = [session_stream(i, args.seconds, args.seed) for i in range(max(counts))]
    use_vad = not args.no_vad
    log_path = Path(tempfile.gettempdir()) / "whisperlive-server.log"
    lines = []
    detail: list[dict[str, Any]] = []
    with server_process(model_dir, log_path) as (port, process):
        url = f"ws://127.0.0.1:{port}"
        started = time.monotonic()
        jfk = fixture_clips()["jfk"]
        warm = build_stream([jfk], [])
        asyncio.run(run_sessions(url, [warm], args.seed, use_vad))
        warm_s = time.monotonic() - started
        print(f"warm-up session (model load included): {warm_s:.1f} s", flush=True)
        for n in counts:
            print(f"{n} session(s)... load average {load_average()}", flush=True)
            sessions = asyncio.run(run_sessions(url, streams[:n], args.seed, use_vad))
            lines.append(row(n, sessions, process_peak_rss_mb(process.pid)))
            print(lines[-1], flush=True)
            for s in sessions:
                for e in s.errors:
                    print(f"  session {s.index}: {e}", flush=True)
                detail.append(
                    {
                        "sessions": n,
                        "index": s.index,
                        "keeps_up": s.keeps_up,
                        "drain_s": s.drain_s,
                        "pending": s.pending,
                        "covered": s.covered,
                        "errors": s.errors,
                        "reference": s.stream.reference,
                        "transcript": s.transcript,
                        "messages": s.messages,
                        "segments": [vars(seg) for seg in s.segments],
                    }
                )
            time.sleep(2)
    refused = [line.strip() for line in log_path.read_text().splitlines() if "[offline guard]" in line]
    versions = ", ".join(f"{name} {_version(name)}" for name in VERSIONED)
    print()
    print(f"- python {sys.version.split()[0]}; {versions}")
    print(
        f"- WhisperLive server: faster_whisper backend, model {model_dir} (int8, CPU), "
        f"OMP_NUM_THREADS={THREADS}, single_model, use_vad={use_vad}; warm-up {warm_s:.1f} s"
    )
    vad = "faster-whisper's bundled Silero ONNX inside each transcribe" if use_vad else "off (use_vad false)"
    print(
        "- decoding: WhisperLive's own (its transcriber's defaults: beam 5, best_of 5, temperatures 0-1.0 "
        f"fallback, condition_on_previous_text); VAD: {vad}"
    )
    print(f"- offline guard (server process): {len(refused)} refused {refused or ''}")
    print(
        f"- streams: {args.seconds:.0f} s per session, seed {args.seed}, float32 16 kHz in "
        f"{CHUNK_S * 1000:.0f} ms frames at real time; load average after {load_average()}"
    )
    print()
    print("\n".join(HEADER + lines))
    if args.json:
        args.json.write_text(json.dumps(detail, indent=2, default=str), encoding="utf-8")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", default="1,2,4", help="session counts, comma-separated (1,2,4)")
    parser.add_argument("--seconds", type=float, default=45.0, help="length of each session's stream (45)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the streams and the staggering (0)")
    parser.add_argument("--model", type=Path, help="CTranslate2 model dir (default: .cache/ct2/*-int8)")
    parser.add_argument("--no-vad", action="store_true", help="sessions send use_vad false")
    parser.add_argument("--json", type=Path, help="also write every session's segments and text here")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
