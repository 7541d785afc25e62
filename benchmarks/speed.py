"""CPU speed benchmark: tuned-whisper's engine against faster-whisper, side by side, on the same clips.

Each (configuration, clip set) pair runs in a fresh subprocess (``--worker``) so that its peak RSS is its
own; the parent prints the machine, the library versions and one Markdown table. Times exclude model
loading (reported apart) and audio decoding; each is the minimum over ``--repeats`` runs after one untimed
warm-up, as faster-whisper's own benchmarks quote it. WER is Whisper-normalised, against the references.

    .venv/bin/python benchmarks/speed.py            # full run: about 8 minutes on 2 idle cores
    .venv/bin/python benchmarks/speed.py --quick    # smoke run: about 1 minute

Before each worker the parent waits for other processes to leave the CPUs idle, and reruns a worker they
disturbed (``--quiet-wait``, ``--retries``); on a busy machine that makes a run take longer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

if TYPE_CHECKING:
    import numpy as np

TEST_DATA = REPO / "tests" / "data"
IVR_DEV = Path(__file__).resolve().parents[1].parent / "shared/data/ivr-en/dev"
THREADS = 2
"""Torch and CTranslate2 CPU threads; the reference machine has 2 cores."""
LANGUAGE = "en"
SAMPLE_RATE = 16000
WARMUP_S = 30
"""The untimed warm-up transcribes at most this many seconds of the set's first clip."""
BASELINE = "fw-int8"
CLIP_SETS = ("jfk", "sonnets", "ivr")
LONG_SETS = ("sonnets", "ivr")
"""Sets whose one pass is a minute or more of audio; they get `--long-repeats` timed runs."""
VERSIONED = ("torch", "transformers", "ctranslate2", "faster-whisper", "numpy")


@dataclass(frozen=True)
class Config:
    """One way of running Whisper base on the CPU."""

    name: str
    backend: str  # "ours" | "faster-whisper"
    batch_size: int = 1
    compute_type: str = ""
    description: str = ""


CONFIGS = {
    config.name: config
    for config in (
        Config("ours-b1", "ours", batch_size=1, description="tuned-whisper engine, fp32, batch 1"),
        Config("ours-b4", "ours", batch_size=4, description="tuned-whisper engine, fp32, batch 4"),
        Config("ours-b8", "ours", batch_size=8, description="tuned-whisper engine, fp32, batch 8"),
        Config("fw-int8", "faster-whisper", compute_type="int8", description="faster-whisper, int8"),
        Config("fw-fp32", "faster-whisper", compute_type="float32", description="faster-whisper, fp32"),
    )
}
DEFAULT_CONFIGS = ("ours-b1", "ours-b4", "ours-b8", "fw-int8", "fw-fp32")
QUICK_CONFIGS = ("ours-b1", "ours-b8", "fw-int8")
QUIET_CORES = 0.25
"""Other processes busier than this many cores make a measurement contended: it is waited out and retried."""
QUICK_IVR_COUNT = 4


@dataclass(frozen=True)
class Clip:
    """One audio file and its reference transcript."""

    path: Path
    reference: str


@dataclass(frozen=True)
class Pass:
    """One timed pass over a clip set, with what the CPUs did meanwhile."""

    wall_s: float
    cpu_s: float
    """CPU time of the worker process (all its threads)."""
    others_cpu_s: float
    """CPU time the rest of the machine used meanwhile: contention that inflates `wall_s`."""


@dataclass(frozen=True)
class Measurement:
    """What one worker measured: one configuration on one clip set."""

    config: str
    clip_set: str
    n_clips: int
    audio_s: float
    load_s: float
    passes: list[Pass]
    peak_rss_mb: float
    hypotheses: list[str]

    def __post_init__(self) -> None:
        # Rebuilt from JSON, the passes arrive as dicts.
        passes = [p if isinstance(p, Pass) else Pass(**p) for p in self.passes]
        object.__setattr__(self, "passes", passes)

    @property
    def best(self) -> Pass:
        """The fastest timed pass, the one quoted."""
        return min(self.passes, key=lambda p: p.wall_s)

    @property
    def wall_s(self) -> float:
        return self.best.wall_s


@dataclass(frozen=True)
class Job:
    """One worker to start."""

    config: str
    clip_set: str
    repeats: int


# --- clips -------------------------------------------------------------------------------------------


