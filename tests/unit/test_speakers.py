"""engine/speakers: clustering, naming, turns and the cutting of segments at a speaker
change, on constructed embeddings (the real voice encoder's tests are in
tests/integration/test_speakers_model.py); and the exports' speaker prefixes."""

import numpy as np

from engine.base import Segment, Transcription, Word
from engine.formats import to_json, to_srt, to_text, to_vtt
from engine.speakers.cluster import (
    StableSpeakers,
    cluster_windows,
    letter,
    name_speakers,
)
from engine.speakers.diarize import Turn, speaker_turns, split_segments
from engine.speakers.encoder import Windows

RNG = np.random.default_rng(0)


def _voice(dim: int = 256) -> np.ndarray:
    v = RNG.normal(size=dim)
    return v / np.linalg.norm(v)


def _windows_of(voice: np.ndarray, count: int, spread: float = 0.25) -> np.ndarray:
    noisy = voice + spread * RNG.normal(size=(count, len(voice))) / np.sqrt(len(voice))
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def test_letters_follow_openai():
    assert [letter(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]


def test_two_voices_found_in_order_of_first_appearance():
    a, b = _voice(), _voice()
    embeddings = np.concatenate([_windows_of(b, 10), _windows_of(a, 12), _windows_of(b, 8)])
    labels = cluster_windows(embeddings, hop_s=0.4)
    assert labels.tolist() == [0] * 10 + [1] * 12 + [0] * 8


def test_a_voice_heard_too_briefly_joins_its_neighbour():
    a, b = _voice(), _voice()
    embeddings = np.concatenate([_windows_of(a, 20), _windows_of(b, 2)])
    assert set(cluster_windows(embeddings, hop_s=0.4, min_speaker_s=2.0).tolist()) == {0}


def test_known_names_are_matched_one_to_one_and_others_get_unused_letters():
    a, b, c = _voice(), _voice(), _voice()
    centroids = np.stack([a, b, c])
    names = name_speakers(centroids, np.stack([c, a]), ["Carol", "A"])
    # A's reference is called "A": the unnamed speaker b takes the next free letter.
    assert names == ["A", "B", "Carol"]
    assert name_speakers(centroids) == ["A", "B", "C"]


def test_live_labels_follow_voices_in_order_of_appearance():
    a, b = _voice(), _voice()
    live = StableSpeakers(hop_s=0.4, min_speaker_s=2.0)
    # Utterances of 3 s (7 windows): a, b, a, b, then a short one of b (2 windows).
    seen = [live.assign(_windows_of(v, 7)) for v in (a, b, a, b)] + [live.assign(_windows_of(b, 2))]
    assert seen == [0, 1, 0, 1, 1] and live.count == 2


def test_turns_cover_speech_and_change_between_the_differing_windows():
    a, b = _voice(), _voice()
    centers = np.arange(30) * 0.4 + 0.8
    embeddings = np.concatenate([_windows_of(a, 15), _windows_of(b, 15)])
    turns = speaker_turns(Windows(centers, embeddings), [(0.0, 13.0)])
    assert [t.speaker for t in turns] == ["A", "B"]
    assert abs(turns[0].end - (centers[14] + centers[15]) / 2) < 1e-9
    assert turns[0].start == 0.0 and turns[1].end == 13.0


def test_a_segment_is_cut_between_words_of_two_speakers():
    words = [Word(" Hello", 0.0, 0.5, 0.9), Word(" there.", 0.5, 1.0, 0.9), Word(" Hi", 1.2, 1.5, 0.9), Word(" Bob.", 1.5, 2.0, 0.9)]
    segments = [Segment(0.0, 2.0, " Hello there. Hi Bob."), Segment(2.5, 3.0, " Yes.")]
    words.append(Word(" Yes.", 2.5, 3.0, 0.9))
    turns = [Turn(0.0, 1.1, "A"), Turn(1.1, 3.0, "B")]
    out = split_segments(segments, words, turns)
    assert [(s.text, s.speaker, s.start, s.end) for s in out] == [
        ("Hello there.", "A", 0.0, 1.0), ("Hi Bob.", "B", 1.2, 2.0), (" Yes.", "B", 2.5, 3.0)
    ]


def test_a_one_speaker_segment_stays_whole():
    segment = Segment(0.0, 1.0, " Hello there.")
    out = split_segments([segment], [Word(" Hello", 0.0, 0.5, 0.9), Word(" there.", 0.5, 1.0, 0.9)], [Turn(0.0, 1.0, "A")])
    assert out == [Segment(0.0, 1.0, " Hello there.", speaker="A")]


def test_exports_prefix_the_speaker():
    segments = [Segment(0.0, 1.0, "Hello.", speaker="A"), Segment(1.0, 2.0, "Hi <you>.", speaker="Bob Smith")]
    assert to_text(segments) == "A: Hello.\nBob Smith: Hi <you>.\n"
    assert "00:00:01,000 --> 00:00:02,000\nBob Smith: Hi <you>.\n" in to_srt(segments)
    assert "<v Bob Smith>Hi &lt;you&gt;.\n" in to_vtt(segments)
    body = to_json(Transcription("Hello. Hi <you>.", "en", 2.0, segments))
    assert [(s["text"], s["speaker"]) for s in body["segments"]] == [("Hello.", "A"), ("Hi <you>.", "Bob Smith")]


def test_exports_without_speakers_are_unchanged():
    segments = [Segment(0.0, 1.0, "a < b")]
    assert to_text(segments) == "a < b\n"
    assert "a &lt; b" in to_vtt(segments) and "<v" not in to_vtt(segments)
    assert "speaker" not in to_json(Transcription("a < b", "en", 1.0, segments))["segments"][0]


def test_the_page_shows_the_speaker_before_each_final():
    from streaming.events import TranscriptEvent
    from web.live import TabState
    from web.page import render_finals

    tab = TabState()
    tab.transcript.add(TranscriptEvent("final", 0, "Hello there.", "", 0.0, 1.0, 0.1, "en", speaker="Speaker 1"))
    tab.transcript.add(TranscriptEvent("final", 1, "Hi <you>.", "", 1.5, 2.0, 0.1, "en", speaker="Speaker 2"))
    tab.transcript.add(TranscriptEvent("final", 2, "No label.", "", 2.5, 3.0, 0.1, "en"))
    shown = render_finals(tab)
    assert '<span class="rtw-speaker">Speaker 1:</span>Hello there.' in shown
    assert '<span class="rtw-speaker">Speaker 2:</span>Hi &lt;you&gt;.' in shown
    assert shown.count("rtw-speaker") == 2
    assert tab.transcript.to_txt() == "Speaker 1: Hello there.\nSpeaker 2: Hi <you>.\nNo label.\n"
    assert [s.get("speaker") for s in tab.transcript.to_dict()["segments"]] == ["Speaker 1", "Speaker 2", None]


def test_a_new_voice_gets_its_label_once_heard_long_enough_and_shown_labels_stay():
    a, b = _voice(), _voice()
    live = StableSpeakers(hop_s=0.4, min_speaker_s=1.2)
    assert live.assign(_windows_of(a, 10)) == 0
    # 0.8 s of a new voice: too little to be a speaker of its own yet, the nearest's label.
    assert live.assign(_windows_of(b, 2)) == 0 and live.count == 1
    # Once b has spoken long enough, b is a speaker; a stays 0.
    assert live.assign(_windows_of(b, 6)) == 1
    assert live.assign(_windows_of(a, 4)) == 0 and live.count == 2


def test_one_voice_stays_one_label():
    a = _voice()
    live = StableSpeakers(hop_s=0.4)
    assert {live.assign(_windows_of(a, int(n), spread=0.4)) for n in RNG.integers(1, 12, size=30)} == {0}


def test_a_missing_encoder_wheel_says_what_to_install(monkeypatch):
    import importlib.util

    import pytest

    from engine.speakers import encoder

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(encoder.EncoderMissing, match="resemblyzer"):
        encoder.weights_path()


def test_the_mel_filterbank_is_librosas():
    """The encoder's features are librosa's (what it was trained on), built with numpy: librosa
    itself runs in a subprocess, as importing it here (numba, llvmlite) would break a later
    vLLM engine start in this test process."""
    import json
    import subprocess
    import sys

    from engine.speakers.encoder import MEL_BANDS, MEL_WINDOW, mel_filters

    code = f"import json, librosa; print(json.dumps(librosa.filters.mel(sr=16000, n_fft={MEL_WINDOW}, n_mels={MEL_BANDS}).tolist()))"
    reference = np.array(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout))
    assert np.allclose(mel_filters(), reference, atol=1e-7)
