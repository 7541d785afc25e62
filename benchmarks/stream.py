"""Realtime benchmark: N concurrent live sessions on `/v1/realtime?intent=transcription`, at real-time pace.

For each backend the served app runs in one subprocess (`serve_predictor_script.py`, set up like
`load.py`'s: a local Ray, API only, one model replica, short-clip packing on, one API key that every session
sends), is warmed up with one short session, and then serves every session count N in turn. Each of the N
sessions streams its own ~`--seconds` of real English speech (the JFK clip and ivr-en telephone prompts,
shuffled per session, with 0.8-1.5 s pauses between clips, 1.5 s of silence at the end) as 24 kHz PCM16 in
100 ms `input_audio_buffer.append` events, each sent once its 100 ms would have been recorded (real time);
session starts are staggered by up to 1 s. The server's VAD finds the turns (`server_vad`, threshold 0.5,
500 ms of silence, OpenAI's defaults). Session i streams the same audio whatever N is.

Per turn (an item the server reports), times are this script's clock when an event arrives:

- **first delta**: the turn's first `...transcription.delta` − its `speech_started` (turns without a delta,
  e.g. shorter than the server's 1 s partial interval or with partials shed under load, do not count).
- **final**: `...transcription.completed` − `speech_stopped` (the server sends `speech_stopped` once its
  500 ms silence window has passed, so this is the wait for the decode after the server saw the turn end).
- **speech end → completed**: `completed` − the moment the turn's last audio (`audio_end_ms`) was sent:
  what a caller waits after they stop talking, the silence window included.
- **drain**: per session, its last `completed` − its last append (the trailing silence's end).
- **catch-up**: per session, after its last append it sends the same `session.update` again; the server
  answers once it has handled every append before it, so the answer's arrival − the last append says how far
  the server's handling of the audio itself (its VAD included) lagged behind.

A session **keeps up** when it saw no `error` event, no `...transcription.failed`, no disconnect; every
turn the server started was completed, the last within 2 s of the session's last append; and its p95 final
latency is at most 3 s. A session count keeps up when all its sessions do. WER: normalised (Whisper's English
normaliser), corpus-level: per session, its completed transcripts in audio order against its clips'
references; a session waits up to 45 s after its last append for its turns, and the words of a turn still
not completed then count as deletions (and the turn as **unfinished**). Sessions differ in what they say, so
the corpus WER of different N covers different audio; **WER s0** is session 0's alone, the same audio in
every row.

    .venv/bin/python benchmarks/stream.py              # ct2 int8 and transformers; 1,2,4,8,16 sessions
    .venv/bin/python benchmarks/stream.py --quick      # smoke: CTranslate2, 1 and 2 sessions of 20 s
    .venv/bin/python benchmarks/stream.py --backends ctranslate2 --sessions 1,2,4,8 --seconds 45
    .venv/bin/python benchmarks/stream.py --backends transformers --sessions 4 --json stream.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import math
import random
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

from benchmarks.harness import (  # noqa: E402  (after the sys.path line above)
    SAMPLE_RATE,
    THREADS,
    Clip,
    Contention,
    fixture_clips,
    ivr_clips,
    load_average,
    machine_lines,
    normalised_wer,
    process_peak_rss_mb,
    quietly,
)
from benchmarks.load import (  # noqa: E402
    API_KEY,
    BACKENDS,
    BATCH_SIZE,
    LABEL,
    Served,
    _counts,
    _names,
    _percentile,
    replica_peak_mb,
    served,
)
from tuned_whisper.audio import decode_audio  # noqa: E402
from tuned_whisper.audio_formats import encode_pcm16  # noqa: E402
from tuned_whisper.live_client import TRAILING_SILENCE_S  # noqa: E402

RATE = 24000
"""PCM16 at 24 kHz: what OpenAI's clients send."""
CHUNK_S = 0.1
CHUNK_BYTES = round(RATE * CHUNK_S) * 2
LEADING_SILENCE_S = 0.5
PAUSE_S = (0.8, 1.5)
"""Silence between two clips of a session's stream (uniform)."""
STAGGER_S = 1.0
"""Each session starts after a random fraction of this."""
SESSION_CONFIG: dict[str, Any] = {
    "type": "transcription",
    "audio": {
        "input": {
            "format": {"type": "audio/pcm", "rate": RATE},
            "transcription": {"model": "whisper-1", "language": "en"},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500},
        }
    },
}
DRAIN_LIMIT_S = 2.0
"""A session keeps up only if its last turn completed within this of its last append."""
FINAL_P95_LIMIT_S = 3.0
"""... and its p95 final latency is at most this."""
DRAIN_WAIT_S = 45.0
"""How long a session waits, after its last append, for its open turns before it gives up on them: less than
the server's idle timeout (60 s, `TW_REALTIME__IDLE_TIMEOUT_S`), which closes a session whose client sends
nothing, turns still pending or not."""
OPEN_TIMEOUT_S = 30.0
INGRESS_NAME = "GradioServer"
TARGET_SESSIONS = 4
TARGET_FINAL_P95_S = 1.5
QUICK_SESSIONS = [1, 2]
QUICK_SECONDS = 20.0
DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"
FAILED = "conversation.item.input_audio_transcription.failed"