def load_clips(clip_set: str, ivr_count: int) -> list[Clip]:
    """The clips of a set, in a fixed order, with their references."""
    if clip_set == "ivr":
        return _ivr_clips(ivr_count)
    entries = json.loads((TEST_DATA / "clips.json").read_text(encoding="utf-8"))["clips"]
    entry = next(e for e in entries if e["name"] == clip_set)
    return [Clip(path=TEST_DATA / entry["file"], reference=entry["text"])]


def _ivr_clips(count: int) -> list[Clip]:
    from tuned_whisper.datasets import load_utterances

    if not IVR_DEV.is_dir():
        raise SystemExit(f"the ivr-en dev split is not at {IVR_DEV}; drop 'ivr' from --clips or add it there")
    return [Clip(path=u.audio_path, reference=u.text) for u in load_utterances(IVR_DEV)[:count]]


# --- worker: one configuration, one clip set, in its own process -------------------------------------


class Runner(Protocol):
    """Transcribes a list of 16 kHz clips to their texts, in order."""

    def transcribe_all(self, audios: Sequence[np.ndarray]) -> list[str]: ...


class OursRunner:
    """tuned-whisper's engine; several clips go through `transcribe_many` so their windows share batches."""

    def __init__(self, batch_size: int) -> None:
        from tuned_whisper.config import EngineSettings, Settings
        from tuned_whisper.engine import load_transcriber
        from tuned_whisper.types import TranscribeOptions

        engine = EngineSettings(device="cpu", batch_size=batch_size, num_threads=THREADS)
        self.transcriber = load_transcriber(Settings(engine=engine))
        self.options = TranscribeOptions(language=LANGUAGE)

    def transcribe_all(self, audios: Sequence[np.ndarray]) -> list[str]:
        if len(audios) == 1:
            return [self.transcriber.transcribe(audios[0], self.options).text]
        return [t.text for t in self.transcriber.transcribe_many([(a, self.options) for a in audios])]


