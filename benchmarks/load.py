"""Load benchmark: the served app under N concurrent clients, with cross-request batching on and off.

For each batching mode the app runs in a fresh subprocess (``serve_predictor_script.py``: a local Ray,
the API only, one model replica) on a free port. For each client count N, N closed-loop HTTP clients send
their share of one fixed, seeded list of real clips (short telephone prompts, speeches, a 106 s reading)
back to back. Both modes get the very same list. After both, faster-whisper int8 on the source weights
transcribes the largest list one clip after another in this process: what a CPU user would otherwise run.

    .venv/bin/python benchmarks/load.py                  # full run (about 9 minutes on 2 cores)
    .venv/bin/python benchmarks/load.py --quick          # smoke run (under 3 minutes)
    .venv/bin/python benchmarks/load.py --clients 1,8 --requests-per-client 3
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import json
import math
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

TEST_DATA = REPO / "tests" / "data"
IVR_DEV = Path(__file__).resolve().parents[1].parent / "shared/data/ivr-en/dev"
SERVER_SCRIPT = REPO / "serve_predictor_script.py"
DECK = ("sonnets", "jfk", "german", "ivr", "ivr", "ivr", "ivr", "ivr")
"""One block of the request list, shuffled per block: every 8 requests hold the same mix of lengths."""
QUICK_DECK = ("jfk", "german", "ivr", "ivr")
FIXTURES = {"jfk": "jfk.flac", "german": "german_tts.flac", "sonnets": "sonnets.flac"}
ON_BATCH_SIZE = 8
"""`ServeSettings.max_batch_size`'s default: what "batching on" means."""
REFERENCE_THREADS = 2
READY_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 900
STOP_TIMEOUT_S = 90
QUIET_CORES = 0.25
"""Other processes busier than this many cores make a measurement contended: it is waited out and retried."""
T = TypeVar("T")


@dataclass(frozen=True)
class Clip:
    """One audio file, its length and the language sent with it."""

    name: str
    path: Path
    duration_s: float
    language: str


@dataclass(frozen=True)
class Outcome:
    """One request as a client saw it."""

    clip: Clip
    latency_s: float
    error: str | None = None


@dataclass(frozen=True)
class Run:
    """One client count against one server: what the clients measured and what the model replica did."""

    clients: int
    outcomes: list[Outcome]
    wall_s: float
    batches: dict[int, int]
    others_cores: float
    """Cores that processes other than the server and this script kept busy meanwhile (contention)."""

    @property
    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is None]

    @property
    def audio_s(self) -> float:
        return sum(o.clip.duration_s for o in self.ok)

    @property
    def throughput(self) -> float:
        """Audio seconds transcribed per wall-clock second."""
        return self.audio_s / self.wall_s

    def latency(self, percentile: float) -> float:
        latencies = [o.latency_s for o in self.ok]
        return float(np.percentile(latencies, percentile)) if latencies else math.nan

    @property
    def errors(self) -> int:
        return len(self.outcomes) - len(self.ok)


@dataclass
class Mode:
    """One batching mode (a `max_batch_size`) and its runs, one per client count."""

    name: str
    max_batch_size: int
    batch_wait_s: float | None = None
    """None: the app's default (`ServeSettings.batch_wait_s`)."""
    startup_s: float = 0.0
    runs: dict[int, Run] = field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    """faster-whisper transcribing the request list sequentially in one process."""

    audio_s: float
    wall_s: float
    load_s: float
    others_cores: float

    @property
    def throughput(self) -> float:
        return self.audio_s / self.wall_s


# --- clips and the request list -----------------------------------------------------------------------


def fixture_clips() -> dict[str, Clip]:
    """The committed test clips, with their durations and languages from `tests/data/clips.json`."""
    entries = json.loads((TEST_DATA / "clips.json").read_text(encoding="utf-8"))["clips"]
    by_file = {entry["file"]: entry for entry in entries}
    return {
        name: Clip(name, TEST_DATA / file, by_file[file]["duration_s"], by_file[file]["language"])
        for name, file in FIXTURES.items()
    }


