"""Speaker labels with the real voice encoder (Resemblyzer's weights, engine/speakers) on
conversations built from tests/data's voices, as bench.speakers builds them from the
larger set: the speaker step alone (speech from the VAD), no vLLM."""

from __future__ import annotations

import numpy as np
import pytest

from bench.speakers import _trim, build, score
from engine.speakers.cluster import FILE_THRESHOLD, MIN_SPEAKER_S
from engine.speakers.encoder import VoiceEncoder
from evaluation import clips, read_audio

#: Voices of tests/data with more than one clip, or one long one.
VOICES = {"lj": "ljspeech_coqui__", "aew": "cmu_arctic__cmu_arctic_us_aew", "jfk": "openai_whisper__jfk"}


@pytest.fixture(scope="module")
def encoder():
    import torch

    torch.set_num_threads(1)  # as the bench: the shared 2-core machine's other work runs beside it
    return VoiceEncoder()


@pytest.fixture(scope="module")
def voices(test_data):
    out: dict[str, list[np.ndarray]] = {}
    for clip in clips(kind="speech", lang="en", base=test_data):
        for voice, prefix in VOICES.items():
            if clip.path.name.startswith(prefix):
                out.setdefault(voice, []).append(_trim(read_audio(clip.path)))
    assert set(out) == set(VOICES)
    return out


def test_weights_come_from_the_installed_wheel():
    from engine.speakers.encoder import weights_path

    assert weights_path().name == "pretrained.pt" and weights_path().stat().st_size > 10_000_000


@pytest.mark.parametrize("seed", [1, 2])
def test_conversations_of_three_voices(encoder, voices, seed):
    conv = build(np.random.default_rng(seed), voices, 3, 8)
    (row,) = score(conv, encoder, [(FILE_THRESHOLD, MIN_SPEAKER_S)])
    assert row["found"] == 3, row
    assert row["der"] <= 0.10, row


def test_one_voice_recording_stays_one_speaker(encoder, voices):
    conv = build(np.random.default_rng(3), {"lj": voices["lj"]}, 1, 8)
    assert conv.minutes > 0.8
    (row,) = score(conv, encoder, [(FILE_THRESHOLD, MIN_SPEAKER_S)])
    assert row["found"] == 1, row


def test_same_voice_references_are_closer_than_other_voices(encoder, voices):
    lj = encoder.utterances(voices["lj"][:2])
    other = encoder.utterances([voices["aew"][0], voices["jfk"][0]])
    assert float(lj[0] @ lj[1]) > max(float(lj[0] @ o) for o in other) + 0.1
