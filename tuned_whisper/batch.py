"""Many files at once on Ray Data: inputs → entries → decode → an actor pool of engines → outputs + report.

Decoding runs as Ray tasks, transcription in actors that each load the engine once and hand a batch of
files to `Engine.transcribe_many` (the one long-form path: windows of all files decoded together, short
files packed). Transcripts come back to the driver, which writes every output, so that `--output-dir`
only has to exist where the command runs. A file whose outputs all exist is skipped (resumable runs).
"""

from __future__ import annotations

import csv
import math
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tuned_whisper.datasets import DatasetError, json_object
from tuned_whisper.formats import EXTENSIONS, FORMATS

if TYPE_CHECKING:
    import numpy as np

    from tuned_whisper.config import Settings
    from tuned_whisper.types import TranscribeOptions, Transcript

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".aiff", ".amr")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpeg", ".mpg", ".3gp", ".ts")
MEDIA_EXTENSIONS = frozenset(AUDIO_EXTENSIONS + VIDEO_EXTENSIONS)  # what a folder is searched for
MANIFEST_EXTENSIONS = (".jsonl", ".csv")
MANIFEST_KEYS = ("file", "path", "file_name", "audio")  # file_name/audio: the datasets' own manifests
REPORT_FILE = "report.csv"
DECODE_CPUS = 0.5
REPORT_COLUMNS = ("file", "duration_s", "status", "error", "seconds", "language", "outputs")
Status = Literal["done", "skipped", "failed"]


class BatchUsageError(ValueError):
    """The command line or a manifest cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Entry:
    """One file to transcribe and where its outputs go: `<output-dir>/<out_dir>/<stem><extension>`."""

    path: Path
    out_dir: Path = Path()
    stem: str = ""
    language: str | None = None
    """The manifest's language for this file; None: the command's `--language` (or detection)."""

    def outputs(self, output_dir: Path, formats: Sequence[str]) -> list[Path]:
        return [output_dir / self.out_dir / f"{self.stem}{EXTENSIONS[f]}" for f in formats]


@dataclass(frozen=True)
class FileResult:
    """One row of `report.csv`."""

    file: str
    status: Status
    duration_s: float | None = None
    error: str = ""
    seconds: float | None = None
    """This file's share (by duration) of the wall time of the engine call that transcribed it."""
    language: str | None = None
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchConfig:
    """How the batch runs and what it writes (the `batch` command's own flags)."""

    output_dir: Path
    formats: tuple[str, ...] = ("txt",)
    address: str | None = None
    workers: int = 1
    files_per_call: int = 8
    cpus_per_worker: float = 1.0


# --- inputs ------------------------------------------------------------------------------------


def parse_formats(text: str) -> tuple[str, ...]:
    """`srt,json` → ("srt", "json"); an unknown name is a usage error."""
    formats = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        named = ", ".join(map(repr, unknown)) or repr(text)
        raise BatchUsageError(f"unknown output format {named}: use one or more of {', '.join(FORMATS)}")
    return formats


def discover(inputs: Iterable[Path]) -> list[Entry]:
    """Files, folders (searched recursively for audio/video) and manifests → entries with unique stems."""
    found: list[Entry] = []
    for path in inputs:
        if path.is_dir():
            media = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS)
            found += [Entry(p, p.relative_to(path).parent) for p in media]
        elif path.suffix.lower() in MANIFEST_EXTENSIONS and path.is_file():
            found += read_manifest(path)
        elif path.exists():
            found.append(Entry(path))
        else:
            raise BatchUsageError(f"'{path}' does not exist: pass audio/video files, folders or manifests")
    if not found:
        raise BatchUsageError("no audio or video files found in the inputs")
    return _with_stems(found)


def read_manifest(manifest: Path) -> list[Entry]:
    """A JSONL or CSV manifest: a `file` (or `path`) per row, relative to its folder; optional `language`."""
    from tuned_whisper.languages import language_code

    entries = []
    for line, row in _manifest_rows(manifest):
        name = next((str(row[k]) for k in MANIFEST_KEYS if row.get(k)), None)
        if name is None:
            raise BatchUsageError(f"{manifest}:{line}: no 'file' or 'path' in {row!r}")
        try:
            language = language_code(str(row["language"])) if row.get("language") else None
        except ValueError as exc:
            raise BatchUsageError(f"{manifest}:{line}: {exc}") from exc
        path = manifest.parent / name
        inside = not Path(name).is_absolute() and ".." not in Path(name).parts
        entries.append(Entry(path, Path(name).parent if inside else Path(), language=language))
    return entries