def ivr_clips() -> list[Clip]:
    """The English telephone prompts of the ivr-en dev split, in file order."""
    metadata = IVR_DEV / "metadata.csv"
    if not metadata.is_file():
        raise SystemExit(f"the ivr-en dev split is not at {IVR_DEV}: add it there (metadata.csv + flac)")
    with metadata.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["language"] == "en"]
    return [
        Clip(f"ivr/{row['file_name']}", IVR_DEV / row["file_name"], float(row["duration_s"]), "en")
        for row in rows
    ]


def request_list(count: int, deck: Sequence[str], seed: int) -> list[Clip]:
    """`count` clips: whole shuffled decks, cut at `count`; each `ivr` slot draws a telephone prompt."""
    rng = random.Random(seed)
    fixtures, ivr = fixture_clips(), ivr_clips()
    requests: list[Clip] = []
    while len(requests) < count:
        block = list(deck)
        rng.shuffle(block)
        requests += [rng.choice(ivr) if name == "ivr" else fixtures[name] for name in block]
    return requests[:count]


def requests_per_client(clients: int, deck: Sequence[str], explicit: int | None) -> int:
    """`--requests-per-client`, else enough that the list holds at least one deck and two per client."""
    return explicit or max(2, math.ceil(len(deck) / clients))


# --- the server under test -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(port: int, max_batch_size: int, batch_wait_s: float | None) -> dict[str, str]:
    """This environment without `TW_*` and `RAY_ADDRESS` (defaults and a local Ray), plus the mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_") and k != "RAY_ADDRESS"}
    if batch_wait_s is not None:
        env["TW_SERVE__BATCH_WAIT_S"] = str(batch_wait_s)
    return env | {
        "PORT": str(port),
        "TW_SERVE__HOST": "127.0.0.1",
        "TW_SERVE__MAX_BATCH_SIZE": str(max_batch_size),
        "TW_SERVE__MODEL_NUM_CPUS": "1",
        "TW_SERVE__UI": "false",
    }


@contextlib.contextmanager
def served(
    max_batch_size: int, log_path: Path, batch_wait_s: float | None = None
) -> Iterator[tuple[str, psutil.Process, float]]:
    """The app in a subprocess: yields its URL, its process and the seconds it took to become ready."""
    port = free_port()
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT)],
            cwd=REPO,
            env=server_env(port, max_batch_size, batch_wait_s),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, f"{url}/readyz", log_path)
        yield url, psutil.Process(process.pid), time.monotonic() - started
    except httpx.HTTPError as exc:
        if process.poll() is None:
            raise
        message = f"the server exited with {process.returncode} mid-run (stopped from outside?)"
        raise SystemExit(f"{message}: {exc}\n{log_tail(log_path)}") from exc
    finally:
        stop(process)


def wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Wait until `url` answers 200; fail with the server's log tail if it exits or takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}:\n{log_tail(log_path)}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"the server was not ready after {READY_TIMEOUT_S} s:\n{log_tail(log_path)}")


def log_tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the script drains and shuts Serve and Ray down); then kill whatever it left behind."""
    tree: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print("  the server did not stop on SIGTERM; killing it", file=sys.stderr)
    for leftover in tree:
        with contextlib.suppress(psutil.Error):
            leftover.kill()
    process.wait()


def batch_counts(client: httpx.Client, url: str) -> dict[int, int]:
    """The model replica's batch-size histogram (windows per forward pass -> count) from `/metrics`."""
    text = client.get(f"{url}/metrics", timeout=60).text
    return {int(size): int(count) for size, count in re.findall(r'tw_batches\{size="(\d+)"\} (\d+)', text)}


# --- clients ----------------------------------------------------------------------------------------------


def post(client: httpx.Client, url: str, clip: Clip, payload: bytes) -> Outcome:
    """One transcription request; any failure is an outcome, not an exception."""
    started = time.perf_counter()
    try:
        response = client.post(
            f"{url}/v1/audio/transcriptions",
            files={"file": (clip.path.name, payload)},
            data={"language": clip.language, "response_format": "json"},
            timeout=REQUEST_TIMEOUT_S,
        )
        error = None if response.status_code == 200 else f"{response.status_code}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(clip, time.perf_counter() - started, error)


def client_loop(
    url: str, share: Sequence[Clip], payloads: dict[Path, bytes], go: threading.Barrier
) -> list[Outcome]:
    """A closed-loop client: its share of the list, each request sent once the previous one returned."""
    with httpx.Client() as client:
        go.wait()
        return [post(client, url, clip, payloads[clip.path]) for clip in share]


