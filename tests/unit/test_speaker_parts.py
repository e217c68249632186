"""Issue 19, live: a final holding two voices (no pause between them long enough to end the
utterance) is cut at its words, and every view of it agrees: the labels per window
(`StableSpeakers.assign_windows`), the words' speakers (`streaming.speakers.Voices`), the
parts (`engine.speakers.parts`), the exports, the page, the store and the rename. Real
clustering on constructed embeddings; the real encoder on real voices is in
tests/integration/test_live_speakers.py."""

from __future__ import annotations

import numpy as np

from engine.base import Word
from engine.speakers.cluster import StableSpeakers, absorb_short_runs
from engine.speakers.diarize import window_turns
from engine.speakers.parts import speaker_parts
from streaming.events import TranscriptEvent
from streaming.speakers import Voices
from web.store_sql import _words_from_json, words_json
from tests.unit.test_speakers import _voice, _windows_of

HOP = 0.4


def _labelled(*words: tuple[str, float, float, str | None]) -> tuple[Word, ...]:
    return tuple(Word(w, s, e, 0.9, who) for w, s, e, who in words)


def test_short_runs_join_their_longer_neighbour():
    assert absorb_short_runs(np.array([0, 0, 0, 1, 0, 0]), 2).tolist() == [0] * 6
    assert absorb_short_runs(np.array([1, 0, 0, 0, 0, 2, 2, 2]), 2).tolist() == [0] * 5 + [2] * 3
    assert absorb_short_runs(np.array([0, 0, 0, 1, 1, 1]), 2).tolist() == [0, 0, 0, 1, 1, 1]
    assert absorb_short_runs(np.array([3]), 2).tolist() == [3]


def test_a_voice_change_inside_an_utterance_labels_its_windows():
    a, b = _voice(), _voice()
    live = StableSpeakers(hop_s=HOP, min_speaker_s=1.2)
    # First utterance: a for 3.2 s, then b for 2.8 s without a pause.
    first = live.assign_windows(np.concatenate([_windows_of(a, 8), _windows_of(b, 7)]))
    assert first.tolist() == [0] * 8 + [1] * 7 and live.count == 2
    # Then b alone, then a alone: the labels shown stay theirs.
    assert set(live.assign_windows(_windows_of(b, 6)).tolist()) == {1}
    assert set(live.assign_windows(_windows_of(a, 6)).tolist()) == {0}
    # A window of b inside a's utterance is not a turn of its own (under MIN_TURN_S).
    blip = live.assign_windows(np.concatenate([_windows_of(a, 5), _windows_of(b, 1), _windows_of(a, 5)]))
    assert set(blip.tolist()) == {0}


def test_one_voice_split_window_by_window_stays_one_label():
    a = _voice()
    live = StableSpeakers(hop_s=HOP)
    rng = np.random.default_rng(3)
    labels = {int(x) for n in rng.integers(1, 14, size=30) for x in live.assign_windows(_windows_of(a, int(n), spread=0.4))}
    assert labels == {0} and live.count == 1


def test_words_take_the_voice_around_them_in_session_time():
    centers = np.array([0.8, 1.2, 1.6, 2.0, 2.4, 2.8])
    voices = Voices("Speaker 1", tuple(window_turns(centers, ["Speaker 1"] * 3 + ["Speaker 2"] * 3)))
    # The utterance starts 10 s into the session; the change sits at 1.8 s of it.
    words = _labelled((" Yes,", 10.1, 10.6, None), (" go", 10.7, 11.5, None), (" Thanks.", 12.0, 12.6, None))
    labelled = voices.label_words(words, 10.0)
    assert [w.speaker for w in labelled] == ["Speaker 1", "Speaker 1", "Speaker 2"]
    one = Voices("Speaker 1", tuple(window_turns(centers, ["Speaker 1"] * 6)))
    assert one.label_words(words, 10.0) == words  # one voice: the words stay unlabelled


