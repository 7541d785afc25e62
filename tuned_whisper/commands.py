"""What each CLI command does: parse nothing, call the library, print and return an exit code."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tuned_whisper.config import Settings
from tuned_whisper.types import TranscribeOptions

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_GATE = 0, 1, 2, 3


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags override env vars (`TW_*`), which override the defaults."""
    settings = Settings()
    engine = settings.engine.model_copy(
        update={
            key: value
            for key, value in {
                "device": args.device,
                "batch_size": args.batch_size,
                "num_threads": args.threads,
                "backend": getattr(args, "backend", None),
                "quantization": getattr(args, "quantization", None),
                "vad_filter": False if getattr(args, "no_vad", False) else None,
            }.items()
            if value is not None
        }
    )
    update: dict[str, object] = {"engine": engine}
    if args.checkpoint is not None:
        update["checkpoint"] = args.checkpoint
    if args.adapter is not None:
        update["adapter"] = args.adapter
    return settings.model_copy(update=update)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def options_from_args(args: argparse.Namespace) -> TranscribeOptions:
    from tuned_whisper.languages import language_code

    language = language_code(args.language) if args.language else None
    return TranscribeOptions(
        language=language,
        task=args.task,
        initial_prompt=args.prompt,
        temperature=args.temperature,
        word_timestamps=args.word_timestamps,
        adapter=_adapter(getattr(args, "model", None)),
    )


def _adapter(model: str | None) -> str | None:
    """The registry adapter `--model` names (None: the base); an unknown one is a usage error."""
    from tuned_whisper.adapters import BASE_ALIASES, AdapterRegistry

    if model is None or model in BASE_ALIASES:
        return None
    settings = Settings()
    registry = AdapterRegistry(settings.adapters_dir, settings.adapters_force)
    if registry.get(model) is None:
        offered = ", ".join(sorted(registry.adapters())) or "none"
        raise ValueError(f"no adapter {model!r} in {settings.adapters_dir} (offered: {offered})")
    return model


def _load_engine(args: argparse.Namespace):
    from tuned_whisper.engine import load_transcriber

    settings = settings_from_args(args)
    return settings, load_transcriber(settings)


def transcribe(args: argparse.Namespace) -> int:
    """Transcribe each file to `--output-dir`; a bad file is reported and skipped, the others still done."""
    from tqdm import tqdm

    from tuned_whisper.audio import AudioDecodeError, decode_audio_to_disk
    from tuned_whisper.formats import write_transcript

    try:
        options = options_from_args(args)
    except ValueError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    settings, engine = _load_engine(args)
    failures = 0
    for path in args.files:
        try:
            audio = decode_audio_to_disk(path, max_duration_s=settings.max_audio_s)
        except AudioDecodeError as exc:
            _fail(str(exc))
            failures += 1
            continue
        with tqdm(total=100, desc=path.name, unit="%", leave=False, file=sys.stderr) as bar:
            transcript = engine.transcribe(
                audio, options, progress=lambda f, bar=bar: bar.update(round(f * 100) - bar.n)
            )
        written = write_transcript(transcript, args.format, args.output_dir, path.stem)
        print(
            f"{path} -> {written} ({transcript.duration:.1f} s, language {transcript.language})",
            file=sys.stderr,
        )
    return EXIT_FAILED if failures else EXIT_OK


def batch(args: argparse.Namespace) -> int:
    """Transcribe files, folders and manifests on Ray Data; exit 1 when any file failed (see report.csv)."""
    from tqdm import tqdm

    from tuned_whisper.batch import (
        REPORT_FILE,
        BatchConfig,
        BatchUsageError,
        FileResult,
        discover,
        parse_formats,
        run_batch,
    )
    from tuned_whisper.checkpoint import CheckpointError

    try:
        options = options_from_args(args)
        formats = parse_formats(args.format)
        entries = discover(args.inputs)
        if args.workers < 1 or args.files_per_call < 1 or args.cpus_per_worker <= 0:
            raise BatchUsageError("--workers, --batch-size and --cpus-per-worker must be above 0")
    except ValueError as exc:  # BatchUsageError included
        _fail(str(exc))
        return EXIT_USAGE
    config = BatchConfig(
        args.output_dir, formats, args.address, args.workers, args.files_per_call, args.cpus_per_worker
    )
    with tqdm(total=len(entries), desc="transcribing", unit="file", file=sys.stderr) as bar:

        def show(result: FileResult) -> None:
            if result.status == "failed":
                bar.write(f"error: {result.file}: {result.error}", file=sys.stderr)
            bar.update(1)

        try:
            results = run_batch(entries, config, settings_from_args(args), options, on_result=show)
        except CheckpointError as exc:  # before any file: the model the workers would load is not there
            _fail(str(exc))
            return EXIT_FAILED
    report = config.output_dir / REPORT_FILE
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f"; report: {report}", file=sys.stderr)
    if counts["failed"]:
        _fail(f"{counts['failed']} of {len(results)} files failed; the errors are in {report}")
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _transcribe_dataset(
    engine: object, utterances: list, options: TranscribeOptions, batch: int
) -> list[str]:
    from tqdm import tqdm

    from tuned_whisper.audio import decode_audio

    hypotheses: list[str] = []
    with tqdm(total=len(utterances), desc="evaluating", unit="utt", file=sys.stderr) as bar:
        for start in range(0, len(utterances), batch):
            group = utterances[start : start + batch]
            requests = [(decode_audio(u.audio_path), options) for u in group]
            hypotheses.extend(t.text for t in engine.transcribe_many(requests))  # type: ignore[attr-defined]
            bar.update(len(group))
    return hypotheses


