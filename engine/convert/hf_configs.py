"""config.json, generation_config.json and preprocessor_config.json of the converted model."""

from __future__ import annotations

from typing import Any

from engine.convert.tensors import WhisperDims
from engine.convert.tokenizer import SpecialTokens
from settings import SAMPLE_RATE


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
        "sampling_rate": SAMPLE_RATE,
        "n_fft": 400,
        "hop_length": 160,
        "chunk_length": 30,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": False,
    }
