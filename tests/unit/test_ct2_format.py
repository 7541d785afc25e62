"""Reading CTranslate2's model.bin: synthetic files in the documented layout, then the real packaged one."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tuned_whisper.ct2_format import CT2FormatError, CT2Model, read_ct2_model

# ctranslate2's DataType ids (include/ctranslate2/types.h); numpy has no bfloat16, see Bfloat16.
DTYPE_IDS = {np.float32: 0, np.int8: 1, np.int16: 2, np.int32: 3, np.float16: 4}
BFLOAT16_ID = 5


@dataclass(frozen=True)
class Bfloat16:
    """A bfloat16 variable, held as the float32 values it stands for (each exactly representable)."""

    values: np.ndarray

    def bits(self) -> np.ndarray:
        return (self.values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def ct2_string(text: str) -> bytes:
    data = text.encode("utf-8") + b"\0"
    return struct.pack("<H", len(data)) + data


def ct2_variable(name: str, value: np.ndarray | Bfloat16) -> bytes:
    if isinstance(value, Bfloat16):
        shape, dtype_id, raw = value.values.shape, BFLOAT16_ID, value.bits().tobytes()
    else:
        shape, dtype_id, raw = value.shape, DTYPE_IDS[value.dtype.type], value.tobytes()
    header = struct.pack("<B", len(shape)) + b"".join(struct.pack("<I", dim) for dim in shape)
    return ct2_string(name) + header + struct.pack("<BI", dtype_id, len(raw)) + raw


def model_bin(
    variables: dict[str, np.ndarray | Bfloat16],
    aliases: dict[str, str] | None = None,
    *,
    spec: str = "WhisperSpec",
    revision: int = 3,
    version: int = 6,
) -> bytes:
    """A model.bin as ctranslate2's `ModelSpec._serialize` writes it."""
    aliases = aliases or {}
    parts = [struct.pack("<I", version), ct2_string(spec), struct.pack("<II", revision, len(variables))]
    parts += [ct2_variable(name, value) for name, value in variables.items()]
    parts.append(struct.pack("<I", len(aliases)))
    parts += [ct2_string(alias) + ct2_string(target) for alias, target in aliases.items()]
    return b"".join(parts)


VARIABLES: dict[str, np.ndarray | Bfloat16] = {
    "decoder/embeddings/weight": np.array([[0.5, -1.25, 3.0], [65504.0, -0.0, 1e-3]], dtype=np.float16),
    "encoder/conv1/weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
    "encoder/layer_0/ffn/linear_0/weight": np.array([[-128, 0, 127], [1, -1, 64]], dtype=np.int8),
    "encoder/layer_0/ffn/linear_0/weight_scale": np.array([0.25, 1.5], dtype=np.float32),
    "encoder/layer_0/ffn/linear_1/weight": np.array([-32768, 0, 32767], dtype=np.int16),
    "decoder/alignment_heads": np.array([[3, 1], [4, 2], [5, 6]], dtype=np.int32),
    "decoder/layer_norm/gamma": Bfloat16(np.array([1.0, -2.5, 0.15625, 2.0**100, -np.inf], dtype=np.float32)),
    "encoder/num_heads": np.array(8, dtype=np.int8),
    "decoder/alignment_layer": np.array(-1, dtype=np.int16),
    "encoder/layer_norm/epsilon": np.array(1e-5, dtype=np.float32),
    "décodeur/ünïcode": np.array([7], dtype=np.int32),
}
ALIASES = {"decoder/projection/weight": "decoder/embeddings/weight"}


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(model_bin(VARIABLES, ALIASES))
    return path


def _expected(value: np.ndarray | Bfloat16) -> np.ndarray:
    return value.values if isinstance(value, Bfloat16) else value


def test_reader_returns_every_variable_exactly_as_written(written: Path) -> None:
    model = read_ct2_model(written)

    assert (model.spec_name, model.spec_revision) == ("WhisperSpec", 3)
    assert set(model.variables) == set(VARIABLES) | set(ALIASES)
    for name, value in VARIABLES.items():
        expected, got = _expected(value), model.variables[name]
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected, err_msg=name, strict=True)


def test_bfloat16_is_widened_to_the_float32_it_stands_for(written: Path) -> None:
    gamma = read_ct2_model(written).variables["decoder/layer_norm/gamma"]

    assert gamma.dtype == np.float32
    assert gamma.tolist() == [1.0, -2.5, 0.15625, 2.0**100, -np.inf]


