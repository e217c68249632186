"""Word times on the real engine (embedded tiny.en on vLLM + the teacher-forced aligner).

Each clip is placed between known stretches of silence, so where its speech starts
and ends in the joined audio is known from the audio (bench/word_times.py measures
the same on 175 clips).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from bench.word_times import constructed
from engine.audio import load_audio
from engine.base import SAMPLE_RATE, DecodeRequest

#: Tolerances for one clip here (the bench scores 0.10 / 0.15 s over many clips).
ONSET_TOLERANCE_S = 0.2
OFFSET_TOLERANCE_S = 0.3


def _norm(text: str) -> list[str]:
    return [w for w in (re.sub(r"[^\w']", "", x.lower()) for x in text.split()) if w]


def _check_words(result, duration: float) -> None:
    words = result.words
    assert words, result
    # The words are the text, in order.
    assert _norm(" ".join(w.word for w in words)) == _norm(result.text)
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= duration + 1e-6 for w in words), words
    assert all(a.end <= b.start + 1e-6 for a, b in zip(words, words[1:])), words
    assert all(0.0 <= w.probability <= 1.0 for w in words)


async def test_words_of_a_final_are_timed_inside_the_audio(engine, english_clips) -> None:
    clip = min((c for c in english_clips if 4 <= c.duration <= 12), key=lambda c: abs(c.duration - 8))
    audio, onset, offset = constructed(load_audio(str(clip.path)), 3)
    result = await engine.transcribe(DecodeRequest(audio, language="en", word_timestamps=True))
    _check_words(result, len(audio) / SAMPLE_RATE)
    assert abs(result.words[0].start - onset) <= ONSET_TOLERANCE_S, (result.words[0], onset)
    assert abs(result.words[-1].end - offset) <= OFFSET_TOLERANCE_S, (result.words[-1], offset)
    # Without the flag, no words and no aligner pass.
    assert (await engine.transcribe(DecodeRequest(audio, language="en"))).words == []


async def test_long_form_words_are_in_the_whole_recordings_timeline(engine, english_clips) -> None:
    """Two clips 25 s apart: the long-form path decodes them as separate pieces, and the
    second one's words sit after 25 s, near where its speech is."""
    first, second = sorted(english_clips, key=lambda c: c.duration)[-2:]
    a, onset_a, _ = constructed(load_audio(str(first.path)), 0)
    b, onset_b, offset_b = constructed(load_audio(str(second.path)), 1)
    gap = np.zeros(int(25 * SAMPLE_RATE) - len(a), dtype=np.float32)
    audio = np.concatenate([a, gap, b])
    result = await engine.transcribe(DecodeRequest(audio, language="en", word_timestamps=True))
    _check_words(result, len(audio) / SAMPLE_RATE)
    later = [w for w in result.words if w.start >= 25.0]
    assert later and abs(later[0].start - (25.0 + onset_b)) <= ONSET_TOLERANCE_S, (later[0], 25.0 + onset_b)
    assert abs(result.words[-1].end - (25.0 + offset_b)) <= OFFSET_TOLERANCE_S
    assert abs(result.words[0].start - onset_a) <= ONSET_TOLERANCE_S


async def test_the_aligner_reuses_vllms_encoder_output_and_gets_the_same_words(engine, english_clips) -> None:
    """The aligner takes the encoder output vLLM just computed for the window (keyed by the
    same features) instead of encoding again, and the words are the ones its own encoder
    pass gives; a long file's 30 s pieces find theirs too."""
    from engine.aligner import _aligners
    from engine.encoder_outputs import SHARED

    # Audio no other test decodes (scaled by a factor of its own): vLLM serves audio it has
    # seen before from its own encoder cache, and then no encoder runs here to keep (the
    # aligner encodes such a window itself; in the whole suite this test's clips had been).
    unique = np.float32(1.0 + 3e-4)
    clip = min((c for c in english_clips if 3 <= c.duration <= 10), key=lambda c: abs(c.duration - 6))
    audio = constructed(load_audio(str(clip.path)), 5)[0] * unique
    await engine.transcribe(DecodeRequest(audio[: SAMPLE_RATE], language="en", word_timestamps=True))  # the aligner is loaded
    aligner = next(iter(_aligners.values()))
    assert SHARED.enabled  # a request for words turned the store on

    reused, encoded = aligner.reused, aligner.encoded
    again = await engine.transcribe(DecodeRequest(audio, language="en", word_timestamps=True))
    assert (aligner.reused - reused, aligner.encoded - encoded) == (1, 0)

    limit, SHARED.max_bytes = SHARED.max_bytes, 0  # nothing kept: the aligner's own encoder pass, for comparison
    try:
        SHARED.clear()
        own = await engine.transcribe(DecodeRequest(audio, language="en", word_timestamps=True))
    finally:
        SHARED.max_bytes = limit
    assert aligner.encoded - encoded == 1
    assert [(w.word, w.start, w.end) for w in again.words] == [(w.word, w.start, w.end) for w in own.words]
    # vLLM's encoder runs bf16 on a CPU with AVX-512 BF16 (CPU_DTYPE=auto), the aligner's own
    # pass float32: the same words and times, probabilities within bf16's precision.
    same_dtype = engine.info.settings["encoder_dtype"] == "float32"
    assert max(abs(a.probability - b.probability) for a, b in zip(again.words, own.words)) < (0.01 if same_dtype else 0.05)

    # A long file: every piece's window is found (30 s windows, batched), even where the
    # store was off until this request: a request for words turns it on before its first
    # decode (the aligner itself loads only when the first window's words are asked).
    first, second = sorted(english_clips, key=lambda c: c.duration)[-2:]
    long_audio = np.concatenate([load_audio(str(first.path)), np.zeros(22 * SAMPLE_RATE, np.float32), load_audio(str(second.path))]) * unique
    SHARED.enabled = False
    reused, encoded = aligner.reused, aligner.encoded
    result = await engine.transcribe(DecodeRequest(long_audio, language="en", word_timestamps=True))
    _check_words(result, len(long_audio) / SAMPLE_RATE)
    assert aligner.reused - reused >= 2 and aligner.encoded == encoded, (aligner.reused - reused, aligner.encoded - encoded)
