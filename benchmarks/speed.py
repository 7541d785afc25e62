"""CPU speed benchmark: tuned-whisper's two backends against faster-whisper, side by side, on the same clips.

Each (configuration, clip set) pair runs in a fresh subprocess (``--worker``) so that its peak RSS is its
own; the parent prints the machine, the library versions and one Markdown table. Times exclude model
loading (reported apart) and audio decoding; each is the minimum over ``--repeats`` runs after one untimed
warm-up, as faster-whisper's own benchmarks quote it. WER is Whisper-normalised, against the references.
The CTranslate2 float32 rows run with ``CT2_USE_MKL=1`` in their worker's environment (without it
CTranslate2 uses oneDNN on AMD CPUs and float32 is several times slower).

    .venv/bin/python benchmarks/speed.py            # full run: about 12 minutes on 2 idle cores
    .venv/bin/python benchmarks/speed.py --quick    # smoke run: about 2 minutes

Before each worker the parent waits for other processes to leave the CPUs idle, and reruns a worker they
disturbed (``--quiet-wait``, ``--retries``); on a busy machine that makes a run take longer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, Protocol

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package

from benchmarks.harness import (  # noqa: E402  (after the sys.path line above)
    FASTER_WHISPER_LINE,
    IVR_DEV,
    LANGUAGE,
    QUIET_CORES,
    SAMPLE_RATE,
    THREADS,
    Clip,
    FasterWhisperRunner,
    ct2_model_dir,
    fixture_clips,
    ivr_clips,
    load_average,
    machine_busy_s,
    machine_lines,
    normalised_wer,
    peak_rss_mb,
    wait_until_quiet,
)

if TYPE_CHECKING:
    import numpy as np

WARMUP_S = 30
"""The untimed warm-up transcribes at most this many seconds of the set's first clip."""
BASELINE = "fw-int8"
CLIP_SETS = ("jfk", "sonnets", "ivr")
LONG_SETS = ("sonnets", "ivr")
"""Sets whose one pass is a minute or more of audio; they get `--long-repeats` timed runs."""
MKL = {"CT2_USE_MKL": "1"}


@dataclass(frozen=True)
class Config:
    """One way of running Whisper base on the CPU."""

    name: str
    backend: str  # "transformers" | "ctranslate2" (tuned-whisper's engine) | "faster-whisper"
    batch_size: int = 1
    quantization: str = ""
    env: dict[str, str] = field(default_factory=dict)
    """Set in the worker's environment before anything is imported."""
    description: str = ""


CONFIGS = {
    config.name: config
    for config in (
        Config("tf-b1", "transformers", 1, description="tuned-whisper, Transformers backend, fp32, batch 1"),
        Config("tf-b8", "transformers", 8, description="tuned-whisper, Transformers backend, fp32, batch 8"),
        Config(
            "ct2-int8-b1", "ctranslate2", 1, "int8", description="tuned-whisper, CTranslate2 int8, batch 1"
        ),
        Config(
            "ct2-int8-b8", "ctranslate2", 8, "int8", description="tuned-whisper, CTranslate2 int8, batch 8"
        ),
        Config(
            "ct2-fp32-b1",
            "ctranslate2",
            1,
            "float32",
            MKL,
            "tuned-whisper, CTranslate2 float32, batch 1, CT2_USE_MKL=1",
        ),
        Config(
            "ct2-fp32-b8",
            "ctranslate2",
            8,
            "float32",
            MKL,
            "tuned-whisper, CTranslate2 float32, batch 8, CT2_USE_MKL=1",
        ),
        Config("fw-int8", "faster-whisper", quantization="int8", description=FASTER_WHISPER_LINE),
        Config(
            "fw-fp32",
            "faster-whisper",
            quantization="float32",
            env=MKL,
            description="the same in float32, CT2_USE_MKL=1",
        ),
    )
}
DEFAULT_CONFIGS = ("tf-b1", "tf-b8", "ct2-int8-b1", "ct2-int8-b8", "ct2-fp32-b1", "ct2-fp32-b8", "fw-int8")
QUICK_CONFIGS = ("tf-b8", "ct2-int8-b1", "ct2-int8-b8", "ct2-fp32-b8", "fw-int8")
QUICK_IVR_COUNT = 4


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
    engine: str = ""
    """What the engine says it loaded (`info.backend`/`info.dtype`), to check the row is what it claims."""

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


def load_clips(clip_set: str, ivr_count: int) -> list[Clip]:
    """The clips of a set, in a fixed order, with their references."""
    if clip_set == "ivr":
        return ivr_clips(ivr_count)
    return [fixture_clips()[clip_set]]