# --- what each session streams ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """One session's audio (16 kHz float32) and what it says."""

    clips: list[Clip]
    audio: np.ndarray
    messages: list[str]
    """The `input_audio_buffer.append` events, 100 ms each, ready to send."""

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE

    @property
    def reference(self) -> str:
        return " ".join(clip.reference for clip in self.clips)


def clip_pool() -> list[Clip]:
    """The English speech shipped in the repository, short enough to be turns: JFK and the ivr-en prompts."""
    return [fixture_clips()["jfk"], *ivr_clips()]


@functools.cache
def samples(path: Path) -> np.ndarray:
    return decode_audio(path)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def build_stream(clips: Sequence[Clip], pauses: Sequence[float]) -> Stream:
    """The clips with the pauses between them, leading and trailing silence, as 100 ms append events."""
    parts = [silence(LEADING_SILENCE_S)]
    for index, clip in enumerate(clips):
        if index:
            parts.append(silence(pauses[index - 1]))
        parts.append(samples(clip.path))
    parts.append(silence(TRAILING_SILENCE_S))
    audio = np.concatenate(parts)
    pcm = encode_pcm16(audio, RATE)
    messages = [
        json.dumps(
            {
                "type": "input_audio_buffer.append",
                "audio": base64.b64encode(pcm[start : start + CHUNK_BYTES]).decode(),
            }
        )
        for start in range(0, len(pcm), CHUNK_BYTES)
    ]
    return Stream(list(clips), audio, messages)


def session_stream(index: int, seconds: float, seed: int) -> Stream:
    """Session `index`'s stream: the pool shuffled with its own seed, clips taken until about `seconds`."""
    rng = random.Random(seed * 1_000_003 + index)
    pool = clip_pool()
    chosen: list[Clip] = []
    pauses: list[float] = []
    total = LEADING_SILENCE_S + TRAILING_SILENCE_S
    deck: list[Clip] = []
    for _ in range(10 * len(pool)):  # bounded: every clip fits at least once per pass over the pool
        if total >= seconds - 2.0:
            break
        if not deck:
            deck = rng.sample(pool, len(pool))
        clip = deck.pop()
        pause = rng.uniform(*PAUSE_S) if chosen else 0.0
        if chosen and total + pause + clip.duration_s > seconds + 2.0:
            continue  # too long for what is left; try a shorter one
        chosen.append(clip)
        if pause:
            pauses.append(pause)
        total += pause + clip.duration_s
    return build_stream(chosen, pauses)


# --- one live session --------------------------------------------------------------------------------------


@dataclass
class Turn:
    """One item the server reported, with the arrival times (this script's clock) of its events."""

    item_id: str
    started_at: float = math.nan
    audio_start_ms: int = 0
    stopped_at: float = math.nan
    audio_end_ms: int = 0
    first_delta_at: float = math.nan
    completed_at: float = math.nan
    transcript: str = ""

    @property
    def done(self) -> bool:
        return not math.isnan(self.completed_at)

    @property
    def first_delta_s(self) -> float:
        return self.first_delta_at - self.started_at

    @property
    def final_s(self) -> float:
        return self.completed_at - self.stopped_at


