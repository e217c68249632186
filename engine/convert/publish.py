"""Write the converted model, and publish any built directory atomically.

Everything is built in a staging directory beside the destination and renamed into
place whole, with a completion marker written last: readers see either no model or a
complete one, never a half-written conversion, and a killed process leaves no model.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.convert.ct2_format import float32_variables, read_ct2_model_bin
from engine.convert.hf_configs import (
    build_generation_config,
    build_model_config,
    build_preprocessor_config,
    is_multilingual,
)
from engine.convert.tensors import build_state_dict
from engine.convert.tokenizer import (
    SpecialTokens,
    merges_lines,
    tokenizer_files,
    build_tokenizer_json,
    complete_vocabulary,
    find_special_tokens,
    read_vocabulary,
)

log = logging.getLogger(__name__)

# Bump when the output layout changes: existing conversions are then redone.
CONVERTER_VERSION = 1
MARKER_NAME = ".ct2-conversion-complete.json"
# A conversion takes seconds; staging dirs older than this were left by a killed process.
_STALE_STAGING_S = 3600.0


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
    for name, data in tokenizer_files(tokenizer).items():
        _write_json(dst / name, data)
    merges = merges_lines(tokenizer)
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