def drive(url: str, clients: int, requests: Sequence[Clip]) -> tuple[list[Outcome], float]:
    """Client i sends requests i, i + N, i + 2N...; returns all outcomes and the wall time of the lot."""
    payloads = {clip.path: clip.path.read_bytes() for clip in requests}
    go = threading.Barrier(clients + 1)
    results: list[list[Outcome]] = [[] for _ in range(clients)]

    def run(i: int) -> None:
        results[i] = client_loop(url, requests[i::clients], payloads, go)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    go.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return [outcome for result in results for outcome in result], time.perf_counter() - started


# --- contention ------------------------------------------------------------------------------------------


def machine_busy_s() -> float:
    """CPU seconds all processes have spent busy since boot (the first line of /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(value) for i, value in enumerate(fields[:8]) if i not in (3, 4))  # not idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: psutil.Process | None) -> float:
    """CPU seconds used by this script and by `root` and its descendants (Ray's processes, the replicas)."""
    tree = [root, *root.children(recursive=True)] if root is not None else []
    total = 0.0
    for process in [psutil.Process(), *tree]:
        with contextlib.suppress(psutil.Error):
            total += sum(process.cpu_times()[:2])
    return total


class Contention:
    """Cores other processes kept busy while the `with` block ran (this script and `server` excluded)."""

    def __init__(self, server: psutil.Process | None) -> None:
        self.server = server
        self.cores = 0.0

    def __enter__(self) -> Contention:
        self._started = (time.perf_counter(), machine_busy_s(), tree_cpu_s(self.server))
        return self

    def __exit__(self, *_: object) -> None:
        started, machine, ours = self._started
        others = machine_busy_s() - machine - (tree_cpu_s(self.server) - ours)
        self.cores = max(0.0, others) / (time.perf_counter() - started)


def wait_until_quiet(server: psutil.Process | None, limit_s: float) -> None:
    """Wait (at most `limit_s`) until other processes leave the CPUs idle: on 2 cores they skew timings."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with Contention(server) as others:
            time.sleep(2)
        if others.cores <= QUIET_CORES:
            return


def quietly(
    measure: Callable[[], T],
    others: Callable[[T], float],
    server: psutil.Process | None,
    args: argparse.Namespace,
) -> T:
    """Measure once the machine is quiet; again (up to `--retries` times) if others were busy meanwhile.

    Keeps the least contended of the attempts.
    """
    attempts: list[T] = []
    for _ in range(args.retries + 1):
        wait_until_quiet(server, args.quiet_wait)
        attempts.append(measure())
        if others(attempts[-1]) <= QUIET_CORES:
            break
        print(f" others used {others(attempts[-1]):.2f} cores meanwhile; again ...", end="", file=sys.stderr)
    return min(attempts, key=others)


# --- one mode: a server, every client count --------------------------------------------------------------


def measure(url: str, server: psutil.Process, clients: int, requests: Sequence[Clip]) -> Run:
    with httpx.Client() as client:
        before = batch_counts(client, url)
        with Contention(server) as others:
            outcomes, wall_s = drive(url, clients, requests)
        after = batch_counts(client, url)
    batches = {size: after[size] - before.get(size, 0) for size in after if after[size] > before.get(size, 0)}
    return Run(clients, outcomes, wall_s, batches, others.cores)


def run_mode(mode: Mode, plans: dict[int, list[Clip]], log_dir: Path, args: argparse.Namespace) -> None:
    """Start the app with the mode's batch size, warm it up, then run every client count against it."""
    print(
        f"- batching {mode.name} (max_batch_size={mode.max_batch_size}): starting the app ...",
        file=sys.stderr,
    )
    log_path = log_dir / f"server-{mode.name}.log"
    with served(mode.max_batch_size, log_path, mode.batch_wait_s) as (url, server, startup_s):
        mode.startup_s = startup_s
        warm_up(url)
        for clients, requests in plans.items():
            print(
                f"  {clients:3} clients, {len(requests):3} requests ...", end="", file=sys.stderr, flush=True
            )
            measure_once = functools.partial(measure, url, server, clients, requests)
            run = quietly(measure_once, lambda r: r.others_cores, server, args)
            mode.runs[clients] = run
            print(f" {run.wall_s:.1f} s, {run.errors} errors", file=sys.stderr)
            report_errors(run)


def warm_up(url: str) -> None:
    """One untimed request, so the first timed one does not pay for lazy initialisation."""
    jfk = fixture_clips()["jfk"]
    with httpx.Client() as client:
        outcome = post(client, url, jfk, jfk.path.read_bytes())
    if outcome.error:
        raise SystemExit(f"the warm-up request failed: {outcome.error}")


def report_errors(run: Run) -> None:
    for outcome in [o for o in run.outcomes if o.error][:3]:
        print(f"    {outcome.clip.name}: {outcome.error}", file=sys.stderr)


# --- the faster-whisper reference ------------------------------------------------------------------------


@contextlib.contextmanager
def ct2_model_dir() -> Iterator[Path]:
    """A temporary CTranslate2 model directory holding the source weights of the embedded checkpoint."""
    from tuned_whisper.checkpoint import SOURCES, export_ct2

    with tempfile.TemporaryDirectory(prefix="tw-load-ct2-") as tmp:
        yield export_ct2(SOURCES["base"], Path(tmp))


def run_reference(requests: Sequence[Clip]) -> Reference:
    """faster-whisper int8, greedy, no VAD, one file after another (decoding included, as the server's is)."""
    from faster_whisper import WhisperModel

    print(
        f"- faster-whisper int8: {len(requests)} requests, sequentially ...",
        end="",
        file=sys.stderr,
        flush=True,
    )
    with ct2_model_dir() as model_dir:
        started = time.perf_counter()
        model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=REFERENCE_THREADS)
        load_s = time.perf_counter() - started
        transcribe_file(model, fixture_clips()["jfk"])  # warm-up, untimed
        started = time.perf_counter()
        with Contention(None) as others:
            for clip in requests:
                transcribe_file(model, clip)
        wall_s = time.perf_counter() - started
    print(f" {wall_s:.1f} s", file=sys.stderr)
    audio_s = sum(c.duration_s for c in requests)
    return Reference(audio_s=audio_s, wall_s=wall_s, load_s=load_s, others_cores=others.cores)