def test_parts_cut_between_the_words_of_two_speakers():
    words = _labelled((" Are", 5.1, 5.3, "Speaker 1"), (" you?", 5.3, 5.6, "Speaker 1"), (" Yes.", 6.0, 6.4, "Speaker 2"))
    parts = speaker_parts(5.0, 6.5, "Are you? Yes.", "Speaker 1", words)
    assert [(p.start, p.end, p.text, p.speaker) for p in parts] == [
        (5.0, 5.6, "Are you?", "Speaker 1"),
        (6.0, 6.5, "Yes.", "Speaker 2"),
    ]
    assert [len(p.words) for p in parts] == [2, 1]
    # Without speakers on the words (or one speaker), the piece stays whole.
    plain = _labelled((" Are", 5.1, 5.3, None), (" you?", 5.3, 5.6, None))
    assert [(p.text, p.speaker) for p in speaker_parts(5.0, 6.0, " Are you?", "Speaker 1", plain)] == [("Are you?", "Speaker 1")]


def _two_voice_final() -> TranscriptEvent:
    words = _labelled((" Are", 5.1, 5.3, "Speaker 1"), (" you?", 5.3, 5.6, "Speaker 1"), (" Yes.", 6.0, 6.4, "Speaker 2"))
    return TranscriptEvent("final", 3, "Are you? Yes.", "", 5.0, 6.5, 0.2, "en", words=words, speaker="Speaker 1")


def test_exports_write_one_segment_per_speaker_of_a_final():
    from streaming.transcript import Transcript

    transcript = Transcript([_two_voice_final()])
    assert transcript.to_txt() == "Speaker 1: Are you?\nSpeaker 2: Yes.\n"
    segments = transcript.to_dict()["segments"]
    assert [(s["utterance_id"], s["start"], s["end"], s["speaker"], s["text"]) for s in segments] == [
        (3, 5.0, 5.6, "Speaker 1", "Are you?"),
        (3, 6.0, 6.5, "Speaker 2", "Yes."),
    ]
    assert "<v Speaker 2>Yes." in transcript.to_vtt()


def test_the_page_shows_both_labels_in_the_final_and_a_rename_reaches_the_words():
    from web.live import TabState
    from web.page import render_finals
    from web.speaker_names import labels_of, named, speakers_of

    tab = TabState()
    tab.transcript.add(_two_voice_final())
    shown = render_finals(tab)
    assert shown.count('class="rtw-speaker"') == 2
    assert shown.index("Speaker 1:</span>") < shown.index(">Are</span>") < shown.index("Speaker 2:</span>") < shown.index(">Yes.</span>")
    assert labels_of(speakers_of(tab.transcript.finals)) == ["Speaker 1", "Speaker 2"]
    tab.speaker_names = {"Speaker 2": "Bo <b>"}
    assert "Bo &lt;b&gt;:</span>" in render_finals(tab) and "Speaker 2:" not in render_finals(tab)
    assert named(tab.transcript.finals, tab.speaker_names).to_txt() == "Speaker 1: Are you?\nBo <b>: Yes.\n"


def test_the_store_keeps_each_words_speaker_and_the_history_shows_both(tmp_path):
    from web.history import shown_text, words_view_html
    from web.store import TranscriptStore, new_id

    final = _two_voice_final()
    assert _words_from_json(words_json(final.words)) == final.words
    # Rows written before words had speakers (four items) still read.
    assert _words_from_json('[[" Hi",0.0,0.5,0.9]]') == (Word(" Hi", 0.0, 0.5, 0.9),)
    store = TranscriptStore.open_dir(str(tmp_path))
    try:
        browser, tid = new_id(), new_id()
        store.append_final(tid, browser, final.start_s, final.end_s, final.text, tab_id="t", words=final.words, speaker=final.speaker).result()
        store.name_speaker(tid, browser, "Speaker 2", "Bo").result()
        stored = store.get(tid, browser)
        assert stored.segments[0].words == final.words
        assert shown_text(stored) == "[0:05] Speaker 1: Are you?\n[0:06] Bo: Yes."
        view = words_view_html(stored)
        assert view.count('class="rtw-final"') == 2 and "Bo: " in view
    finally:
        store.close()
