"""Backlog: a pile of real recordings of mixed length, handed over at once, as jobs and as a batch.

The backlog: the long ones are real speech put end to end (the sonnets reading 6 and 3 times: 10.6 and
5.3 minutes), plus the sonnets, JFK and the German clip as they are, and 16 ivr-en telephone prompts.
The whole backlog goes in three ways, one after another, and is timed each time:

- as asynchronous jobs (`POST /v1/audio/transcriptions/jobs`, all submitted at once, polled until every
  one has finished) to the served app with 1 and then 2 model replicas (4 job workers in the ingress);
- through `tuned-whisper batch` (Ray Data) with 1 and then 2 workers.

It prints audio hours per wall hour (x real time), job latency (p50, p95, slowest), and what a GPU
would need to reach the original design's 10 h of audio in 10 minutes.

    .venv/bin/python benchmarks/backlog.py                 # all four rows (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/backlog.py --rows jobs-1,batch-1
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.harness import fixture_clips, ivr_clips, load_average, machine_lines  # noqa: E402
from benchmarks.load import BATCH_SIZE, Served, _percentile, http_client, served, warm_up  # noqa: E402
from tuned_whisper.audio import ffmpeg_binary  # noqa: E402

ROWS = ("jobs-1", "jobs-2", "batch-1", "batch-2")
JOB_WORKERS = 4
POLL_S = 1.0
TIMEOUT_S = 3600


@dataclass(frozen=True)
class Row:
    name: str
    files: int
    audio_s: float
    wall_s: float
    latencies: list[float]
    failed: int

    @property
    def realtime(self) -> float:
        return self.audio_s / self.wall_s


def backlog(folder: Path) -> list[tuple[Path, float]]:
    """The files of the backlog and their lengths in seconds."""
    clips = fixture_clips()
    sonnets = clips["sonnets"]
    files: list[tuple[Path, float]] = []
    for repeats in (6, 3):
        path = folder / f"sonnets_x{repeats}.flac"
        inputs = [arg for _ in range(repeats) for arg in ("-i", str(sonnets.path))]
        graph = "".join(f"[{i}:a]" for i in range(repeats)) + f"concat=n={repeats}:v=0:a=1"
        subprocess.run(
            [ffmpeg_binary(), "-v", "error", "-y", *inputs, "-filter_complex", graph, str(path)], check=True
        )
        files.append((path, repeats * sonnets.duration_s))
    for clip in (sonnets, sonnets, clips["jfk"], clips["jfk"], clips["german_tts"], *ivr_clips(16)):
        files.append((clip.path, clip.duration_s))
    return files


def run_jobs(files: list[tuple[Path, float]], replicas: int, tmp: Path) -> Row:
    args = argparse.Namespace(batch_wait_s=None, no_vad=False, max_batch_size=BATCH_SIZE)
    extra = {
        "TW_JOBS__DATA_DIR": str(tmp / f"jobs-{replicas}"),
        "TW_JOBS__WORKERS": str(JOB_WORKERS),
        "TW_SERVE__REPLICAS": str(replicas),
        "TW_SERVE__MODEL_NUM_CPUS": str(1.6 / replicas),  # room for the ingress on 2 cores
    }
    log = tmp / f"server-{replicas}.log"
    with (
        served(Served("ctranslate2", True), log, args, extra_env=extra) as (url, _, _),
        http_client() as client,
    ):
        warm_up(url)
        started = time.monotonic()
        ids = []
        for path, _ in files:
            response = client.post(
                f"{url}/v1/audio/transcriptions/jobs",
                files={"file": (path.name, path.read_bytes())},
                data={"language": "en", "response_format": "json"},
                timeout=120,
            )
            response.raise_for_status()
            ids.append(response.json()["id"])
        finished: dict[str, dict] = {}
        while len(finished) < len(ids) and time.monotonic() - started < TIMEOUT_S:
            time.sleep(POLL_S)
            for job_id in [i for i in ids if i not in finished]:
                job = client.get(f"{url}/v1/audio/transcriptions/jobs/{job_id}", timeout=60).json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    finished[job_id] = job | {"seen_s": time.monotonic() - started}
        wall_s = max(job["seen_s"] for job in finished.values())
    failed = sum(job["status"] != "succeeded" for job in finished.values())
    latencies = [job["finished_at"] - job["created_at"] for job in finished.values() if job["finished_at"]]
    audio_s = sum(d for _, d in files)
    return Row(f"jobs, {replicas} model replica(s)", len(files), audio_s, wall_s, latencies, failed)


def run_batch(files: list[tuple[Path, float]], workers: int, tmp: Path) -> Row:
    manifest = tmp / f"manifest-{workers}.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path"])
        for index, (path, _) in enumerate(files):  # the same clip twice: two links, two outputs
            link = tmp / f"in-{workers}" / f"{index:02d}_{path.name}"
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(path)
            writer.writerow([str(link)])
    out = tmp / f"batch-{workers}"
    command = [sys.executable, "-m", "tuned_whisper.cli", "batch", str(manifest), "-o", str(out)]
    command += ["--workers", str(workers), "--language", "en", "--backend", "ctranslate2"]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    wall_s = time.monotonic() - started
    with (out / "report.csv").open() as f:
        report = list(csv.DictReader(f))
    failed = sum(r["status"] != "done" for r in report) + (result.returncode != 0 and not report)
    latencies = [float(r["seconds"]) for r in report if r["seconds"]]
    audio_s = sum(d for _, d in files)
    name = f"tuned-whisper batch, {workers} worker(s) (startup included)"
    return Row(name, len(files), audio_s, wall_s, latencies, failed)


def table(rows: list[Row]) -> str:
    lines = [
        "| how | files | audio min | wall s | audio h per wall h | failed | latency p50 / p95 / max s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lat = row.latencies
        lines.append(
            f"| {row.name} | {row.files} | {row.audio_s / 60:.1f} | {row.wall_s:.0f} | {row.realtime:.1f} "
            f"| {row.failed} | {_percentile(lat, 50):.0f} / {_percentile(lat, 95):.0f} "
            f"/ {max(lat, default=float('nan')):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {','.join(ROWS)}")
    chosen = [r.strip() for r in parser.parse_args().rows.split(",") if r.strip()]
    unknown = [r for r in chosen if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {','.join(ROWS)}")
    print("\n".join(machine_lines()))
    print(f"- load average before: {load_average()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tw-backlog-") as name:
        tmp = Path(name)
        files = backlog(tmp)
        for row in chosen:
            kind, count = row.split("-")
            print(f"- {row} ...", file=sys.stderr, flush=True)
            run = run_jobs if kind == "jobs" else run_batch
            rows.append(run(files, int(count), tmp))
            print(f"  {rows[-1].wall_s:.0f} s, {rows[-1].failed} failed", file=sys.stderr)
    print(f"- load average after: {load_average()}")
    audio_min = sum(d for _, d in files) / 60
    print(
        f"- backlog: {len(files)} files, {audio_min:.1f} min of real speech (sonnets x6 and x3 end to end, "
        f"the sonnets and JFK twice, the German clip, 16 ivr-en prompts); CTranslate2 int8, greedy, VAD on; "
        f"jobs: {JOB_WORKERS} job workers in one ingress, one API key\n"
    )
    print(table(rows))
    best = max(rows, key=lambda r: r.realtime)
    print(
        f"\n- 10 h of audio in 10 min is 60x real time; the best row here is {best.realtime:.1f}x on 2 CPU "
        f"cores, so that goal needs {60 / best.realtime:.0f} times this machine's throughput (no GPU was "
        "lent to measure one)."
    )


if __name__ == "__main__":
    main()
