"""Load benchmark: the served app on each backend, short-clip packing on and off, under N concurrent clients.

For each served configuration (a backend and a packing mode) the app runs in a fresh subprocess
(``serve_predictor_script.py``: a local Ray, the API only, one model replica, cross-request batching up to
8 windows) on a free port, with an API key: every client sends the same key, like one call-centre client,
so its short clips may share packed windows. For each client count N, N closed-loop HTTP clients send their
share of one fixed, seeded list of real clips (short telephone prompts, speeches, a 106 s reading) back to
back. Every configuration gets the very same list. Then faster-whisper int8 transcribes the largest list one
clip after another in one process (a subprocess, so its peak RSS is its own): what a CPU user would
otherwise run. The table compares each row to faster-whisper on the same requests.

    .venv/bin/python benchmarks/load.py                  # full run (about 20 minutes on 2 cores)
    .venv/bin/python benchmarks/load.py --quick          # smoke: CTranslate2, short clips, 1 and 4 clients
    .venv/bin/python benchmarks/load.py --backends ctranslate2 --clients 1,16
    .venv/bin/python benchmarks/load.py --backends transformers --packing on --clients 16
    .venv/bin/python benchmarks/load.py --soak 30 --kill-every 5 --clients 16   # benchmarks/soak.py
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

from benchmarks.harness import (  # noqa: E402  (after the sys.path line above)
    FASTER_WHISPER_LINE,
    THREADS,
    Clip,
    Contention,
    FasterWhisperRunner,
    ct2_model_dir,
    fixture_clips,
    ivr_clips,
    load_average,
    machine_lines,
    normalised_wer,
    peak_rss_mb,
    process_peak_rss_mb,
    quietly,
)

SERVER_SCRIPT = REPO / "serve_predictor_script.py"
DECK = ("sonnets", "jfk", "german_tts", "ivr", "ivr", "ivr", "ivr", "ivr")
"""One block of the request list, shuffled per block: every 8 requests hold the same mix of lengths."""
QUICK_DECK = ("jfk", "german_tts", "ivr", "ivr")
BACKENDS = ("ctranslate2", "transformers")
QUANTIZATION = {"ctranslate2": "int8", "transformers": "auto"}
LABEL = {"ctranslate2": "ct2-int8", "transformers": "tf-fp32"}
BATCH_SIZE = 8
"""`ServeSettings.max_batch_size`'s default: windows of any requests decoded in one forward pass."""
API_KEY = "bench-key"
READY_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 900
STOP_TIMEOUT_S = 90
REPLICA_NAME = "WhisperASR"
TARGETS = (
    "throughput at 16 clients >= 1.5x faster-whisper's",
    "p50 latency at 1 client <= 1.1x faster-whisper's",
    "normalised WER within 0.5 points of faster-whisper's",
    "replica peak RSS <= 1.5x faster-whisper's process",
)


@dataclass(frozen=True)
class Outcome:
    """One request as a client saw it."""

    clip: Clip
    latency_s: float
    text: str = ""
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
    replica_peak_mb: float = 0.0

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
        return _percentile([o.latency_s for o in self.ok], percentile)

    @property
    def wer(self) -> float:
        return normalised_wer([o.clip.reference for o in self.ok], [o.text for o in self.ok])

    @property
    def errors(self) -> int:
        return len(self.outcomes) - len(self.ok)


@dataclass
class Served:
    """One served configuration (a backend and a packing mode) and its runs, one per client count."""

    backend: str
    pack: bool
    startup_s: float = 0.0
    runs: dict[int, Run] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{LABEL[self.backend]} pack {'on' if self.pack else 'off'}"


@dataclass(frozen=True)
class Reference:
    """faster-whisper transcribing the largest request list sequentially in one process."""

    latencies: list[float]
    texts: list[str]
    load_s: float
    peak_rss_mb: float
    others_cores: float

    def over(self, requests: Sequence[Clip]) -> tuple[float, float, float, float]:
        """Throughput, p50 and p95 latency and WER on the first `len(requests)` (the same requests)."""
        n = len(requests)
        latencies = self.latencies[:n]
        throughput = sum(c.duration_s for c in requests) / sum(latencies)
        wer = normalised_wer([c.reference for c in requests], self.texts[:n])
        return throughput, _percentile(latencies, 50), _percentile(latencies, 95), wer