@dataclass
class Session:
    """What one live session sent and saw."""

    index: int
    stream: Stream
    sent_at: float = math.nan
    """When it started streaming: append k (audio up to 100 ms × (k + 1)) was due 100 ms × (k + 1) later."""
    last_append_at: float = math.nan
    caught_up_at: float = math.nan
    """When the server answered the `session.update` sent after the last append (it had seen all audio)."""
    send_lag_s: float = 0.0
    """How late this script sent an append at worst (a busy client would skew every number)."""
    turns: dict[str, Turn] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def turn(self, item_id: str) -> Turn:
        return self.turns.setdefault(item_id, Turn(item_id))

    @property
    def completed(self) -> list[Turn]:
        return sorted((t for t in self.turns.values() if t.done), key=lambda t: t.audio_start_ms)

    @property
    def pending(self) -> int:
        return sum(not t.done for t in self.turns.values())

    @property
    def transcript(self) -> str:
        return " ".join(t.transcript for t in self.completed if t.transcript)

    @property
    def drain_s(self) -> float:
        """Last completed − last append (0: all done before the audio ended; inf: a turn never completed)."""
        if self.pending or not self.completed:
            return math.inf
        return max(0.0, max(t.completed_at for t in self.completed) - self.last_append_at)

    @property
    def catch_up_s(self) -> float:
        """How long after the last append the server had handled every append (its VAD included)."""
        return self.caught_up_at - self.last_append_at

    def speech_end_s(self, turn: Turn) -> float:
        """`completed` − when the append holding the turn's last audio (`audio_end_ms`) was sent."""
        appends = math.ceil(round(turn.audio_end_ms / 1000 / CHUNK_S, 6))
        return turn.completed_at - (self.sent_at + appends * CHUNK_S)

    def final_p95(self) -> float:
        return _percentile([t.final_s for t in self.completed], 95)

    @property
    def keeps_up(self) -> bool:
        return not self.errors and self.drain_s <= DRAIN_LIMIT_S and self.final_p95() <= FINAL_P95_LIMIT_S

    def record(self, event: dict[str, Any], at: float) -> None:
        kind = event.get("type")
        item_id = str(event.get("item_id", ""))
        if kind == "error":
            self.errors.append(f"error event: {event.get('error', {}).get('message')}")
        elif kind == "input_audio_buffer.speech_started":
            turn = self.turn(item_id)
            turn.started_at, turn.audio_start_ms = at, int(event["audio_start_ms"])
        elif kind == "input_audio_buffer.speech_stopped":
            turn = self.turn(item_id)
            turn.stopped_at, turn.audio_end_ms = at, int(event["audio_end_ms"])
        elif kind == DELTA:
            turn = self.turn(item_id)
            if math.isnan(turn.first_delta_at):
                turn.first_delta_at = at
        elif kind == COMPLETED:
            turn = self.turn(item_id)
            turn.completed_at, turn.transcript = at, str(event.get("transcript", ""))
        elif kind == "session.updated":
            self.caught_up_at = at
        elif kind == FAILED:
            self.errors.append(f"transcription failed: {event.get('error', {}).get('message')}")
            self.turns.pop(item_id, None)


