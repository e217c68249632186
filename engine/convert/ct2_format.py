"""Read a CTranslate2 `model.bin` without the ctranslate2 package.

Why it parses `model.bin` by hand: `ctranslate2` / `faster_whisper` are test-only
dependencies, so the runtime must not import them. The format is small and stable; it
is written by `ModelSpec._serialize` (python/ctranslate2/specs/model_spec.py) and read
by `Model::load` (src/models/model.cc) in OpenNMT/CTranslate2:

    u32 binary_version
    [version >= 2]  str spec_name, u32 spec_revision
    u32 n_variables, then per variable:
        str name, u8 rank, u32 dims[rank],
        [version >= 4]  u8 dtype_id, u32 n_bytes      (ids: float32 int8 int16 int32 float16 bfloat16)
        [version <  4]  u8 item_size, u32 n_items     (4: float32, 2: int16, 1: int8)
        bytes data
    [version >= 3]  u32 n_aliases, then per alias: str alias, str target
    where str = u16 length (NUL included), bytes, NUL; everything little-endian.

The Whisper variable layout is the one produced by `WhisperLoader` in
python/ctranslate2/converters/transformers.py (q/k/v fused in self-attention, k/v fused
in cross-attention, LayerNorm as gamma/beta, output projection aliased to the token
embedding).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# CTranslate2 DataType enum order (include/ctranslate2/types.h, model_spec._dtype_to_type_id).
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16: raw 16-bit patterns, widened in _to_float32
}
_BFLOAT16_ID = 5
_LEGACY_ITEM_SIZES = {4: 0, 2: 2, 1: 1}  # binary version < 4: item size -> dtype id


@dataclass
class Ct2Checkpoint:
    """The raw content of a CTranslate2 `model.bin`: variables by name, aliases resolved."""

    binary_version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    dtype_ids: dict[str, int] = field(default_factory=dict)


class _Reader:
    """Sequential little-endian reader over a bytes buffer, failing loudly on truncation."""

    def __init__(self, data: bytes | memoryview, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise ValueError(f"{self.path}: truncated at byte {self.pos} (wanted {n} more bytes)")
        view = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def u8(self) -> int:
        return self.unpack("B")[0]

    def u32(self) -> int:
        return self.unpack("I")[0]

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = bytes(self.take(length))
        return raw.split(b"\0", 1)[0].decode("utf-8")


def _read_variable(reader: _Reader, version: int) -> tuple[str, int, np.ndarray]:
    """One serialized variable -> (name, CTranslate2 dtype id, array viewing the buffer)."""
    name = reader.string()
    rank = reader.u8()
    shape = reader.unpack(f"{rank}I") if rank else ()
    if version >= 4:
        dtype_id = reader.u8()
        n_bytes = reader.u32()
    else:
        item_size = reader.u8()
        if item_size not in _LEGACY_ITEM_SIZES:
            raise ValueError(f"{reader.path}: {name}: unknown item size {item_size}")
        dtype_id = _LEGACY_ITEM_SIZES[item_size]
        n_bytes = reader.u32() * item_size
    if dtype_id not in _DTYPES:
        raise ValueError(f"{reader.path}: {name}: unsupported CTranslate2 dtype id {dtype_id}")
    dtype = _DTYPES[dtype_id]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if n_bytes != expected:
        raise ValueError(f"{reader.path}: {name}: {n_bytes} bytes for shape {shape} {dtype}")
    array = np.frombuffer(reader.take(n_bytes), dtype=dtype).reshape(shape)
    return name, dtype_id, array


def read_ct2_model_bin(path: Path) -> Ct2Checkpoint:
    """Parse a CTranslate2 `model.bin` without the ctranslate2 package (see module doc)."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), path)
    version = reader.u32()
    if not 1 <= version <= 6:
        raise ValueError(f"{path}: unsupported CTranslate2 binary version {version}")
    spec, revision = (reader.string(), reader.u32()) if version >= 2 else ("", 1)
    ckpt = Ct2Checkpoint(binary_version=version, spec=spec, revision=revision)
    for _ in range(reader.u32()):
        name, dtype_id, array = _read_variable(reader, version)
        ckpt.variables[name] = array
        ckpt.dtype_ids[name] = dtype_id
    if version >= 3:
        _apply_aliases(reader, ckpt)
    if reader.pos != len(reader.data):
        raise ValueError(f"{path}: {len(reader.data) - reader.pos} unexpected trailing bytes")
    return ckpt


def _apply_aliases(reader: _Reader, ckpt: Ct2Checkpoint) -> None:
    """Resolve aliases the way CTranslate2 does, including the `_scale` companion alias.

    Aliases are how CTranslate2 stores duplicated tensors once (e.g. the output projection
    that is tied to the token embedding), so they must be followed to get every weight.
    """
    for _ in range(reader.u32()):
        alias, target = reader.string(), reader.string()
        for suffix in ("", "_scale"):
            if target + suffix in ckpt.variables:
                ckpt.variables[alias + suffix] = ckpt.variables[target + suffix]
                ckpt.dtype_ids[alias + suffix] = ckpt.dtype_ids[target + suffix]


def _to_float32(array: np.ndarray, dtype_id: int) -> np.ndarray:
    """Widen float16/bfloat16/float32 storage to float32 (bfloat16 = upper half of a float32)."""
    if dtype_id == _BFLOAT16_ID:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def _dequantize(weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Undo CTranslate2 quantization: it stored rint(w * scale), so w = q / scale.

    int8 uses one scale per output row (amax over axis 1); int16 uses one scalar.
    """
    q = weight.astype(np.float32)
    scale = scale.astype(np.float32)
    if scale.ndim == 0:
        return q / scale
    if scale.shape == weight.shape[:1] + weight.shape[2:]:
        return q / np.expand_dims(scale, 1)
    if scale.size == weight.shape[0]:
        return q / scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    raise ValueError(f"cannot apply a scale of shape {scale.shape} to a weight of shape {weight.shape}")


def float32_variables(ckpt: Ct2Checkpoint) -> dict[str, np.ndarray]:
    """All tensor variables as float32, int8/int16 weights dequantized with their `_scale`.

    Scalars (attributes such as `num_heads`) and integer tensors are returned as is.
    """
    out: dict[str, np.ndarray] = {}
    for name, array in ckpt.variables.items():
        dtype_id = ckpt.dtype_ids[name]
        if name.endswith("_scale") and name[: -len("_scale")] in ckpt.variables:
            continue  # consumed by its weight
        if array.ndim == 0 or dtype_id == 3:
            out[name] = array
        elif dtype_id in (1, 2):
            scale = ckpt.variables.get(name + "_scale")
            if scale is None:
                raise ValueError(f"{name}: quantized weight without {name}_scale")
            out[name] = _dequantize(array, scale)
        else:
            out[name] = _to_float32(array, dtype_id)
    return out