def _percentile(values: Sequence[float], percentile: float) -> float:
    return float(np.percentile(values, percentile)) if values else math.nan


# --- the request list -------------------------------------------------------------------------------------


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


def server_env(
    port: int, config: Served, args: argparse.Namespace, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """This environment without `TW_*` and `RAY_ADDRESS` (defaults and a local Ray), plus the config and
    `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TW_") and k != "RAY_ADDRESS"}
    if args.batch_wait_s is not None:
        env["TW_SERVE__BATCH_WAIT_S"] = str(args.batch_wait_s)
    if args.no_vad:
        env["TW_ENGINE__VAD_FILTER"] = "false"
    return (
        env
        | {
            "PORT": str(port),
            "TW_API__API_KEY": API_KEY,
            "TW_ENGINE__BACKEND": config.backend,
            "TW_ENGINE__QUANTIZATION": QUANTIZATION[config.backend],
            "TW_ENGINE__PACK_SHORT_AUDIO": "true" if config.pack else "false",
            "TW_ENGINE__NUM_THREADS": str(THREADS),
            "TW_ENGINE__DEVICE": "cpu",
            "TW_SERVE__HOST": "127.0.0.1",
            "TW_SERVE__MAX_BATCH_SIZE": str(args.max_batch_size),
            "TW_SERVE__MODEL_NUM_CPUS": "1",
            "TW_SERVE__UI": "false",
        }
        | (extra or {})
    )


@contextlib.contextmanager
def served(
    config: Served, log_path: Path, args: argparse.Namespace, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, psutil.Process, float]]:
    """The app in a subprocess: yields its URL, its process and the seconds it took to become ready."""
    port = free_port()
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(SERVER_SCRIPT)],
            cwd=REPO,
            env=server_env(port, config, args, extra_env),
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


def replica_peak_mb(server: psutil.Process) -> float:
    """Peak RSS of the model replica: the server's descendant whose (Ray-set) title names the deployment."""
    peaks = []
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if REPLICA_NAME in " ".join(child.cmdline()):
                peaks.append(process_peak_rss_mb(child.pid))
    return max(peaks, default=0.0)


def batch_counts(client: httpx.Client, url: str) -> dict[int, int]:
    """The replica's batch histogram (window jobs per batch, before packing -> count) from `/metrics`."""
    text = client.get(f"{url}/metrics", timeout=60).text
    return {int(size): int(count) for size, count in re.findall(r'tw_batches\{size="(\d+)"\} (\d+)', text)}


# --- clients ----------------------------------------------------------------------------------------------


def http_client() -> httpx.Client:
    """A client sending the one API key all clients share."""
    return httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"})


def post(client: httpx.Client, url: str, clip: Clip, payload: bytes) -> Outcome:
    """One transcription request; any failure is an outcome, not an exception."""
    started = time.perf_counter()
    text, error = "", None
    try:
        response = client.post(
            f"{url}/v1/audio/transcriptions",
            files={"file": (clip.path.name, payload)},
            data={"language": clip.language, "response_format": "json"},
            timeout=REQUEST_TIMEOUT_S,
        )
        if response.status_code == 200:
            text = response.json()["text"]
        else:
            error = f"{response.status_code}: {response.text[:200]}"
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Outcome(clip, time.perf_counter() - started, text, error)


def client_loop(
    url: str, share: Sequence[Clip], payloads: dict[Path, bytes], go: threading.Barrier
) -> list[Outcome]:
    """A closed-loop client: its share of the list, each request sent once the previous one returned."""
    with http_client() as client:
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


# --- one served configuration: a server, every client count -----------------------------------------------


def measure(url: str, server: psutil.Process, clients: int, requests: Sequence[Clip]) -> Run:
    with http_client() as client:
        before = batch_counts(client, url)
        with Contention(server) as others:
            outcomes, wall_s = drive(url, clients, requests)
        after = batch_counts(client, url)
    batches = {size: after[size] - before.get(size, 0) for size in after if after[size] > before.get(size, 0)}
    return Run(clients, outcomes, wall_s, batches, others.cores, replica_peak_mb(server))


def run_served(config: Served, plans: dict[int, list[Clip]], log_dir: Path, args: argparse.Namespace) -> None:
    """Start the app with the configuration, warm it up, then run every client count against it."""
    print(f"- {config.name}: starting the app ...", file=sys.stderr)
    log_path = log_dir / f"server-{config.backend}-{config.pack}.log"
    with served(config, log_path, args) as (url, server, startup_s):
        config.startup_s = startup_s
        warm_up(url)
        for clients, requests in plans.items():
            print(
                f"  {clients:3} clients, {len(requests):3} requests ...", end="", file=sys.stderr, flush=True
            )
            measure_once = functools.partial(measure, url, server, clients, requests)
            run = quietly(
                measure_once,
                lambda r: r.others_cores,
                retries=args.retries,
                quiet_wait_s=args.quiet_wait,
                server=server,
            )
            config.runs[clients] = run
            print(f" {run.wall_s:.1f} s, {run.errors} errors", file=sys.stderr)
            report_errors(run)


def warm_up(url: str) -> None:
    """Untimed requests (one long, one short), so the first timed one does not pay for lazy initialisation."""
    fixtures = fixture_clips()
    with http_client() as client:
        for clip in (fixtures["jfk"], ivr_clips(1)[0]):
            outcome = post(client, url, clip, clip.path.read_bytes())
            if outcome.error:
                raise SystemExit(f"the warm-up request failed: {outcome.error}")


def report_errors(run: Run) -> None:
    for outcome in [o for o in run.outcomes if o.error][:3]:
        print(f"    {outcome.clip.name}: {outcome.error}", file=sys.stderr)


# --- the faster-whisper reference, in its own process ----------------------------------------------------


def reference_worker(model_dir: Path, requests_json: Path) -> None:
    """faster-whisper int8 on the list, one file after another (decoding included, as the server's is)."""
    clips = [Clip(**{**c, "path": Path(c["path"])}) for c in json.loads(requests_json.read_text())]
    started = time.perf_counter()
    runner = FasterWhisperRunner(model_dir, "int8")
    load_s = time.perf_counter() - started
    runner.transcribe(str(fixture_clips()["jfk"].path))  # warm-up, untimed
    latencies, texts = [], []
    with Contention(None) as others:
        for clip in clips:
            started = time.perf_counter()
            texts.append(runner.transcribe(str(clip.path), clip.language))
            latencies.append(time.perf_counter() - started)
    reference = Reference(latencies, texts, load_s, peak_rss_mb(), others.cores)
    print(json.dumps(asdict(reference)))


def run_reference(requests: Sequence[Clip], model_dir: Path, tmp: Path) -> Reference:
    print(
        f"- faster-whisper int8: {len(requests)} requests, sequentially ...",
        end="",
        file=sys.stderr,
        flush=True,
    )
    listing = tmp / "requests.json"
    listing.write_text(json.dumps([asdict(c) | {"path": str(c.path)} for c in requests]))
    command = [sys.executable, str(Path(__file__).resolve()), "--reference-worker", str(model_dir)]
    done = subprocess.run([*command, str(listing)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"\nthe faster-whisper worker failed:\n{done.stderr[-3000:]}")
    reference = Reference(**json.loads(done.stdout.strip().splitlines()[-1]))
    print(f" {sum(reference.latencies):.1f} s", file=sys.stderr)
    return reference


# --- report ------------------------------------------------------------------------------------------------


def histogram(batches: dict[int, int]) -> str:
    """`size×count` pairs, e.g. `1×3 4×2 8×5`."""
    return " ".join(f"{size}×{count}" for size, count in sorted(batches.items())) or "-"


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}×" if theirs and not math.isnan(theirs) else "-"


def table(configs: Sequence[Served], reference: Reference | None, plans: dict[int, list[Clip]]) -> str:
    header = (
        "| config | clients | requests | audio s | wall s | throughput (audio s/s) | ÷ fw | p50 s | ÷ fw "
        "| p95 s | ÷ fw | WER norm. | − fw (points) | peak RSS MB | ÷ fw | errors | batches (jobs×count) "
        "| others' load |"
    )
    lines = [header, "|" + "---|" * 18]
    fw_rss = reference.peak_rss_mb if reference else math.nan
    for clients, requests in plans.items():
        fw = reference.over(requests) if reference else (math.nan,) * 4
        for config in configs:
            run = config.runs.get(clients)
            if run is None:
                continue
            wer = run.wer
            lines.append(
                f"| {config.name} | {clients} | {len(run.outcomes)} | {run.audio_s:.0f} | {run.wall_s:.1f} "
                f"| {run.throughput:.2f} | {_ratio(run.throughput, fw[0])} "
                f"| {run.latency(50):.2f} | {_ratio(run.latency(50), fw[1])} "
                f"| {run.latency(95):.2f} | {_ratio(run.latency(95), fw[2])} "
                f"| {wer * 100:.1f}% | {(wer - fw[3]) * 100:+.1f} "
                f"| {run.replica_peak_mb:.0f} | {_ratio(run.replica_peak_mb, fw_rss)} "
                f"| {run.errors} | {histogram(run.batches)} | {run.others_cores:.2f} |"
            )
        if reference is not None:
            audio_s = sum(c.duration_s for c in requests)
            lines.append(
                f"| fw-int8 (1 process) | {clients} | {len(requests)} | {audio_s:.0f} "
                f"| {sum(reference.latencies[: len(requests)]):.1f} | {fw[0]:.2f} | 1.00× "
                f"| {fw[1]:.2f} | 1.00× "
                f"| {fw[2]:.2f} | 1.00× | {fw[3] * 100:.1f}% | +0.0 | {reference.peak_rss_mb:.0f} | 1.00× "
                f"| 0 | - | {reference.others_cores:.2f} |"
            )
    return "\n".join(lines)


def target_lines(configs: Sequence[Served], reference: Reference, plans: dict[int, list[Clip]]) -> list[str]:
    """Each configuration against the four targets; a target whose client count was not run is skipped."""
    lines = ["Targets (against faster-whisper int8 in one process, on the same requests):", ""]
    for config in configs:
        checks = []
        if 16 in config.runs:
            ratio = config.runs[16].throughput / reference.over(plans[16])[0]
            checks.append(f"throughput at 16 clients {ratio:.2f}× (≥ 1.5×: {_met(ratio >= 1.5)})")
        if 1 in config.runs:
            ratio = config.runs[1].latency(50) / reference.over(plans[1])[1]
            checks.append(f"p50 at 1 client {ratio:.2f}× (≤ 1.1×: {_met(ratio <= 1.1)})")
        if config.runs:
            clients = max(config.runs)
            delta = (config.runs[clients].wer - reference.over(plans[clients])[3]) * 100
            checks.append(
                f"WER {delta:+.1f} points at {clients} clients (within 0.5: {_met(abs(delta) <= 0.5)})"
            )
            peak = max(run.replica_peak_mb for run in config.runs.values())
            ratio = peak / reference.peak_rss_mb
            checks.append(f"replica peak RSS {ratio:.2f}× (≤ 1.5×: {_met(ratio <= 1.5)})")
        lines.append(f"- {config.name}: " + "; ".join(checks))
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


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
    configs = [Served(backend, pack) for backend in args.backends for pack in args.packing]
    print("\n".join(machine_lines()))
    print(f"- load average before: {load_average()}", flush=True)
    started = time.perf_counter()
    reference = None
    with tempfile.TemporaryDirectory(prefix="tw-load-") as tmp:
        for config in configs:
            run_served(config, plans, Path(tmp), args)
        if not args.no_reference:
            with ct2_model_dir() as model_dir:
                run_once = functools.partial(run_reference, plans[max(plans)], model_dir, Path(tmp))
                reference = quietly(
                    run_once, lambda r: r.others_cores, retries=args.retries, quiet_wait_s=args.quiet_wait
                )
    print(f"- load average after: {load_average()}; benchmark took {time.perf_counter() - started:.0f} s")
    print(mix_line(plans[max(plans)]))
    wait = "the app's default (0.1 s)" if args.batch_wait_s is None else f"{args.batch_wait_s} s"
    startups = ", ".join(f"{c.name} {c.startup_s:.0f} s" for c in configs)
    vad = "off" if args.no_vad else "on (the default)"
    print(
        f"- app: 1 model replica, API only, {THREADS} threads, max_batch_size {args.max_batch_size}, "
        f"batch wait {wait}, VAD filter {vad}; all clients send one API key (packing may join their clips); "
        f"startup {startups}; seed {args.seed}"
    )
    if reference is not None:
        print(
            f"- fw-int8: {FASTER_WHISPER_LINE}, in one process on the same requests (the first n of the "
            f"largest list); its latency is one file's transcription (decoding included); load "
            f"{reference.load_s:.1f} s"
        )
    print(
        "- peak RSS: the model replica's VmHWM (Ray's `WhisperASR` worker; not the ingress or Ray's own "
        "processes); fw: its process's ru_maxrss. WER: normalised (Whisper's English normaliser), "
        "corpus-level over the requests that returned\n"
    )
    print(table(configs, reference, plans) + "\n")
    if reference is not None:
        print("\n".join(target_lines(configs, reference, plans)))
    if args.json:
        write_json(args.json, configs, reference, plans)


def write_json(
    path: Path, configs: Sequence[Served], reference: Reference | None, plans: dict[int, list[Clip]]
) -> None:
    """Every request's clip, latency and answer (and faster-whisper's), to look into WER differences."""
    largest = plans[max(plans)]
    data = {
        "reference": None
        if reference is None
        else [
            {"clip": c.name, "latency_s": t, "text": x, "reference": c.reference}
            for c, t, x in zip(largest, reference.latencies, reference.texts, strict=False)
        ],
        "served": {
            config.name: {
                str(clients): [
                    {"clip": o.clip.name, "latency_s": o.latency_s, "text": o.text, "error": o.error}
                    for o in run.outcomes
                ]
                for clients, run in config.runs.items()
            }
            for config in configs
        },
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


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
        "--packing", type=_names(("on", "off")), help="short-clip packing modes, comma-separated (on,off)"
    )
    parser.add_argument(
        "--clients", type=_counts, help="client counts, comma-separated (1,4,16; --quick 1,4)"
    )
    parser.add_argument(
        "--requests-per-client",
        type=int,
        help="requests each client sends (default: one deck in all, 8 (--quick 4), and at least 2 each)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CTranslate2 only, short clips, 1 and 4 clients (a few minutes)"
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=BATCH_SIZE, help="windows per forward pass in the app (8)"
    )
    parser.add_argument("--batch-wait-s", type=float, help="the app's batch wait (default: the app's, 0.1)")
    parser.add_argument("--no-vad", action="store_true", help="serve with the VAD filter off")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request list (0)")
    parser.add_argument("--retries", type=int, help="reruns of a contended measurement (1; --quick 0)")
    parser.add_argument(
        "--quiet-wait", type=float, help="seconds to wait for idle CPUs before a measurement (60; --quick 10)"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the faster-whisper reference")
    parser.add_argument("--json", type=Path, help="also write every request's answer and latency here")
    parser.add_argument("--reference-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--soak", type=float, metavar="MINUTES", help="soak instead: the largest --clients count for MINUTES"
    )
    parser.add_argument(
        "--kill-every", type=float, default=5.0, metavar="MINUTES", help="soak: kill the model replica (5)"
    )
    parser.add_argument("--plot", type=Path, help="soak: the memory plot (benchmarks/results-soak.svg)")
    args = parser.parse_args(argv)
    args.backends = args.backends or (["ctranslate2"] if args.quick else list(BACKENDS))
    args.packing = [value == "on" for value in (args.packing or ["on", "off"])]
    args.clients = args.clients or ([1, 4] if args.quick else [1, 4, 16])
    if args.retries is None:
        args.retries = 0 if args.quick else 1
    if args.quiet_wait is None:
        args.quiet_wait = 10.0 if args.quick else 60.0
    if args.retries < 0 or args.quiet_wait < 0:
        parser.error("--retries and --quiet-wait cannot be negative")
    if args.requests_per_client is not None and args.requests_per_client < 1:
        parser.error("--requests-per-client must be at least 1")
    if args.max_batch_size < 1:
        parser.error("--max-batch-size must be at least 1")
    return args


def _names(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
        unknown = [name for name in names if name not in choices]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"expected some of {','.join(choices)}, got {text!r}")
        return names

    return parse


def _counts(text: str) -> list[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 1,4,16, got {text!r}")
    return sorted(set(counts))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.reference_worker:
        reference_worker(*args.reference_worker)
    elif args.soak:
        from benchmarks.soak import soak

        soak(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