class FasterWhisperRunner:
    """faster-whisper on the source CTranslate2 weights, greedy, one clip after another."""

    def __init__(self, model_dir: Path, compute_type: str) -> None:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(
            str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=THREADS
        )

    def transcribe_all(self, audios: Sequence[np.ndarray]) -> list[str]:
        return [self._transcribe(audio) for audio in audios]

    def _transcribe(self, audio: np.ndarray) -> str:
        segments, _ = self.model.transcribe(
            audio,
            beam_size=1,
            temperature=0,
            language=LANGUAGE,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return "".join(segment.text for segment in segments).strip()  # the generator does the work


def make_runner(config: Config, ct2_dir: Path | None) -> Runner:
    if config.backend == "ours":
        return OursRunner(config.batch_size)
    if ct2_dir is None:
        raise SystemExit(f"{config.name} needs --ct2-dir (the parent process prepares it)")
    return FasterWhisperRunner(ct2_dir, config.compute_type)


def run_worker(
    config: Config, clip_set: str, repeats: int, ivr_count: int, ct2_dir: Path | None
) -> Measurement:
    """Load, warm up, then time `repeats` passes over the clip set; the peak RSS is read last."""
    from tuned_whisper.audio import decode_audio

    audios = [decode_audio(clip.path) for clip in load_clips(clip_set, ivr_count)]
    started = time.perf_counter()
    runner = make_runner(config, ct2_dir)
    load_s = time.perf_counter() - started
    runner.transcribe_all([audios[0][: WARMUP_S * SAMPLE_RATE]])
    passes: list[Pass] = []
    hypotheses: list[str] = []
    for _ in range(repeats):
        machine, process, started = machine_busy_s(), time.process_time(), time.perf_counter()
        hypotheses = runner.transcribe_all(audios)
        wall, cpu = time.perf_counter() - started, time.process_time() - process
        passes.append(Pass(wall_s=wall, cpu_s=cpu, others_cpu_s=max(0.0, machine_busy_s() - machine - cpu)))
    return Measurement(
        config=config.name,
        clip_set=clip_set,
        n_clips=len(audios),
        audio_s=sum(len(a) for a in audios) / SAMPLE_RATE,
        load_s=load_s,
        passes=passes,
        peak_rss_mb=peak_rss_mb(),
        hypotheses=hypotheses,
    )


def machine_busy_s() -> float:
    """CPU seconds all processes have spent busy since boot (the first line of /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy
    busy = sum(int(value) for i, value in enumerate(fields[:8]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- parent: plan, spawn workers, report ---------------------------------------------------------------


@contextlib.contextmanager
def ct2_model_dir(needed: bool) -> Iterator[Path | None]:
    """A temporary CTranslate2 model directory holding the source weights of the embedded checkpoint."""
    if not needed:
        yield None
        return
    from tuned_whisper.checkpoint import SOURCES, export_ct2

    with tempfile.TemporaryDirectory(prefix="tw-bench-ct2-") as tmp:
        yield export_ct2(SOURCES["base"], Path(tmp))


def spawn_worker(job: Job, ivr_count: int, ct2_dir: Path | None) -> Measurement:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", job.config]
    command += ["--clip-set", job.clip_set, "--repeats", str(job.repeats), "--ivr-count", str(ivr_count)]
    if ct2_dir is not None:
        command += ["--ct2-dir", str(ct2_dir)]
    print(f"  {job.config:8} on {job.clip_set:8} x{job.repeats} ...", end="", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"\nworker {job.config} on {job.clip_set} failed:\n{done.stderr[-3000:]}")
    fields = json.loads(done.stdout.strip().splitlines()[-1])
    measurement = Measurement(**fields)
    print(f" {measurement.wall_s:.2f} s", file=sys.stderr)
    return measurement


def measure(job: Job, args: argparse.Namespace, ct2_dir: Path | None) -> Measurement:
    """Run a worker when the machine is quiet; if others still ran, run it again (up to `--retries` times).

    The fastest attempt is kept, as the minimum of repeats is quoted within one.
    """
    attempts: list[Measurement] = []
    for _ in range(args.retries + 1):
        wait_until_quiet(args.quiet_wait)
        attempts.append(spawn_worker(job, args.ivr_count, ct2_dir))
        if contention(attempts[-1]) <= QUIET_CORES:
            break
        print(f"    others used {contention(attempts[-1]):.2f} cores meanwhile", file=sys.stderr)
    return min(attempts, key=lambda m: m.wall_s)


def contention(measurement: Measurement) -> float:
    """Cores the rest of the machine kept busy during the quoted pass."""
    return measurement.best.others_cpu_s / measurement.wall_s


def wait_until_quiet(limit_s: float) -> None:
    """Wait (at most `limit_s`) until other processes leave the CPUs idle: on 2 cores they skew timings."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and machine_load() > QUIET_CORES:
        pass


def machine_load(interval_s: float = 2.0) -> float:
    """Cores busy machine-wide over the next `interval_s` seconds (this process sleeps meanwhile)."""
    before = machine_busy_s()
    time.sleep(interval_s)
    return (machine_busy_s() - before) / interval_s


def plan_jobs(configs: Sequence[str], clip_sets: Sequence[str], repeats: int, long_repeats: int) -> list[Job]:
    """Every configuration on every clip set; long sets get `long_repeats` timed runs."""
    return [
        Job(config, clip_set, long_repeats if clip_set in LONG_SETS else repeats)
        for clip_set in clip_sets
        for config in configs
    ]


def machine_lines() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    versions = ", ".join(f"{name} {_version(name)}" for name in VERSIONED)
    system = f"{platform.system()} {platform.machine()}"
    return [
        f"- machine: nproc {_nproc()} ({os.cpu_count()} CPUs online), {cpu}, {system}",
        f"- python {platform.python_version()}; {versions}",
        f"- threads: {THREADS} (torch set_num_threads, CTranslate2 cpu_threads); greedy, language en",
    ]


def _nproc() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def word_error_rate(measurement: Measurement, ivr_count: int) -> float:
    """Whisper-normalised corpus WER of the hypotheses against the set's references."""
    from tuned_whisper.evaluation import score

    references = [clip.reference for clip in load_clips(measurement.clip_set, ivr_count)]
    return score(references, measurement.hypotheses).wer_normalized


def table(measurements: Sequence[Measurement], ivr_count: int) -> str:
    header = (
        "| config | clip set | clips | audio s | load s | wall s (min of n) | RTF | x realtime "
        f"| time vs {BASELINE} | peak RSS MB | WER (norm.) | cores used | others' load |"
    )
    lines = [header, "|" + "---|" * 13]
    baseline = {m.clip_set: m.wall_s for m in measurements if m.config == BASELINE}
    for m in measurements:
        ratio = f"{m.wall_s / baseline[m.clip_set]:.2f}x" if m.clip_set in baseline else "-"
        lines.append(
            f"| {m.config} | {m.clip_set} | {m.n_clips} | {m.audio_s:.1f} | {m.load_s:.1f} "
            f"| {m.wall_s:.2f} (n={len(m.passes)}) | {m.wall_s / m.audio_s:.3f} | {m.audio_s / m.wall_s:.1f} "
            f"| {ratio} | {m.peak_rss_mb:.0f} | {word_error_rate(m, ivr_count) * 100:.1f}% "
            f"| {m.best.cpu_s / m.wall_s:.2f} | {m.best.others_cpu_s / m.wall_s:.2f} |"
        )
    return "\n".join(lines)


def legend(measurements: Sequence[Measurement]) -> str:
    names = dict.fromkeys(m.config for m in measurements)
    return "\n".join(f"- {name}: {CONFIGS[name].description}" for name in names)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # A plain SIGTERM skips `finally`; as SystemExit it stops the worker and removes the temporary model.
    raise SystemExit(128 + signum)


def run_parent(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    jobs = plan_from_args(args)
    print("\n".join(machine_lines()))
    if "ivr" in args.clips:
        print(f"- ivr: the first {args.ivr_count} clips of {IVR_DEV}/metadata.csv (8 kHz telephone prompts)")
    print(f"- load average before: {_load_average()}", flush=True)  # before the workers' progress lines
    started = time.perf_counter()
    needs_ct2 = any(CONFIGS[job.config].backend == "faster-whisper" for job in jobs)
    with ct2_model_dir(needs_ct2) as ct2_dir:
        measurements = [measure(job, args, ct2_dir) for job in jobs]
    print(f"- load average after: {_load_average()}; benchmark took {time.perf_counter() - started:.0f} s\n")
    print(table(measurements, args.ivr_count))
    print("\n" + legend(measurements))
    print(
        f"- cores used: the worker's CPU time / wall time (at most {THREADS}); others' load: cores other "
        f"processes kept busy meanwhile. Above {QUIET_CORES} the row's time is inflated by them."
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(m) for m in measurements], indent=2), encoding="utf-8")