def _manifest_rows(manifest: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with manifest.open(encoding="utf-8", newline="") as handle:
        if manifest.suffix.lower() == ".csv":
            yield from enumerate(csv.DictReader(handle), start=2)
            return
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                yield line, json_object(text, manifest, line)
            except DatasetError as exc:
                raise BatchUsageError(str(exc)) from exc


def _with_stems(entries: list[Entry]) -> list[Entry]:
    """Each file once, with outputs of its own: a.wav and a.mp3 side by side get a.wav.* and a.mp3.*"""
    first: dict[Path, Entry] = {}
    for e in entries:
        first.setdefault(e.path.resolve(), e)
    unique = list(first.values())
    clashes: dict[tuple[Path, str], int] = {}
    for e in unique:
        clashes[e.out_dir, e.path.stem] = clashes.get((e.out_dir, e.path.stem), 0) + 1
    named, taken = [], set()
    for e in unique:
        stem = e.path.stem if clashes[e.out_dir, e.path.stem] == 1 else e.path.name
        candidate, n = stem, 1
        while (e.out_dir, candidate) in taken:
            n += 1
            candidate = f"{stem}-{n}"
        taken.add((e.out_dir, candidate))
        named.append(replace(e, stem=candidate))
    return named


def is_done(entry: Entry, config: BatchConfig) -> bool:
    return all(p.is_file() for p in entry.outputs(config.output_dir, config.formats))


# --- the Ray Data pipeline ---------------------------------------------------------------------


def decode_row(row: dict[str, Any], max_duration_s: float) -> dict[str, Any]:
    """Ray Data `map`: the file's samples, or an empty array and the reason it could not be read."""
    import numpy as np

    from tuned_whisper.audio import decode_audio

    try:
        audio, error = decode_audio(row["path"], max_duration_s=max_duration_s), ""
    except Exception as exc:  # one unreadable file must not stop the dataset
        audio, error = np.zeros(0, dtype=np.float32), str(exc) or type(exc).__name__
    return {**row, "audio": audio, "error": error}


class Transcriber:
    """Ray Data actor: loads the engine once (on the first batch holding audio), transcribes batches."""

    def __init__(self, settings: Settings, options: TranscribeOptions) -> None:
        self.settings, self.options = settings, options
        self._engine: Any = None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        rows = [{k: batch[k][i] for k in batch} for i in range(len(batch["key"]))]
        readable = [r for r in rows if not r["error"]]
        done = dict(zip(map(id, readable), self._transcribe(readable), strict=True)) if readable else {}
        out = [done.get(id(r)) or _result_row(r, str(r["error"])) for r in rows]
        columns = {k: np.array([o[k] for o in out]) for k in ("key", "error", "seconds", "duration_s")}
        return {**columns, "transcript": np.array([o["transcript"] for o in out], dtype=object)}

    def _transcribe(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self._engine is None:
            from tuned_whisper.engine import load_transcriber

            self._engine = load_transcriber(self.settings)
        base = self.options
        requests = [(r["audio"], replace(base, language=r["language"] or base.language)) for r in rows]
        started = time.perf_counter()
        try:
            transcripts = self._engine.transcribe_many(requests)
        except Exception as exc:
            if len(rows) == 1:
                return [_result_row(rows[0], f"transcription failed: {exc or type(exc).__name__}")]
            return [self._transcribe([r])[0] for r in rows]  # one by one: only the file at fault fails
        share = (time.perf_counter() - started) / (sum(len(a) for a, _ in requests) or 1)
        return [
            _result_row(r, "", share * len(r["audio"]), pickle.dumps(t))
            for r, t in zip(rows, transcripts, strict=True)
        ]


def _result_row(row: dict[str, Any], error: str, seconds: float = 0.0, transcript: bytes = b"") -> dict:
    from tuned_whisper.audio import SAMPLE_RATE

    duration = len(row["audio"]) / SAMPLE_RATE
    return dict(key=row["key"], error=error, seconds=seconds, duration_s=duration, transcript=transcript)


def _start_ray(config: BatchConfig) -> None:
    """Join `--address` (or $RAY_ADDRESS); otherwise start a Ray of our own, never someone else's."""
    import logging
    import os

    import ray

    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:  # never fewer CPUs than the workers ask for (they would wait forever), plus one for decoding
        wanted = config.workers * math.ceil(config.cpus_per_worker) + 1
        cpus = max(os.cpu_count() or 1, wanted)
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own bar, per file
    context.print_on_execution_start = False


def _transcribed_rows(
    entries: list[Entry], config: BatchConfig, settings: Settings, options: TranscribeOptions
) -> Iterator[dict[str, Any]]:
    import ray

    items = [
        {"key": i, "path": str(e.path.absolute()), "language": e.language or ""}
        for i, e in enumerate(entries)
    ]
    dataset = (
        ray.data.from_items(items, override_num_blocks=len(items))
        # Its own CPU share keeps the decoding out of the actors (Ray would fuse it in), so that ffmpeg
        # reads the next files while the model works.
        .map(decode_row, fn_kwargs={"max_duration_s": settings.max_audio_s}, num_cpus=DECODE_CPUS)
        .map_batches(
            Transcriber,
            fn_constructor_kwargs={"settings": settings, "options": options},
            batch_size=config.files_per_call,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=config.workers),
            num_cpus=config.cpus_per_worker,
        )
    )
    yield from dataset.iter_rows()


def run_batch(
    entries: list[Entry],
    config: BatchConfig,
    settings: Settings,
    options: TranscribeOptions,
    on_result: Callable[[FileResult], None] = lambda _: None,
) -> list[FileResult]:
    """Transcribe the entries not done yet and write `report.csv`; every entry gets a `FileResult`."""
    before = read_report(config.output_dir / REPORT_FILE)
    todo = [e for e in entries if not is_done(e, config)]
    skipped = [(e, _skipped(e, config, before.get(str(e.path)))) for e in entries if is_done(e, config)]
    results: dict[Path, FileResult] = {}
    for entry, result in chain(skipped, _transcribe_on_ray(todo, config, settings, options) if todo else ()):
        results[entry.path] = result
        on_result(result)
    ordered = [results[e.path] for e in entries]
    write_report(config.output_dir / REPORT_FILE, ordered)
    return ordered


def _transcribe_on_ray(
    entries: list[Entry], config: BatchConfig, settings: Settings, options: TranscribeOptions
) -> Iterator[tuple[Entry, FileResult]]:
    import ray

    from tuned_whisper.engine import resolve_backend

    # Threads set explicitly: inside Ray OMP_NUM_THREADS is 1, and each actor owns `cpus_per_worker`.
    threads = settings.engine.num_threads or max(1, math.floor(config.cpus_per_worker))
    engine = settings.engine.model_copy(
        update={"num_threads": threads, "ct2_cache_dir": settings.engine.ct2_cache_dir.resolve()}
    )
    settings = settings.model_copy(update={"engine": engine, **_absolute(settings, "checkpoint", "adapter")})
    if resolve_backend(settings.engine.backend, settings.engine.device) == "ctranslate2":
        from tuned_whisper.engine.ctranslate2_engine import prepare_export

        prepare_export(settings.checkpoint, settings.engine, settings.adapter)  # so actors never import torch
    _start_ray(config)
    finished: set[int] = set()
    try:
        for row in _transcribed_rows(entries, config, settings, options):
            finished.add(int(row["key"]))
            yield entries[int(row["key"])], _finish(entries[int(row["key"])], row, config)
    except Exception as exc:  # Ray itself failed: an actor died, the cluster went away
        error = f"the batch stopped before this file: {exc}".splitlines()[0]
        for key, entry in enumerate(entries):
            if key not in finished:
                yield entry, FileResult(str(entry.path), "failed", error=error)
    finally:
        ray.shutdown()


def _absolute(settings: Settings, *fields: str) -> dict[str, Path]:
    """Paths as the driver sees them: actors need not share its working directory (hub ids stay)."""
    paths = {f: getattr(settings, f) for f in fields}
    return {f: p.resolve() for f, p in paths.items() if p is not None and p.exists()}


def _finish(entry: Entry, row: dict[str, Any], config: BatchConfig) -> FileResult:
    from tuned_whisper.formats import write_transcript

    duration = float(row["duration_s"]) or None
    if row["error"]:
        return FileResult(str(entry.path), "failed", duration, str(row["error"]))
    transcript: Transcript = pickle.loads(row["transcript"])
    try:
        written = [
            write_transcript(transcript, f, config.output_dir / entry.out_dir, entry.stem)
            for f in config.formats
        ]
    except OSError as exc:
        return FileResult(str(entry.path), "failed", duration, f"could not write the output: {exc}")
    seconds = round(float(row["seconds"]), 3)
    outputs = tuple(str(p) for p in written)
    return FileResult(str(entry.path), "done", transcript.duration, "", seconds, transcript.language, outputs)


def _skipped(entry: Entry, config: BatchConfig, before: dict[str, str] | None) -> FileResult:
    outputs = tuple(str(p) for p in entry.outputs(config.output_dir, config.formats))
    duration = float(before["duration_s"]) if before and before.get("duration_s") else None
    language = (before or {}).get("language") or None
    return FileResult(str(entry.path), "skipped", duration, language=language, outputs=outputs)


# --- the report --------------------------------------------------------------------------------


def read_report(path: Path) -> dict[str, dict[str, str]]:
    """An earlier run's rows by file (so that skipped files keep their duration and language)."""
    if not path.is_file():
        return {}
    with path.open(encoding="utf-8", newline="") as handle:
        return {row["file"]: row for row in csv.DictReader(handle) if row.get("file")}


def write_report(path: Path, results: Sequence[FileResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REPORT_COLUMNS)
        for r in results:
            duration = "" if r.duration_s is None else f"{r.duration_s:.3f}"
            seconds = "" if r.seconds is None else f"{r.seconds:.3f}"
            writer.writerow(
                [r.file, duration, r.status, r.error, seconds, r.language or "", ";".join(r.outputs)]
            )
