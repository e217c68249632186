"""`python -m engine.convert SRC DST`: convert once ahead of time (e.g. while building an image).

SRC is a CTranslate2 Whisper directory or `embedded:tiny.en` / `embedded:base`; the
embedded names are found the way `MODEL=embedded:...` finds them (engine.models).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from engine.convert.publish import convert_ct2_whisper
from engine.models import embedded_ct2_dir
from settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.convert", description="Convert a CTranslate2 Whisper checkpoint into a Hugging Face Whisper directory."
    )
    parser.add_argument("src", help="CTranslate2 Whisper directory, or embedded:tiny.en / embedded:base")
    parser.add_argument("dst", type=Path, help="output Hugging Face directory (created atomically)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where embedded:base is reassembled (default: MODEL_CACHE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cache_dir = args.cache_dir or Path(Settings.from_env().model_cache)
    source = None if Path(args.src).is_dir() else embedded_ct2_dir(args.src, cache_dir)
    print(convert_ct2_whisper(source or Path(args.src), args.dst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
