"""Soak: the served app under steady load while its model replica is killed on a schedule.

`benchmarks/load.py --soak MINUTES [--kill-every MINUTES] [--clients 16]` starts the app as the load
benchmark does (CTranslate2 int8, packing on, one API key), keeps N closed-loop clients sending the load
benchmark's mix of real clips for MINUTES, and SIGKILLs the model replica's process every `--kill-every`
minutes (Serve starts a new one). It prints a table per interval (requests done and failed, p50 and p95
latency, resident memory of the ingress and of the model replica) and writes an SVG plot of memory over
time with the kills marked (`--plot`, default `benchmarks/results-soak.svg`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.harness import load_average, machine_lines
from benchmarks.load import (
    DECK,
    REPLICA_NAME,
    Outcome,
    Served,
    _percentile,
    http_client,
    post,
    request_list,
    served,
    warm_up,
)

INGRESS_NAME = "GradioServer"
"""The ingress deployment's class, as Ray titles its worker (it serves the API with or without the UI)."""
SAMPLE_S = 5.0


@dataclass(frozen=True)
class Sample:
    at_s: float
    ingress_mb: float
    replica_mb: float


@dataclass(frozen=True)
class Done:
    at_s: float
    outcome: Outcome


def _named(server: psutil.Process, name: str) -> list[psutil.Process]:
    found = []
    for child in server.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if name in " ".join(child.cmdline()):
                found.append(child)
    return found


def _rss_mb(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss / 2**20
    return total


def soak(args: argparse.Namespace) -> None:
    clients = max(args.clients)
    duration_s = args.soak * 60
    kill_every_s = args.kill_every * 60
    clips = request_list(max(64, clients * 8), DECK, args.seed)
    payloads = {clip.path: clip.path.read_bytes() for clip in clips}
    print("\n".join(machine_lines()))
    print(f"- load average before: {load_average()}", flush=True)
    done: list[Done] = []
    samples: list[Sample] = []
    kills: list[float] = []
    lock = threading.Lock()
    with (
        tempfile.TemporaryDirectory(prefix="tw-soak-") as tmp,
        served(Served("ctranslate2", True), Path(tmp) / "server.log", args) as (url, server, _),
    ):
        warm_up(url)
        started = time.monotonic()
        stop = threading.Event()

        def client(i: int) -> None:
            with http_client() as session:
                for clip in itertools.islice(itertools.cycle(clips), i, None, clients):
                    if stop.is_set():
                        return
                    outcome = post(session, url, clip, payloads[clip.path])
                    with lock:
                        done.append(Done(time.monotonic() - started, outcome))

        def killer() -> None:
            while not stop.wait(kill_every_s) and time.monotonic() - started < duration_s - SAMPLE_S:
                for replica in _named(server, REPLICA_NAME):
                    with contextlib.suppress(psutil.Error):
                        os.kill(replica.pid, signal.SIGKILL)
                        kills.append(time.monotonic() - started)
                        print(f"  {kills[-1] / 60:.1f} min: killed the model replica", file=sys.stderr)

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        threads.append(threading.Thread(target=killer, daemon=True))
        for thread in threads:
            thread.start()
        while (now := time.monotonic() - started) < duration_s:
            ingress = _rss_mb(_named(server, INGRESS_NAME))
            samples.append(Sample(now, ingress, _rss_mb(_named(server, REPLICA_NAME))))
            time.sleep(SAMPLE_S)
        stop.set()
        for thread in threads:
            thread.join(timeout=600)
    print(f"- load average after: {load_average()}")
    print(
        f"- {clients} closed-loop clients, one API key, CTranslate2 int8, packing on; the load benchmark's "
        f"mix of real clips; the model replica SIGKILLed every {args.kill_every:g} min; {args.soak:g} min\n"
    )
    print(table(done, samples, kills, duration_s, interval_s=max(60.0, kill_every_s / 2)))
    failures = Counter((d.outcome.error or "")[:60] for d in done if d.outcome.error)
    for error, count in failures.most_common(5):
        print(f"- {count} x {error}")
    plot = args.plot or Path(__file__).with_name("results-soak.svg")
    plot.write_text(svg(samples, kills, duration_s), encoding="utf-8")
    print(f"\n- memory plot: {plot}")


def table(
    done: list[Done], samples: list[Sample], kills: list[float], duration_s: float, interval_s: float
) -> str:
    lines = [
        "| minutes | kills | requests done | failed | audio s | p50 s | p95 s | ingress RSS MB "
        "| replica RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    edges = [*range(0, int(duration_s), int(interval_s)), duration_s]
    rows = [*itertools.pairwise(edges), (0, duration_s)]
    for start, end in rows:
        here = [d.outcome for d in done if start <= d.at_s < end]
        ok = [o for o in here if o.error is None]
        mem = [s for s in samples if start <= s.at_s < end] or samples[-1:]
        latencies = [o.latency_s for o in ok]
        label = "all" if (start, end) == (0, duration_s) else f"{start / 60:.0f}–{end / 60:.0f}"
        lines.append(
            f"| {label} | {sum(start <= k < end for k in kills)} | {len(ok)} | {len(here) - len(ok)} "
            f"| {sum(o.clip.duration_s for o in ok):.0f} | {_percentile(latencies, 50):.1f} "
            f"| {_percentile(latencies, 95):.1f} | {max(s.ingress_mb for s in mem):.0f} "
            f"| {max(s.replica_mb for s in mem):.0f} |"
        )
    return "\n".join(lines)


def svg(samples: list[Sample], kills: list[float], duration_s: float) -> str:
    """Resident memory of the ingress and the model replica over time, kills as red lines (plain SVG)."""
    width, height, pad = 720, 300, 40
    top = max([s.ingress_mb for s in samples] + [s.replica_mb for s in samples] + [1.0]) * 1.1

    def x(t: float) -> float:
        return pad + (width - 2 * pad) * t / duration_s

    def y(mb: float) -> float:
        return height - pad - (height - 2 * pad) * mb / top

    def line(values: list[tuple[float, float]], colour: str) -> str:
        points = " ".join(f"{x(t):.1f},{y(mb):.1f}" for t, mb in values)
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif"'
        ' font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="{pad}" y="{pad - 10}">resident memory, MB (max {top / 1.1:.0f})</text>',
        f'<text x="{width - pad - 60}" y="{height - 10}">{duration_s / 60:.0f} min</text>',
        *(
            f'<line x1="{x(k):.1f}" y1="{pad}" x2="{x(k):.1f}" y2="{height - pad}" stroke="red"'
            ' stroke-dasharray="4 3"/>'
            for k in kills
        ),
        line([(s.at_s, s.ingress_mb) for s in samples], "steelblue"),
        line([(s.at_s, s.replica_mb) for s in samples], "darkorange"),
        f'<text x="{width - 250}" y="{pad}" fill="steelblue">ingress</text>',
        f'<text x="{width - 180}" y="{pad}" fill="darkorange">model replica</text>',
        f'<text x="{width - 80}" y="{pad}" fill="red">kills</text>',
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