# --- worker: one configuration, one clip set, in its own process -------------------------------------


class Runner(Protocol):
    """Transcribes a list of 16 kHz clips to their texts, in order."""

    engine: str

    def transcribe_all(self, audios: Sequence[np.ndarray]) -> list[str]: ...


class OursRunner:
    """tuned-whisper's engine; several clips go through `transcribe_many` so their windows share batches."""

    def __init__(self, config: Config, plain: bool) -> None:
        from tuned_whisper.config import EngineSettings, Settings
        from tuned_whisper.engine import load_transcriber
        from tuned_whisper.types import TranscribeOptions

        extra = {"vad_filter": False, "pack_short_audio": False} if plain else {}
        engine = EngineSettings(
            backend=config.backend,
            quantization=config.quantization or "auto",
            device="cpu",
            batch_size=config.batch_size,
            num_threads=THREADS,
            **extra,
        )
        self.transcriber = load_transcriber(Settings(engine=engine))
        self.engine = f"{self.transcriber.info.backend} {self.transcriber.info.dtype}"
        self.options = TranscribeOptions(language=LANGUAGE)

    def transcribe_all(self, audios: Sequence[np.ndarray]) -> list[str]:
        if len(audios) == 1:
            return [self.transcriber.transcribe(audios[0], self.options).text]
        return [t.text for t in self.transcriber.transcribe_many([(a, self.options) for a in audios])]


class FasterWhisperAll:
    """faster-whisper, one clip after another (its `WhisperModel` does not batch)."""

    def __init__(self, model_dir: Path, compute_type: str) -> None:
        self.runner = FasterWhisperRunner(model_dir, compute_type)
        self.engine = f"faster-whisper {compute_type}"

    def transcribe_all(self, audios: Sequence[np.ndarray]) -> list[str]:
        return [self.runner.transcribe(audio) for audio in audios]


def make_runner(config: Config, ct2_dir: Path | None, plain: bool) -> Runner:
    if config.backend != "faster-whisper":
        return OursRunner(config, plain)
    if ct2_dir is None:
        raise SystemExit(f"{config.name} needs --ct2-dir (the parent process prepares it)")
    return FasterWhisperAll(ct2_dir, config.quantization)


def run_worker(
    config: Config, clip_set: str, repeats: int, ivr_count: int, ct2_dir: Path | None, plain: bool
) -> Measurement:
    """Load, warm up, then time `repeats` passes over the clip set; the peak RSS is read last."""
    from tuned_whisper.audio import decode_audio

    audios = [decode_audio(clip.path) for clip in load_clips(clip_set, ivr_count)]
    started = time.perf_counter()
    runner = make_runner(config, ct2_dir, plain)
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
        engine=runner.engine,
    )


# --- parent: plan, spawn workers, report ---------------------------------------------------------------


def spawn_worker(job: Job, args: argparse.Namespace, ct2_dir: Path | None) -> Measurement:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", job.config]
    command += ["--clip-set", job.clip_set, "--repeats", str(job.repeats), "--ivr-count", str(args.ivr_count)]
    if ct2_dir is not None:
        command += ["--ct2-dir", str(ct2_dir)]
    if args.plain:
        command.append("--plain")
    env = os.environ | CONFIGS[job.config].env
    print(f"  {job.config:11} on {job.clip_set:8} x{job.repeats} ...", end="", file=sys.stderr, flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"\nworker {job.config} on {job.clip_set} failed:\n{done.stderr[-3000:]}")
    measurement = Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))
    print(f" {measurement.wall_s:.2f} s", file=sys.stderr)
    return measurement


def measure(job: Job, args: argparse.Namespace, ct2_dir: Path | None) -> Measurement:
    """Run a worker when the machine is quiet; if others still ran, run it again (up to `--retries` times).

    The fastest attempt is kept, as the minimum of repeats is quoted within one.
    """
    attempts: list[Measurement] = []
    for _ in range(args.retries + 1):
        wait_until_quiet(args.quiet_wait)
        attempts.append(spawn_worker(job, args, ct2_dir))
        if contention(attempts[-1]) <= QUIET_CORES:
            break
        print(f"    others used {contention(attempts[-1]):.2f} cores meanwhile", file=sys.stderr)
    return min(attempts, key=lambda m: m.wall_s)


def contention(measurement: Measurement) -> float:
    """Cores the rest of the machine kept busy during the quoted pass."""
    return measurement.best.others_cpu_s / measurement.wall_s


def plan_jobs(configs: Sequence[str], clip_sets: Sequence[str], repeats: int, long_repeats: int) -> list[Job]:
    """Every configuration on every clip set; long sets get `long_repeats` timed runs."""
    return [
        Job(config, clip_set, long_repeats if clip_set in LONG_SETS else repeats)
        for clip_set in clip_sets
        for config in configs
    ]