async def live_session(ws_url: str, session: Session, delay_s: float) -> None:
    """Connect, configure, stream the session's appends at real time, read events until all turns are done.

    After the last append a second (identical) `session.update` goes out: the server answers it once it has
    handled every append before it, so its `session.updated` says the server has seen all the audio.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    await asyncio.sleep(delay_s)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    update = json.dumps({"type": "session.update", "session": SESSION_CONFIG})
    try:
        async with connect(
            ws_url, additional_headers=headers, max_size=None, open_timeout=OPEN_TIMEOUT_S
        ) as ws:
            await ws.send(update)
            while (event := json.loads(await ws.recv()))["type"] != "session.updated":
                if event["type"] == "error":
                    session.errors.append(f"session.update refused: {event['error'].get('message')}")
                    return
            reader = asyncio.create_task(_read(ws, session))
            try:
                await _send(ws, session)
                await ws.send(update)
                deadline = time.monotonic() + DRAIN_WAIT_S
                while time.monotonic() < deadline and not reader.done():
                    if not math.isnan(session.caught_up_at) and not session.pending:
                        break
                    await asyncio.sleep(0.02)
                if math.isnan(session.caught_up_at):
                    session.errors.append(
                        f"the server had not handled all appends {DRAIN_WAIT_S:.0f} s later"
                    )
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
    except InvalidStatus as exc:
        session.errors.append(f"refused at the handshake: {exc.response.status_code}")
    except (OSError, TimeoutError, ConnectionClosed) as exc:
        session.errors.append(f"connection: {type(exc).__name__}: {exc}")


async def send_in_real_time(ws: Any, messages: Sequence[Any], started: float) -> float:
    """Send message k when 100 ms × (k + 1) of audio would have been recorded since `started`; the
    latest any message went out, in seconds (this client's own lag). `whisperlive.py` sends with it too."""
    lag = 0.0
    for k, message in enumerate(messages):
        due = started + (k + 1) * CHUNK_S
        pause = due - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        lag = max(lag, time.monotonic() - due)
        await ws.send(message)
    return lag


async def _send(ws: Any, session: Session) -> None:
    session.sent_at = time.monotonic()
    session.send_lag_s = await send_in_real_time(ws, session.stream.messages, session.sent_at)
    session.last_append_at = time.monotonic()


async def _read(ws: Any, session: Session) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        async for message in ws:
            session.record(json.loads(message), time.monotonic())
    except ConnectionClosed as exc:
        session.errors.append(f"disconnected: {exc}")


async def run_sessions(ws_url: str, streams: Sequence[Stream], seed: int) -> list[Session]:
    """One session per stream, all at once; each starts after a random fraction of `STAGGER_S`."""
    rng = random.Random(seed + len(streams))
    sessions = [Session(i, stream) for i, stream in enumerate(streams)]
    delays = [rng.uniform(0, STAGGER_S) if len(streams) > 1 else 0.0 for _ in sessions]
    await asyncio.gather(*(live_session(ws_url, s, d) for s, d in zip(sessions, delays, strict=True)))
    return sessions


# --- one session count --------------------------------------------------------------------------------------


@dataclass
class Run:
    """N sessions at once against one server."""

    sessions: list[Session]
    wall_s: float
    others_cores: float
    replica_peak_mb: float
    ingress_peak_mb: float
    windows: int = 0
    """Windows the replica decoded meanwhile (`tw_windows_decoded`): finals, partials, fallbacks."""
    jobs: int = 0
    batches: int = 0

    @property
    def n(self) -> int:
        return len(self.sessions)

    @property
    def turns(self) -> list[Turn]:
        return [t for s in self.sessions for t in s.completed]

    def final(self, percentile: float) -> float:
        return _percentile([t.final_s for t in self.turns], percentile)

    def speech_end(self, percentile: float) -> float:
        return _percentile([s.speech_end_s(t) for s in self.sessions for t in s.completed], percentile)

    def first_delta(self, percentile: float) -> float:
        return _percentile(
            [t.first_delta_s for t in self.turns if not math.isnan(t.first_delta_at)], percentile
        )

    @property
    def with_delta(self) -> int:
        return sum(not math.isnan(t.first_delta_at) for t in self.turns)

    @property
    def drain_s(self) -> float:
        return max(s.drain_s for s in self.sessions)

    @property
    def errors(self) -> int:
        return sum(len(s.errors) for s in self.sessions)

    @property
    def unfinished(self) -> int:
        """Turns the server started that were not completed `DRAIN_WAIT_S` after the last append."""
        return sum(s.pending for s in self.sessions)

    @property
    def keeps_up(self) -> bool:
        return all(s.keeps_up for s in self.sessions)

    @property
    def wer(self) -> float:
        return normalised_wer(
            [s.stream.reference for s in self.sessions], [s.transcript for s in self.sessions]
        )

    @property
    def first_wer(self) -> float:
        """Session 0's WER: the same audio whatever N is."""
        first = self.sessions[0]
        return normalised_wer([first.stream.reference], [first.transcript])

    @property
    def send_lag_s(self) -> float:
        return max(s.send_lag_s for s in self.sessions)

    @property
    def catch_up_s(self) -> float:
        return max(s.catch_up_s for s in self.sessions)


def deployment_peak_mb(server: psutil.Process, name: str) -> float:
    """Peak RSS (VmHWM) of the server's descendant whose Ray-set title names the deployment."""
    peaks = []
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if name in " ".join(child.cmdline()):
                peaks.append(process_peak_rss_mb(child.pid))
    return max(peaks, default=0.0)


def decode_counters(http_url: str) -> tuple[int, int, int]:
    """(windows decoded, window jobs, batches) so far, from the app's `/metrics`."""
    text = httpx.get(f"{http_url}/metrics", timeout=30).text
    windows = re.search(r"^tw_windows_decoded (\d+)", text, re.MULTILINE)
    batches = [
        (int(size), int(count)) for size, count in re.findall(r'tw_batches\{size="(\d+)"\} (\d+)', text)
    ]
    jobs = sum(size * count for size, count in batches)
    return (int(windows[1]) if windows else 0), jobs, sum(count for _, count in batches)


def measure(ws_url: str, server: psutil.Process, streams: Sequence[Stream], seed: int) -> Run:
    http_url = ws_url.split("/v1/")[0].replace("ws://", "http://")
    before = decode_counters(http_url)
    started = time.perf_counter()
    with Contention(server) as others:
        sessions = asyncio.run(run_sessions(ws_url, streams, seed))
    after = decode_counters(http_url)
    windows, jobs, batches = (a - b for a, b in zip(after, before, strict=True))
    return Run(
        sessions,
        time.perf_counter() - started,
        others.cores,
        replica_peak_mb(server),
        deployment_peak_mb(server, INGRESS_NAME),
        windows,
        jobs,
        batches,
    )


def warm_up(ws_url: str) -> None:
    """One untimed session (JFK), so the first timed one does not pay for lazy initialisation."""
    stream = build_stream([fixture_clips()["jfk"]], [])
    (session,) = asyncio.run(run_sessions(ws_url, [stream], 0))
    if session.errors or not session.completed:
        raise SystemExit(f"the warm-up session failed: {session.errors or 'no completed turn'}")


@dataclass
class Backend:
    name: str
    startup_s: float = 0.0
    runs: dict[int, Run] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return LABEL[self.name]

    @property
    def largest_keeping_up(self) -> int:
        return max((n for n, run in self.runs.items() if run.keeps_up), default=0)


def run_backend(backend: Backend, streams: Sequence[Stream], log_dir: Path, args: argparse.Namespace) -> None:
    print(f"- {backend.label}: starting the app ...", file=sys.stderr, flush=True)
    config = Served(backend.name, pack=True)
    with served(config, log_dir / f"server-{backend.name}.log", args) as (url, server, startup_s):
        backend.startup_s = startup_s
        ws_url = url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
        warm_up(ws_url)
        for n in args.sessions:
            print(f"  {n:3} sessions ...", end="", file=sys.stderr, flush=True)
            measure_once = functools.partial(measure, ws_url, server, streams[:n], args.seed)
            run = quietly(
                measure_once,
                lambda r: r.others_cores,
                retries=args.retries,
                quiet_wait_s=args.quiet_wait,
                server=server,
            )
            backend.runs[n] = run
            verdict = "keeps up" if run.keeps_up else "falls behind"
            print(
                f" {run.wall_s:.0f} s, {run.errors} errors, {run.unfinished} unfinished turns, {verdict}",
                file=sys.stderr,
                flush=True,
            )
            for session in run.sessions:
                for error in session.errors[:2]:
                    print(f"    session {session.index}: {error}", file=sys.stderr)


# --- report ------------------------------------------------------------------------------------------------


def _s(value: float) -> str:
    return "-" if math.isnan(value) else "∞" if math.isinf(value) else f"{value:.2f}"


COLUMNS = (
    "backend",
    "sessions",
    "turns completed",
    "first delta p50 s (turns with one)",
    "final p50 s",
    "final p95 s",
    "speech end → completed p95 s",
    "drain max s",
    "catch-up max s",
    "WER norm.",
    "WER s0",
    "errors",
    "unfinished",
    "keeps up",
    "windows per turn",
    "jobs per batch",
    "replica RSS MB",
    "ingress RSS MB",
    "others' load",
)


def table(backends: Sequence[Backend]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for backend in backends:
        for n, run in backend.runs.items():
            cells = [
                backend.label,
                str(n),
                str(len(run.turns)),
                f"{_s(run.first_delta(50))} ({run.with_delta})",
                _s(run.final(50)),
                _s(run.final(95)),
                _s(run.speech_end(95)),
                _s(run.drain_s),
                _s(run.catch_up_s),
                f"{run.wer * 100:.1f}%",
                f"{run.first_wer * 100:.1f}%",
                str(run.errors),
                str(run.unfinished),
                "yes" if run.keeps_up else "**no**",
                f"{run.windows / max(len(run.turns), 1):.2f}",
                f"{run.jobs / max(run.batches, 1):.1f}",
                f"{run.replica_peak_mb:.0f}",
                f"{run.ingress_peak_mb:.0f}",
                f"{run.others_cores:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def target_lines(backends: Sequence[Backend]) -> list[str]:
    lines = [
        f"Targets (2 cores, base int8): ≥ {TARGET_SESSIONS} concurrent live sessions keep up; final latency "
        f"p95 ≤ {TARGET_FINAL_P95_S} s at {TARGET_SESSIONS} sessions.",
        "",
    ]
    for backend in backends:
        largest = backend.largest_keeping_up
        most = max(backend.runs, default=0)
        if largest >= TARGET_SESSIONS:
            sessions = _met(True)
        elif most < TARGET_SESSIONS and largest == most:
            sessions = f"not measured ({TARGET_SESSIONS} sessions not run)"
        else:
            sessions = _met(False)
        shown = f"{largest}" if largest else "none"
        shown += " (the most run)" if largest == most and most else ""
        if TARGET_SESSIONS in backend.runs:
            p95 = backend.runs[TARGET_SESSIONS].final(95)
            final = f"final p95 at {TARGET_SESSIONS} sessions {_s(p95)} s: {_met(p95 <= TARGET_FINAL_P95_S)}"
        else:
            final = f"final p95 at {TARGET_SESSIONS} sessions: not measured"
        lines.append(f"- {backend.label}: largest N keeping up {shown}: {sessions}; {final}")
    return lines


def stream_line(streams: Sequence[Stream]) -> str:
    lengths = [s.duration_s for s in streams]
    clips = sum(len(s.clips) for s in streams)
    return (
        f"- streams: {len(streams)} sessions' worth, {min(lengths):.0f}-{max(lengths):.0f} s each "
        f"({clips} clips in all: JFK and ivr-en dev prompts, {PAUSE_S[0]}-{PAUSE_S[1]} s pauses, "
        f"{TRAILING_SILENCE_S} s trailing silence), 24 kHz PCM16 in 100 ms appends at real time, "
        f"starts staggered by up to {STAGGER_S:.0f} s"
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null, inside lists and dicts too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, backends: Sequence[Backend]) -> None:
    """Every session's clips, reference, transcript, errors and turns with their event times."""

    def session_data(s: Session) -> dict[str, Any]:
        turns = sorted(s.turns.values(), key=lambda t: t.audio_start_ms)
        return {
            "index": s.index,
            "clips": [c.name for c in s.stream.clips],
            "duration_s": s.stream.duration_s,
            "reference": s.stream.reference,
            "transcript": s.transcript,
            "errors": s.errors,
            "drain_s": s.drain_s,
            "catch_up_s": s.catch_up_s,
            "send_lag_s": s.send_lag_s,
            "keeps_up": s.keeps_up,
            "turns": [
                asdict(t)
                | {"first_delta_s": t.first_delta_s, "final_s": t.final_s, "speech_end_s": s.speech_end_s(t)}
                for t in turns
            ],
        }

    data = {
        backend.label: {
            str(n): {
                "wall_s": run.wall_s,
                "others_cores": run.others_cores,
                "sessions": [session_data(s) for s in run.sessions],
            }
            for n, run in backend.runs.items()
        }
        for backend in backends
    }
    path.write_text(json.dumps(_finite(data), indent=2, ensure_ascii=False), encoding="utf-8")


# --- entry ------------------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> None:
    streams = [session_stream(i, args.seconds, args.seed) for i in range(max(args.sessions))]
    backends = [Backend(name) for name in args.backends]
    print("\n".join(machine_lines()))
    print(f"- load average before: {load_average()}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tw-stream-") as tmp:
        for backend in backends:
            run_backend(backend, streams, Path(tmp), args)
    print(f"- load average after: {load_average()}; benchmark took {time.perf_counter() - started:.0f} s")
    print(stream_line(streams))
    startups = ", ".join(f"{b.label} {b.startup_s:.0f} s" for b in backends)
    print(
        f"- app: 1 model replica, API only, {THREADS} threads, max_batch_size {args.max_batch_size}, "
        "short-clip packing on, one API key for all sessions; realtime defaults (partials every 1 s, "
        "2 partial slots); session: server_vad threshold 0.5, 500 ms silence, language en; "
        f"startup {startups}; seed {args.seed}"
    )
    lag = max((run.send_lag_s for b in backends for run in b.runs.values()), default=0.0)
    print(
        "- final: completed − speech_stopped (the server sends speech_stopped after its 500 ms silence); "
        "speech end → completed: completed − when the audio up to the turn's audio_end_ms was sent; "
        "first delta: first delta − speech_started, over the turns that got one; drain: a session's last "
        "completed − its last append; catch-up: when the server answered a session.update sent after the "
        "last append − that append (how far its handling of appends, VAD included, lagged); "
        f"keeps up: no error/failed/disconnect, every turn completed, drain ≤ {DRAIN_LIMIT_S:.0f} s and "
        f"p95 final ≤ {FINAL_P95_LIMIT_S:.0f} s in every session; errors: error events, failed turns and "
        f"disconnects; unfinished: turns not completed {DRAIN_WAIT_S:.0f} s after the last append (their "
        "words count as deletions in the WER); RSS: peak (VmHWM) so far of the WhisperASR replica and of "
        "the ingress (which holds the sessions and runs their VAD); others' load: cores used by other "
        f"processes meanwhile; this client sent its appends at most {lag * 1000:.0f} ms late\n"
    )
    print(table(backends) + "\n")
    print("\n".join(target_lines(backends)))
    if args.json:
        write_json(args.json, backends)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backends",
        type=_names(BACKENDS),
        help="served backends, comma-separated (ctranslate2,transformers; --quick ctranslate2)",
    )
    parser.add_argument(
        "--sessions",
        type=_counts,
        help="concurrent session counts, comma-separated (1,2,4,8,16; --quick 1,2)",
    )
    parser.add_argument("--seconds", type=float, help="length of each session's stream (45; --quick 20)")
    parser.add_argument("--quick", action="store_true", help="CTranslate2 only, 1 and 2 sessions of 20 s")
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=BATCH_SIZE,
        help=f"windows per forward pass in the app ({BATCH_SIZE})",
    )
    parser.add_argument("--batch-wait-s", type=float, help="the app's batch wait (default: the app's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the streams and the staggering (0)")
    parser.add_argument("--retries", type=int, default=0, help="reruns of a contended measurement (0)")
    parser.add_argument(
        "--quiet-wait", type=float, help="seconds to wait for idle CPUs before a measurement (30; --quick 10)"
    )
    parser.add_argument("--json", type=Path, help="also write every session's turns, timings and text here")
    args = parser.parse_args(argv)
    args.backends = args.backends or (["ctranslate2"] if args.quick else list(BACKENDS))
    args.sessions = args.sessions or (QUICK_SESSIONS if args.quick else [1, 2, 4, 8, 16])
    if args.seconds is None:
        args.seconds = QUICK_SECONDS if args.quick else 45.0
    if args.quiet_wait is None:
        args.quiet_wait = 10.0 if args.quick else 30.0
    if args.seconds < 5:
        parser.error("--seconds must be at least 5")
    if args.retries < 0 or args.quiet_wait < 0:
        parser.error("--retries and --quiet-wait cannot be negative")
    if args.max_batch_size < 1:
        parser.error("--max-batch-size must be at least 1")
    args.no_vad = False  # what load.server_env reads: the engine's VAD filter stays on
    return args


def main(argv: Sequence[str] | None = None) -> None:
    benchmark(parse_args(argv))


if __name__ == "__main__":
    main()
