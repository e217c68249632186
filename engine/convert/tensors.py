"""CTranslate2 Whisper variables -> the Hugging Face state dict, with the model's dimensions.

The architecture is read from tensor shapes, and every CTranslate2 variable must be
used by the mapping: a checkpoint with tensors the mapping does not know (a low-rank
"lite" Whisper...) is refused rather than converted with weights silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_CT2_GELU = 3  # common_spec.Activation.GELU


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