def test_scalars_read_as_python_numbers(written: Path) -> None:
    model = read_ct2_model(written)

    assert model.variables["encoder/num_heads"].shape == ()
    assert model.scalar("encoder/num_heads") == 8
    assert model.scalar("decoder/alignment_layer") == -1
    assert model.scalar("encoder/layer_norm/epsilon") == pytest.approx(1e-5)


def test_an_alias_is_the_array_it_names(written: Path) -> None:
    variables = read_ct2_model(written).variables

    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]


def test_bytes_and_path_read_alike(written: Path) -> None:
    from_path, from_bytes = read_ct2_model(written), read_ct2_model(written.read_bytes())

    assert (from_bytes.spec_name, from_bytes.spec_revision) == (from_path.spec_name, from_path.spec_revision)
    for name, array in from_path.variables.items():
        np.testing.assert_array_equal(from_bytes.variables[name], array, strict=True)


def test_a_model_without_variables_or_aliases_is_empty() -> None:
    model = read_ct2_model(model_bin({}, spec="TransformerSpec", revision=7))

    assert model == CT2Model(spec_name="TransformerSpec", spec_revision=7, variables={})


@pytest.mark.parametrize("version", [1, 4, 7, 0xFFFFFFFF])
def test_unsupported_binary_version_is_refused(version: int) -> None:
    with pytest.raises(CT2FormatError, match=f"unsupported CTranslate2 binary version {version}"):
        read_ct2_model(model_bin(VARIABLES, ALIASES, version=version))


def _cut_points() -> dict[str, int]:
    """Offsets inside each part of the synthetic file where a download or copy might stop."""
    data = model_bin(VARIABLES, ALIASES)
    header = 4 + len(ct2_string("WhisperSpec")) + 8
    first = ct2_variable("decoder/embeddings/weight", VARIABLES["decoder/embeddings/weight"])
    name = len(ct2_string("decoder/embeddings/weight"))
    aliases = len(data) - sum(len(ct2_string(a) + ct2_string(t)) for a, t in ALIASES.items())
    return {
        "empty file": 0,
        "inside the version": 2,
        "inside the spec name": 4 + 5,
        "before the variables": header,
        "inside a variable name": header + 10,
        "inside a shape": header + name + 3,
        "inside a variable's data": header + len(first) - 3,
        "before the alias count": aliases - 4,
        "inside an alias name": aliases + 6,
        "inside an alias target": len(data) - 5,
        "one byte short": len(data) - 1,
    }


@pytest.mark.parametrize(("where", "cut"), _cut_points().items(), ids=list(_cut_points()))
def test_truncated_file_is_refused_as_a_format_error(where: str, cut: int) -> None:
    data = model_bin(VARIABLES, ALIASES)

    with pytest.raises(CT2FormatError):
        read_ct2_model(data[:cut])


def test_unknown_data_type_is_refused_as_a_format_error() -> None:
    data = bytearray(model_bin({"x": np.array([1], dtype=np.int8)}))
    dtype_at = 4 + len(ct2_string("WhisperSpec")) + 8 + len(ct2_string("x")) + 1 + 4
    data[dtype_at] = 42

    with pytest.raises(CT2FormatError):
        read_ct2_model(bytes(data))


# The real weights: the reassembled `base` model.bin the default checkpoint is converted from.


@pytest.fixture(scope="module")
def base_model() -> CT2Model:
    from tuned_whisper.checkpoint import SOURCES, reassemble

    return read_ct2_model(reassemble(SOURCES["base"]))


def test_reader_parses_the_packaged_whisper_base(base_model: CT2Model) -> None:
    variables = base_model.variables

    assert base_model.spec_name == "WhisperSpec"
    assert 200 <= len(variables) <= 230
    embeddings = variables["decoder/embeddings/weight"]
    assert (embeddings.shape, embeddings.dtype) == ((51865, 512), np.float16)
    assert variables["encoder/conv1/weight"].shape == (512, 80, 3)
    assert base_model.scalar("encoder/num_heads") == base_model.scalar("decoder/num_heads") == 8
    assert np.isfinite(embeddings).all()


def test_the_output_projection_is_an_alias_of_the_embeddings(base_model: CT2Model) -> None:
    variables = base_model.variables

    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]
