"""What `speed.py` and `load.py` share: clips, the faster-whisper reference, contention, the machine line.

The two scripts run as scripts from the repository root (`python benchmarks/speed.py`); each puts the
repository on `sys.path` before importing this module as `benchmarks.harness`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    import numpy as np
    import psutil

TEST_DATA = REPO / "tests" / "data"
IVR_DEV = REPO / "data" / "ivr-en" / "dev"
THREADS = 2
"""Torch and CTranslate2 CPU threads for every engine measured; the reference machine has 2 cores."""
LANGUAGE = "en"
SAMPLE_RATE = 16000
QUIET_CORES = 0.25
"""Other processes busier than this many cores make a measurement contended: it is waited out and retried."""
VERSIONED = ("torch", "transformers", "ctranslate2", "faster-whisper", "numpy")
T = TypeVar("T")


# --- clips -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """One audio file, its reference transcript, its length and the language sent with it."""

    name: str
    path: Path
    reference: str
    duration_s: float
    language: str = LANGUAGE


def fixture_clips() -> dict[str, Clip]:
    """The committed test clips of `tests/data/clips.json`, by name (`jfk`, `sonnets`, `german_tts`...)."""
    entries = json.loads((TEST_DATA / "clips.json").read_text(encoding="utf-8"))["clips"]
    return {
        e["name"]: Clip(e["name"], TEST_DATA / e["file"], e["text"], float(e["duration_s"]), e["language"])
        for e in entries
    }


def ivr_clips(count: int | None = None) -> list[Clip]:
    """The English telephone prompts of the ivr-en dev split, in `metadata.csv` order (the first `count`)."""
    path = IVR_DEV / "metadata.csv"
    if not path.is_file():
        raise SystemExit(f"the ivr-en dev split is not at {IVR_DEV} (it ships with the repository)")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["language"] == "en"]
    clips = [
        Clip(f"ivr/{r['file_name']}", IVR_DEV / r["file_name"], r["transcription"], float(r["duration_s"]))
        for r in rows
    ]
    return clips if count is None else clips[:count]


def normalised_wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (a fraction) after Whisper's English normaliser."""
    from tuned_whisper.evaluation import score

    return score(references, hypotheses).wer_normalized


# --- the faster-whisper reference ----------------------------------------------------------------------


@contextlib.contextmanager
def ct2_model_dir() -> Iterator[Path]:
    """A temporary CTranslate2 model directory with the source weights the embedded checkpoint comes from."""
    from tuned_whisper.checkpoint import SOURCES, export_ct2

    with tempfile.TemporaryDirectory(prefix="tw-bench-ct2-") as tmp:
        yield export_ct2(SOURCES["base"], Path(tmp))


class FasterWhisperRunner:
    """faster-whisper on those weights: greedy (beam 1, temperature 0), no VAD, no previous-text prompt."""

    def __init__(self, model_dir: Path, compute_type: str = "int8", threads: int = THREADS) -> None:
        from faster_whisper import WhisperModel

        self.model = WhisperModel(
            str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads
        )

    def transcribe(self, audio: np.ndarray | str, language: str = LANGUAGE) -> str:
        """One clip (samples at 16 kHz, or a file path) to its text."""
        segments, _ = self.model.transcribe(
            audio,
            beam_size=1,
            temperature=0,
            language=language,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return "".join(segment.text for segment in segments).strip()  # the generator does the work


FASTER_WHISPER_LINE = (
    f"faster-whisper int8 (source CT2 weights, {THREADS} threads, beam 1, temperature 0, no VAD, "
    "no previous-text conditioning), one clip after another"
)


# --- contention ----------------------------------------------------------------------------------------


def machine_busy_s() -> float:
    """CPU seconds all processes have spent busy since boot (the first line of /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy
    busy = sum(int(value) for i, value in enumerate(fields[:8]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: psutil.Process | None) -> float:
    """CPU seconds used by this process and by `root` and its descendants (a server and its replicas)."""
    import psutil

    tree = [root, *root.children(recursive=True)] if root is not None else []
    total = 0.0
    for process in [psutil.Process(), *tree]:
        with contextlib.suppress(psutil.Error):
            total += sum(process.cpu_times()[:4])  # user, system, children's user and system
    return total


class Contention:
    """Cores other processes kept busy while the `with` block ran (this process and `server` excluded)."""

    def __init__(self, server: psutil.Process | None = None) -> None:
        self.server = server
        self.cores = 0.0

    def __enter__(self) -> Contention:
        self._started = (time.perf_counter(), machine_busy_s(), tree_cpu_s(self.server))
        return self

    def __exit__(self, *_: object) -> None:
        started, machine, ours = self._started
        others = machine_busy_s() - machine - (tree_cpu_s(self.server) - ours)
        self.cores = max(0.0, others) / max(time.perf_counter() - started, 1e-9)


def wait_until_quiet(limit_s: float, server: psutil.Process | None = None) -> float:
    """Wait (at most `limit_s`) until other processes leave the CPUs idle: on 2 cores they skew timings.

    Returns the last load seen (cores), so a caller can say that it gave up waiting.
    """
    deadline = time.monotonic() + limit_s
    cores = 0.0
    while True:
        with Contention(server) as others:
            time.sleep(2)
        cores = others.cores
        if cores <= QUIET_CORES or time.monotonic() >= deadline:
            return cores


def quietly(
    measure: Callable[[], T],
    others: Callable[[T], float],
    *,
    retries: int,
    quiet_wait_s: float,
    server: psutil.Process | None = None,
) -> T:
    """Measure once the machine is quiet; again (up to `retries` times) if others were busy meanwhile.

    Keeps the least contended attempt.
    """
    attempts: list[T] = []
    for attempt in range(retries + 1):
        wait_until_quiet(quiet_wait_s, server)
        attempts.append(measure())
        if others(attempts[-1]) <= QUIET_CORES:
            break
        again = "; again ..." if attempt < retries else ""
        print(f" others used {others(attempts[-1]):.2f} cores meanwhile{again}", end="", file=sys.stderr)
    return min(attempts, key=others)


def load_average() -> str:
    """Other processes on a small machine skew timings; the load average shows whether they ran."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


# --- memory ----------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_peak_rss_mb(pid: int) -> float:
    """Another process's peak resident set size in MiB (`VmHWM` in /proc/PID/status); 0 if unreadable."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --- the machine -----------------------------------------------------------------------------------------


def machine_lines() -> list[str]:
    """The CPU, the core count, the library versions and the thread setting, as Markdown list items."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    versions = ", ".join(f"{name} {_version(name)}" for name in VERSIONED)
    return [
        f"- machine: nproc {_nproc()} ({os.cpu_count()} CPUs online), {cpu}, "
        f"{platform.system()} {platform.machine()}; date {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- python {platform.python_version()}; {versions}",
        f"- threads: {THREADS} for every engine (torch set_num_threads, CTranslate2 intra/cpu threads); "
        "greedy decoding",
    ]


def _nproc() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
