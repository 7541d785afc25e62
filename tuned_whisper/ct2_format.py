"""Reader for CTranslate2's binary `model.bin` (format version 6, see `ctranslate2.specs.model_spec`).

Little-endian: u32 version, string spec name, u32 spec revision, u32 variable count, then per variable:
string name, u8 rank, u32 dims[rank], u8 dtype id, u32 byte count, raw bytes; then u32 alias count and
(alias, target) string pairs. A string is a u16 length (including a trailing NUL) and the UTF-8 bytes.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

SUPPORTED_VERSIONS = (5, 6)
# Order of ctranslate2's DataType enum (include/ctranslate2/types.h).
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, "bfloat16")


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model this reader understands."""


@dataclass(frozen=True)
class CT2Model:
    """The variables of a CTranslate2 model, with aliases resolved to the arrays they name."""

    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]

    def scalar(self, name: str) -> int | float:
        return self.variables[name].item()


def _read_bytes(f: BinaryIO, size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise CT2FormatError("unexpected end of file: the model.bin is truncated")
    return data


def _read(f: BinaryIO, fmt: str) -> int:
    return struct.unpack("<" + fmt, _read_bytes(f, struct.calcsize(fmt)))[0]


def _read_string(f: BinaryIO) -> str:
    data = _read_bytes(f, _read(f, "H"))
    try:
        if not data.endswith(b"\0"):
            raise ValueError("no terminating NUL")
        return data[:-1].decode("utf-8")
    except ValueError as exc:
        raise CT2FormatError(f"malformed name {data!r}: {exc}") from exc


def _to_array(raw: bytes, dtype_id: int, shape: list[int]) -> np.ndarray:
    if dtype_id >= len(_DTYPES):
        raise CT2FormatError(f"unknown data type id {dtype_id}")
    dtype = _DTYPES[dtype_id]
    itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    if len(raw) != math.prod(shape) * itemsize:
        raise CT2FormatError(f"{len(raw)} bytes cannot hold a {dtype} array of shape {shape}")
    if dtype == "bfloat16":
        # bfloat16 is the top half of a float32: widen it losslessly.
        halves = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
        return halves.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def read_ct2_model(source: Path | bytes) -> CT2Model:
    """Parse a CTranslate2 `model.bin` (a path or its bytes) into named numpy arrays."""
    f: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    with f:
        version = _read(f, "I")
        if version not in SUPPORTED_VERSIONS:
            raise CT2FormatError(f"unsupported CTranslate2 binary version {version}")
        spec_name = _read_string(f)
        revision = _read(f, "I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(_read(f, "I")):
            name = _read_string(f)
            shape = [_read(f, "I") for _ in range(_read(f, "B"))]
            dtype_id = _read(f, "B")
            variables[name] = _to_array(_read_bytes(f, _read(f, "I")), dtype_id, shape)
        for _ in range(_read(f, "I")):
            alias, target = _read_string(f), _read_string(f)
            if target not in variables:
                raise CT2FormatError(f"alias {alias!r} names a variable that is not in the file: {target!r}")
            variables[alias] = variables[target]
    return CT2Model(spec_name=spec_name, spec_revision=revision, variables=variables)