def transcribe_file(model: WhisperModel, clip: Clip) -> str:
    segments, _ = model.transcribe(
        str(clip.path),
        beam_size=1,
        language=clip.language,
        vad_filter=False,
        condition_on_previous_text=False,
    )
    return "".join(segment.text for segment in segments)  # the generator does the work


# --- report ------------------------------------------------------------------------------------------------


def histogram(batches: dict[int, int]) -> str:
    """`size×count` pairs, e.g. `1×3 4×2 8×5`."""
    return " ".join(f"{size}×{count}" for size, count in sorted(batches.items())) or "-"


def table(on: Mode, off: Mode) -> str:
    header = (
        "| clients | requests | audio s | wall s on / off | throughput on / off (audio s/s) | on ÷ off "
        "| p50 s on / off | p95 s on / off | errors on / off | batches on (size×count) | batches off "
        "| others' load on / off |"
    )
    lines = [header, "|" + "---|" * 12]
    for clients, a in on.runs.items():
        b = off.runs[clients]
        lines.append(
            f"| {clients} | {len(a.outcomes)} | {a.audio_s:.0f} | {a.wall_s:.1f} / {b.wall_s:.1f} "
            f"| {a.throughput:.2f} / {b.throughput:.2f} | **{a.throughput / b.throughput:.2f}×** "
            f"| {a.latency(50):.1f} / {b.latency(50):.1f} | {a.latency(95):.1f} / {b.latency(95):.1f} "
            f"| {a.errors} / {b.errors} | {histogram(a.batches)} | {histogram(b.batches)} "
            f"| {a.others_cores:.2f} / {b.others_cores:.2f} |"
        )
    return "\n".join(lines)


def reference_lines(reference: Reference, on: Mode, off: Mode) -> list[str]:
    clients = max(on.runs)
    lines = [
        f"- faster-whisper int8 (source CT2 weights, {REFERENCE_THREADS} threads, greedy, no VAD), the "
        f"{clients}-client list sequentially in one process: {reference.audio_s:.0f} audio s in "
        f"{reference.wall_s:.1f} s = {reference.throughput:.2f} audio s/s (load {reference.load_s:.1f} s, "
        f"others' load {reference.others_cores:.2f})",
    ]
    for mode in (on, off):
        ratio = mode.runs[clients].throughput / reference.throughput
        lines.append(f"- ours at {clients} clients, batching {mode.name}, ÷ faster-whisper: {ratio:.2f}×")
    return lines


