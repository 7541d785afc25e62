"""An adapter uploaded as an archive into the registry directory: unpacked without trusting its names,
checked like the registry checks a directory, and moved in whole, so the registry never sees half of it.

The archive (`.zip`, `.tar`, `.tar.gz`) holds what `finetune/train.py` writes: `adapter_config.json`,
`adapter_model.safetensors` (or `.bin`) and, ideally, `training_summary.json`; at its top or inside one
folder. Links, devices, absolute paths and `..` are refused, and so is more than `MAX_UNPACKED_BYTES`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from tuned_whisper.adapters import FORCED_MARKER, SUMMARY_FILE, Adapter, AdapterError, read_summary

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""An adapter's name: its model id and its directory's name."""
MAX_UNPACKED_BYTES = 2 * 1024**3
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class AdapterExists(AdapterError):
    """The registry already holds an adapter of that name."""


class AdapterWorseThanBase(AdapterError):
    """Its training summary records a dev WER above its base's, and it was not forced."""


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise AdapterError(
            f"{name!r} is not an adapter name: 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def install(root: Path, name: str, archive: Path, *, force: bool = False) -> Adapter:
    """Unpack `archive` as the registry's adapter `name`; `force` serves it even if it is worse than its
    base (it keeps a marker so that the registry does too)."""
    check_name(name)
    root.mkdir(parents=True, exist_ok=True)
    if (root / name).exists() or (root / name).is_symlink():
        raise AdapterExists(f"an adapter named {name!r} is already served; delete it first")
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))  # hidden: the registry skips it
    try:
        _unpack(archive, staging)
        adapter = _check(staging, name)
        if adapter.worse_than_base and not force:
            raise AdapterWorseThanBase(
                f"{name!r} reads worse than its base on its dev set ({_wers(adapter)}); "
                "send force=true to serve it anyway"
            )
        if force:
            (staging / FORCED_MARKER).touch()
        try:
            os.rename(staging, root / name)  # whole, at once; fails if the name was taken meanwhile
        except OSError as exc:
            raise AdapterExists(f"an adapter named {name!r} is already served; delete it first") from exc
        return Adapter(name, root / name, adapter.summary)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def remove(root: Path, name: str) -> bool:
    """Stop serving `name` (its directory is deleted; a link to one elsewhere is only unlinked)."""
    path = root / check_name(name)
    if path.is_symlink():
        path.unlink()
        return True
    if not path.is_dir():
        return False
    shutil.rmtree(path)
    return True


def _wers(adapter: Adapter) -> str:
    summary = adapter.summary or {}
    before = (summary.get("before") or {}).get("wer")
    after = (summary.get("best") or {}).get("wer")
    return f"WER {after} against {before}"


def _check(directory: Path, name: str) -> Adapter:
    config = directory / "adapter_config.json"
    if not config.is_file():
        raise AdapterError(
            "the archive has no adapter_config.json (a PEFT LoRA adapter, as finetune/ writes)"
        )
    if not any((directory / weights).is_file() for weights in WEIGHTS):
        raise AdapterError(f"the archive has no adapter weights ({' or '.join(WEIGHTS)})")
    try:
        settings = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AdapterError(f"adapter_config.json is not valid JSON: {exc}") from exc
    if not isinstance(settings, dict) or settings.get("peft_type") != "LORA":
        raise AdapterError("adapter_config.json does not describe a LoRA adapter (peft_type 'LORA')")
    try:
        summary = read_summary(directory)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AdapterError(f"{SUMMARY_FILE} is not valid JSON: {exc}") from exc
    return Adapter(name, directory, summary if isinstance(summary, dict) else None)


def _unpack(archive: Path, into: Path) -> None:
    total = 0
    for relative, source in _members(archive):
        target = into.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            while chunk := source.read(1024 * 1024):
                total += len(chunk)
                if total > MAX_UNPACKED_BYTES:
                    raise AdapterError(f"the archive unpacks to more than {MAX_UNPACKED_BYTES} bytes")
                out.write(chunk)
    _lift_single_folder(into)


def _members(archive: Path) -> Iterator[tuple[PurePosixPath, IO[bytes]]]:
    """(safe relative path, readable file) for each regular file of the archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                if info.is_dir():
                    continue
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise AdapterError(f"the archive holds a link ({info.filename}); send plain files")
                with zipped.open(info) as source:
                    yield _safe(info.filename), source
        return
    try:
        with tarfile.open(archive) as tarred:
            for member in tarred:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise AdapterError(
                        f"the archive holds a link or device ({member.name}); send plain files"
                    )
                source = tarred.extractfile(member)
                assert source is not None
                with source:
                    yield _safe(member.name), source
    except tarfile.TarError as exc:
        raise AdapterError(f"not a zip or tar archive ({exc})") from exc


def _safe(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or ":" in path.parts[0]:
        raise AdapterError(f"the archive holds a path outside itself ({name!r})")
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def _lift_single_folder(directory: Path) -> None:
    """An archive of one folder (`my-adapter/adapter_config.json`, ...) is that folder's content."""
    entries = list(directory.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not (directory / "adapter_config.json").exists():
        inner = entries[0]
        for item in inner.iterdir():
            item.rename(directory / item.name)
        inner.rmdir()
