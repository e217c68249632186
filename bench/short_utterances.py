"""A streaming test recording of many short utterances (1-3.5 s), as phone menus and dictation commands are.

The bench's default streaming excerpt (the mixed long-form file) has long utterances;
live speech is mostly short ones, where a final's fixed costs (the 30 s encoder window
stock Whisper pads every clip to, the VAD's end-of-speech wait) dominate. This set
joins the evaluation set's English clips of at most 3.5 s, their quiet edges trimmed,
with pauses of 0.8-1.6 s (seeded, so every run streams the same recording), and gives
the utterance times the streaming bench measures final latency against.

`python -m bench --stream-set short` streams it instead of the excerpt.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np

SR = 16_000
MAX_CLIP_S = 3.5
PAUSE_S = (0.8, 1.6)


def build(target_s: float = 60.0, seed: int = 0, eval_dir: Path | None = None) -> tuple[Path, list[dict], str, float]:
    """Write the recording (a WAV under the temp dir) and return (path, segments, reference, duration)."""
    import soundfile

    from bench.coverage import trimmed
    from evaluation import clips, read_audio

    short = [c for c in clips(kind="speech", lang="en", base=eval_dir) if c.duration <= MAX_CLIP_S]
    if not short:
        raise RuntimeError("no English clips of at most 3.5 s in the evaluation set")
    rng = random.Random(seed)
    rng.shuffle(short)
    parts: list[np.ndarray] = [np.zeros(int(0.5 * SR), np.float32)]
    segments: list[dict] = []
    t = 0.5
    for clip in short:
        audio = trimmed(read_audio(clip.path))
        segments.append({"start": round(t, 3), "end": round(t + len(audio) / SR, 3), "text": clip.text, "kind": "speech"})
        pause = rng.uniform(*PAUSE_S)
        parts += [audio, np.zeros(int(pause * SR), np.float32)]
        t += len(audio) / SR + pause
        if t >= target_s:
            break
    audio = np.concatenate(parts)
    out_dir = Path(tempfile.gettempdir()) / "rt-whisper-bench"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"short_utterances_{int(target_s)}s_seed{seed}.wav"
    soundfile.write(str(path), audio, SR, subtype="FLOAT")
    reference = " ".join(s["text"] for s in segments)
    return path, segments, reference, round(len(audio) / SR, 3)