def machine_line() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    cores = len(os.sched_getaffinity(0))
    return f"- machine: {cores} cores, {cpu}; python {platform.python_version()}"


def mix_line(requests: Sequence[Clip]) -> str:
    counts: dict[str, int] = {}
    for clip in requests:
        key = "ivr" if clip.name.startswith("ivr/") else clip.name
        counts[key] = counts.get(key, 0) + 1
    mix = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    return (
        f"- largest list: {len(requests)} requests ({mix}), {sum(c.duration_s for c in requests):.0f} audio s"
    )


# --- entry ------------------------------------------------------------------------------------------------


def plan(args: argparse.Namespace) -> dict[int, list[Clip]]:
    """The request list of each client count: prefixes of one seeded list, so the mix stays alike."""
    deck = QUICK_DECK if args.quick else DECK
    totals = {n: n * requests_per_client(n, deck, args.requests_per_client) for n in args.clients}
    everything = request_list(max(totals.values()), deck, args.seed)
    return {n: everything[:total] for n, total in totals.items()}


def benchmark(args: argparse.Namespace) -> None:
    plans = plan(args)
    on, off = Mode("on", args.max_batch_size, args.batch_wait_s), Mode("off", 1)
    print(machine_line())
    print(f"- load average before: {_load_average()}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tw-load-") as tmp:
        for mode in (on, off):
            run_mode(mode, plans, Path(tmp), args)
    reference = None
    if not args.no_reference:
        run_once = functools.partial(run_reference, plans[max(plans)])
        reference = quietly(run_once, lambda r: r.others_cores, None, args)
    print(f"- load average after: {_load_average()}; benchmark took {time.perf_counter() - started:.0f} s")
    print(mix_line(plans[max(plans)]))
    wait = "the app's default" if on.batch_wait_s is None else f"{on.batch_wait_s} s"
    print(
        f"- app: 1 model replica, API only; batching on = max_batch_size {on.max_batch_size}, batch wait "
        f"{wait}; off = max_batch_size 1; startup {on.startup_s:.0f} s / {off.startup_s:.0f} s; "
        f"seed {args.seed}\n"
    )
    print(table(on, off) + "\n")
    if reference is not None:
        print("\n".join(reference_lines(reference, on, off)))


def _load_average() -> str:
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clients", type=_counts, help="client counts, comma-separated (1,4,16; --quick 1,4)"
    )
    parser.add_argument(
        "--requests-per-client",
        type=int,
        help="requests each client sends (default: one deck in all, 8 (--quick 4), and at least 2 each)",
    )
    parser.add_argument("--quick", action="store_true", help="short clips, 1 and 4 clients (under 3 minutes)")
    parser.add_argument(
        "--max-batch-size", type=int, default=ON_BATCH_SIZE, help="batch size when batching is on (8)"
    )
    parser.add_argument(
        "--batch-wait-s", type=float, help="batch wait when batching is on (default: the app's, 0.1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the request list (0)")
    parser.add_argument("--retries", type=int, help="reruns of a contended measurement (1; --quick 0)")
    parser.add_argument(
        "--quiet-wait", type=float, help="seconds to wait for idle CPUs before a measurement (60; --quick 10)"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the faster-whisper reference")
    args = parser.parse_args(argv)
    args.clients = args.clients or ([1, 4] if args.quick else [1, 4, 16])
    if args.retries is None:
        args.retries = 0 if args.quick else 1
    if args.quiet_wait is None:
        args.quiet_wait = 10.0 if args.quick else 60.0
    if args.retries < 0 or args.quiet_wait < 0:
        parser.error("--retries and --quiet-wait cannot be negative")
    if args.requests_per_client is not None and args.requests_per_client < 1:
        parser.error("--requests-per-client must be at least 1")
    if args.max_batch_size < 2:
        parser.error("--max-batch-size must be at least 2 (1 is batching off, measured anyway)")
    return args


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,4,16, got {text!r}")
    return sorted(set(counts))


def main(argv: Sequence[str] | None = None) -> None:
    benchmark(parse_args(argv))


if __name__ == "__main__":
    main()
