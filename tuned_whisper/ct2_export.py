"""HF Whisper checkpoint (optionally with a LoRA adapter merged in) → CTranslate2 model directory.

`export_ctranslate2` is what `tuned-whisper checkpoint export-ct2` runs; `cached_export` is what the
CTranslate2 backend calls: one export per (source weights, adapter, quantization), kept in a cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tuned_whisper.checkpoint import CheckpointError, is_checkpoint

QUANTIZATIONS = ("int8", "int8_float16", "int8_float32", "float16", "float32")
PROVENANCE_FILE = "export.json"
_COPIED = ("tokenizer.json", "preprocessor_config.json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def source_sha256(checkpoint: Path, adapter: Path | None = None) -> str:
    """One digest of the weights an export depends on: the checkpoint's, and the adapter's if any."""
    parts = [file_sha256(checkpoint / "model.safetensors")]
    if adapter is not None:
        parts += [file_sha256(f) for f in sorted(adapter.glob("adapter_model.*")) if f.is_file()]
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()


def _check(checkpoint: Path, quantization: str) -> None:
    if quantization not in QUANTIZATIONS:
        raise CheckpointError(
            f"unknown quantization '{quantization}'; choose one of {', '.join(QUANTIZATIONS)}"
        )
    if not is_checkpoint(checkpoint):
        raise CheckpointError(
            f"no Whisper checkpoint in '{checkpoint}'; build one with `tuned-whisper checkpoint build`"
        )


def _merged_copy(checkpoint: Path, adapter: Path, into: Path) -> Path:
    """The checkpoint with the adapter merged into its weights, written as a HF directory."""
    import torch

    from tuned_whisper.adapters import load_merged

    load_merged(checkpoint, adapter, torch.float32, "cpu").save_pretrained(str(into))
    for name in (*_COPIED, "generation_config.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (checkpoint / name).is_file():
            shutil.copyfile(checkpoint / name, into / name)
    return into


def export_ctranslate2(
    checkpoint: Path, output: Path, quantization: str = "int8", adapter: Path | None = None
) -> Path:
    """Convert with CTranslate2's own converter, then record where the export came from."""
    import ctranslate2

    _check(checkpoint, quantization)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".export-") as scratch:
        source = _merged_copy(checkpoint, adapter, Path(scratch) / "merged") if adapter else checkpoint
        staged = Path(scratch) / "ct2"
        copy = [name for name in _COPIED if (source / name).is_file()]
        ctranslate2.converters.TransformersConverter(str(source), copy_files=copy).convert(
            str(staged), quantization=quantization, force=True
        )
        provenance = {
            "source_checkpoint": str(checkpoint),
            "adapter": str(adapter) if adapter else None,
            "source_sha256": source_sha256(checkpoint, adapter),
            "quantization": quantization,
            "ctranslate2": importlib.metadata.version("ctranslate2"),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staged / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        if output.exists():
            shutil.rmtree(output)
        staged.rename(output)
    return output


def read_export(directory: Path) -> dict[str, object] | None:
    file = directory / PROVENANCE_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def cached_export(checkpoint: Path, quantization: str, cache_dir: Path, adapter: Path | None = None) -> Path:
    """The CTranslate2 export of this checkpoint (and adapter) at this quantization, made once."""
    _check(checkpoint, quantization)
    digest = source_sha256(checkpoint, adapter)
    target = cache_dir / f"{digest[:20]}-{quantization}"
    exported = read_export(target)
    if exported is not None and exported.get("source_sha256") == digest and (target / "model.bin").is_file():
        return target
    if not _writable(cache_dir):  # e.g. a read-only image with a checkpoint mounted at run time
        target = Path(tempfile.gettempdir()) / "tuned-whisper-ct2" / target.name
        if (read_export(target) or {}).get("source_sha256") == digest:
            return target
    return export_ctranslate2(checkpoint, target, quantization, adapter)


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)