def evaluate(args: argparse.Namespace) -> int:
    """Print WER/CER of the checkpoint on a dataset; with --max-wer, fail when it is worse than that."""
    from tuned_whisper.audio import AudioDecodeError
    from tuned_whisper.datasets import DatasetError, load_utterances
    from tuned_whisper.evaluation import format_table, score

    try:
        options = options_from_args(args)
        utterances = load_utterances(args.data)[: args.limit]
    except (DatasetError, ValueError) as exc:
        _fail(str(exc))
        return EXIT_USAGE
    settings, engine = _load_engine(args)
    try:
        hypotheses = _transcribe_dataset(engine, utterances, options, settings.engine.batch_size)
    except AudioDecodeError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    rates = score([u.text for u in utterances], hypotheses)
    if args.json:
        print(json.dumps({"data": str(args.data), "checkpoint": str(settings.checkpoint), **rates.to_dict()}))
    else:
        print(format_table(rates, f"{args.data} ({settings.checkpoint})"))
    if args.max_wer is not None and rates.wer > args.max_wer:
        _fail(f"WER {rates.wer:.4f} is above the gate --max-wer {args.max_wer}")
        return EXIT_GATE
    return EXIT_OK


def checkpoint(args: argparse.Namespace) -> int:
    from tuned_whisper.checkpoint import (
        CheckpointError,
        build_checkpoint,
        is_checkpoint,
        is_current,
        read_provenance,
    )

    if args.action == "export-ct2":
        return _export_ct2(args)
    if args.action == "info":
        provenance = read_provenance(args.path)
        if not is_checkpoint(args.path):
            _fail(f"no checkpoint in '{args.path}'; build one with `tuned-whisper checkpoint build`")
            return EXIT_FAILED
        print(json.dumps(provenance.to_dict() if provenance else {"source": "unknown"}, indent=2))
        return EXIT_OK
    if args.if_missing and is_current(args.output):
        print(f"{args.output} already holds a checkpoint", file=sys.stderr)
        return EXIT_OK
    try:
        force = args.force or (
            args.if_missing and is_checkpoint(args.output)
        )  # converted by an older version
        provenance = build_checkpoint(args.source, Path(args.output), force=force)
    except CheckpointError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    print(f"built {args.output} from {provenance.source} (sha256 {provenance.sha256})", file=sys.stderr)
    return EXIT_OK


def _export_ct2(args: argparse.Namespace) -> int:
    """Convert a checkpoint for the CTranslate2 backend; without --output, into the backend's cache."""
    from tuned_whisper.checkpoint import CheckpointError
    from tuned_whisper.ct2_export import cached_export, export_ctranslate2, read_export

    checkpoint = args.checkpoint.resolve()
    try:
        if args.output is None:
            cache = Settings().engine.ct2_cache_dir
            written = cached_export(checkpoint, args.quantization, cache, args.adapter)
        else:
            written = export_ctranslate2(checkpoint, args.output, args.quantization, args.adapter)
    except (CheckpointError, ValueError) as exc:
        _fail(str(exc))
        return EXIT_FAILED
    print(json.dumps({"output": str(written), **(read_export(written) or {})}, indent=2))
    return EXIT_OK


def stream(args: argparse.Namespace) -> int:
    """Send audio to `/v1/realtime` at `--speed` times real time; print each turn as it completes."""
    import os

    from tuned_whisper.live_client import LiveClientError, read_source, stream_to_server

    try:
        audio = read_source(args.file, stdin_rate=args.rate)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
        return EXIT_FAILED
    api_key = args.api_key or os.environ.get("TW_API__API_KEY")
    try:
        for line in stream_to_server(
            audio,
            args.url,
            api_key=api_key,
            speed=args.speed,
            encoding=args.encoding,
            rate=args.rate,
            language=args.language,
            partials=args.partials,
        ):
            print(line, flush=True)
    except LiveClientError as exc:
        _fail(str(exc))
        return EXIT_FAILED
    return EXIT_OK