def plan_from_args(args: argparse.Namespace) -> list[Job]:
    if args.quick:
        return plan_jobs(args.configs or QUICK_CONFIGS, args.clips, 1, 1)
    configs = args.configs or DEFAULT_CONFIGS
    return plan_jobs(configs, args.clips, args.repeats, min(args.repeats, args.long_repeats))


def _load_average() -> str:
    """Other processes on a small machine skew timings; the load average shows whether they ran."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--clips", nargs="+", choices=CLIP_SETS, help="clip sets (default: all; --quick: jfk ivr)"
    )
    parser.add_argument(
        "--configs", nargs="+", choices=list(CONFIGS), help=f"default: {' '.join(DEFAULT_CONFIGS)}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row; the minimum is quoted")
    parser.add_argument("--long-repeats", type=int, default=2, help=f"timed runs for {', '.join(LONG_SETS)}")
    parser.add_argument(
        "--ivr-count", type=int, help=f"ivr-en dev clips in the batch (default 16; --quick {QUICK_IVR_COUNT})"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"one run each, {' '.join(QUICK_CONFIGS)} (under 2 minutes)"
    )
    parser.add_argument(
        "--quiet-wait", type=float, help="seconds to wait for idle CPUs before a worker (30; --quick 5)"
    )
    parser.add_argument("--retries", type=int, help="reruns of a contended worker (1; --quick 0)")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    parser.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--clip-set", choices=CLIP_SETS, help=argparse.SUPPRESS)
    parser.add_argument("--ct2-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.clips = args.clips or (["jfk", "ivr"] if args.quick else list(CLIP_SETS))
    for name, normal, quick in (
        ("ivr_count", 16, QUICK_IVR_COUNT),
        ("quiet_wait", 30.0, 5.0),
        ("retries", 1, 0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
    if args.repeats < 1 or args.long_repeats < 1 or args.ivr_count < 1:
        parser.error("--repeats, --long-repeats and --ivr-count must be at least 1")
    if args.retries < 0 or args.quiet_wait < 0:
        parser.error("--retries and --quiet-wait cannot be negative")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        measurement = run_worker(
            CONFIGS[args.worker], args.clip_set, args.repeats, args.ivr_count, args.ct2_dir
        )
        print(json.dumps(asdict(measurement)))
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
