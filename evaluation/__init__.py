"""Scoring and evaluation data, outside the product path.

`evaluation.text` scores transcripts (word error rate after Whisper's English
normaliser); `evaluation.evalset` reads an evaluation set (a `manifest.jsonl` of clips
with references, and `longform.jsonl`). Tests, benchmarks and `python -m streaming
simulate --reference` share these, so a WER in a test, in BENCHMARKS.md and on the
command line mean the same thing. The app itself never needs this package.
"""

from evaluation.evalset import Clip, LongForm, clips, eval_dir, longform_files, read_audio
from evaluation.text import normalize, wer

__all__ = ["Clip", "LongForm", "clips", "eval_dir", "longform_files", "normalize", "read_audio", "wer"]
