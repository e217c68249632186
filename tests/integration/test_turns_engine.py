"""Semantic turns on the real parts: the real vLLM engine (tiny.en on CPU), the real VAD and
the real Smart Turn model. A speaker who pauses mid-sentence gets one final; the same
audio under the 500 ms silence rule gets two. The turn decision with a scripted model:
tests/unit/test_turns.py."""

from __future__ import annotations

import numpy as np

from evaluation import normalize
from streaming.session import SessionOptions
from streaming.turns import TurnDetector
from tests.unit.test_turns import COMPLETE, TRAILING_COMMA, clip, silence, stream


async def test_a_pause_mid_sentence_gives_one_final_on_the_real_model(engine) -> None:
    # "produced the block books, ... the true printed book," <0.65 s> "has never been surpassed."
    audio = np.concatenate([silence(0.5), clip(TRAILING_COMMA), silence(0.65), clip(COMPLETE[2]), silence(2.0)])
    detector = TurnDetector()
    options = SessionOptions(language="en", turn_detection="semantic")
    finals, session = await stream(audio, options, detector, engine)
    assert len(finals) == 1, [f[1].text for f in finals]
    text = normalize(finals[0][1].text)
    assert "block books" in text and "surpassed" in text, text
    assert session.stats.turn_ends == 1 and detector.stats.rows >= 2

    split, _ = await stream(audio, SessionOptions(language="en"), detector, engine)
    assert len(split) == 2, [f[1].text for f in split]