def word_error_rate(measurement: Measurement, ivr_count: int) -> float:
    """Whisper-normalised corpus WER of the hypotheses against the set's references."""
    references = [clip.reference for clip in load_clips(measurement.clip_set, ivr_count)]
    return normalised_wer(references, measurement.hypotheses)


def table(measurements: Sequence[Measurement], ivr_count: int) -> str:
    header = (
        "| config | clip set | clips | audio s | load s | wall s (min of n) | RTF | x realtime "
        f"| time vs {BASELINE} | speed vs {BASELINE} | peak RSS MB | WER (norm.) | cores used "
        "| others' load |"
    )
    lines = [header, "|" + "---|" * 14]
    baseline = {m.clip_set: m.wall_s for m in measurements if m.config == BASELINE}
    for m in measurements:
        base = baseline.get(m.clip_set)
        time_ratio = f"{m.wall_s / base:.2f}x" if base else "-"
        speed_ratio = f"{base / m.wall_s:.2f}x" if base else "-"
        lines.append(
            f"| {m.config} | {m.clip_set} | {m.n_clips} | {m.audio_s:.1f} | {m.load_s:.1f} "
            f"| {m.wall_s:.2f} (n={len(m.passes)}) | {m.wall_s / m.audio_s:.3f} | {m.audio_s / m.wall_s:.1f} "
            f"| {time_ratio} | {speed_ratio} | {m.peak_rss_mb:.0f} "
            f"| {word_error_rate(m, ivr_count) * 100:.1f}% "
            f"| {m.best.cpu_s / m.wall_s:.2f} | {m.best.others_cpu_s / m.wall_s:.2f} |"
        )
    return "\n".join(lines)


def legend(measurements: Sequence[Measurement]) -> str:
    engines = {m.config: m.engine for m in measurements}
    return "\n".join(
        f"- {name}: {CONFIGS[name].description} (loaded: {engine})" for name, engine in engines.items()
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    # A plain SIGTERM skips `finally`; as SystemExit it stops the worker and removes the temporary model.
    raise SystemExit(128 + signum)


def run_parent(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    jobs = plan_from_args(args)
    print("\n".join(machine_lines()))
    engine = (
        "VAD and packing off (--plain)"
        if args.plain
        else "engine defaults (VAD filter on, short-clip packing on)"
    )
    print(f"- tuned-whisper rows: {engine}; language forced to {LANGUAGE}")
    if "ivr" in args.clips:
        print(f"- ivr: the first {args.ivr_count} clips of {IVR_DEV}/metadata.csv (8 kHz telephone prompts)")
    print(f"- load average before: {load_average()}", flush=True)  # before the workers' progress lines
    started = time.perf_counter()
    needs_ct2 = any(CONFIGS[job.config].backend == "faster-whisper" for job in jobs)
    with ct2_model_dir() if needs_ct2 else contextlib.nullcontext() as ct2_dir:
        measurements = [measure(job, args, ct2_dir) for job in jobs]
    print(f"- load average after: {load_average()}; benchmark took {time.perf_counter() - started:.0f} s\n")
    print(table(measurements, args.ivr_count))
    print("\n" + legend(measurements))
    print(
        f"- time vs {BASELINE}: wall s / {BASELINE}'s on the same set (2.00x = twice as slow); speed vs "
        f"{BASELINE}: the inverse. cores used: the worker's CPU time / wall time (at most {THREADS}); "
        f"others' load: cores other processes kept busy meanwhile. Above {QUIET_CORES} the row's time is "
        "inflated by them."
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(m) for m in measurements], indent=2), encoding="utf-8")


def plan_from_args(args: argparse.Namespace) -> list[Job]:
    if args.quick:
        return plan_jobs(args.configs or QUICK_CONFIGS, args.clips, 1, 1)
    configs = args.configs or DEFAULT_CONFIGS
    return plan_jobs(configs, args.clips, args.repeats, min(args.repeats, args.long_repeats))


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
        "--quick", action="store_true", help=f"one run each, {' '.join(QUICK_CONFIGS)} on jfk and 4 ivr clips"
    )
    parser.add_argument(
        "--plain", action="store_true", help="tuned-whisper rows without VAD and short-clip packing"
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
        config = CONFIGS[args.worker]
        measurement = run_worker(
            config, args.clip_set, args.repeats, args.ivr_count, args.ct2_dir, args.plain
        )
        print(json.dumps(asdict(measurement)))
    else:
        run_parent(args)


if __name__ == "__main__":
    main()
