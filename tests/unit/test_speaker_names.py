"""Issue 19, the page's "Rename speaker": a person names a speaker label for one transcript,
on the Live tab and in the History. The handlers' work is called as the page calls it,
with a real SQLite store in tmp_path; the names must show (escaped), reach the downloads,
survive a reload, and an empty name gives the label back. The API keeps labels (not here:
nothing in web/openai_api.py or web/realtime.py reads the names)."""

from __future__ import annotations

import os

import gradio as gr
import pytest

from engine.base import EngineInfo, Segment
from streaming.events import TranscriptEvent
from web import recorder as recorder_module
from web.history import export_files, shown_text, words_view_html
from web.live import TabState
from web.page import render, render_finals
from web.recorder import OpenTabs, attach
from web.sessions import StreamSlots
from web.speaker_names import control_updates, rename_live, rename_stored
from web.store import TranscriptStore, new_id
from web.store_sql import MAX_SPEAKER_NAME

#: render()'s outputs: finals, partial, status, txt, srt, vtt, speaker row, speaker dropdown.
ROW, PICK = 6, 7


class _Engine:
    info = EngineInfo(model="m", engine="fake", device="cpu", multilingual=False)


def _final(i: int, text: str, speaker: str | None) -> TranscriptEvent:
    return TranscriptEvent("final", i, text, "", i * 2.0, i * 2.0 + 1.5, 0.1, "en", speaker=speaker)


@pytest.fixture
def store(tmp_path):
    s = TranscriptStore.open_dir(str(tmp_path))
    yield s
    s.close()


def _download(tab: TabState, ext: str) -> str:
    """The tab's download file of this format (web.page._Downloads keeps one set)."""
    folder = tab.marks.downloads.dir
    (name,) = [n for n in os.listdir(folder) if n.endswith("." + ext)]
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return f.read()


async def test_a_renamed_live_speaker_shows_escaped_in_the_panel_and_downloads_and_after_a_reload(store):
    tab = TabState()
    browser, tab_id = await attach(tab, None, store, pages=OpenTabs())
    engine, slots = _Engine(), StreamSlots(2)
    first = render(tab, engine, slots, force=True)
    assert first[ROW]["visible"] is False  # no labels yet: the control stays hidden
    tab.apply(_final(0, "Hello there.", "Speaker 1"), 0.0)
    tab.apply(_final(1, "Hi.", "Speaker 2"), 0.0)
    shown = render(tab, engine, slots)
    assert shown[ROW]["visible"] is True
    assert shown[PICK]["choices"] == [("Speaker 1", "Speaker 1"), ("Speaker 2", "Speaker 2")] and shown[PICK]["value"] == "Speaker 1"

    assert rename_live(tab, "Speaker 1", "  Ana   <b>O'Neil</b> ").result() is True  # kept for the tab's transcript
    panel = render_finals(tab)
    assert '<span class="rtw-speaker">Ana &lt;b&gt;O&#x27;Neil&lt;/b&gt;:</span>Hello there.' in panel
    assert '<span class="rtw-speaker">Speaker 2:</span>Hi.' in panel
    out = render(tab, engine, slots, force=True)
    assert _download(tab, "txt") == "Ana <b>O'Neil</b>: Hello there.\nSpeaker 2: Hi.\n"
    assert "<v Ana &lt;b&gt;O'Neil&lt;/b&gt;>Hello there." in _download(tab, "vtt")
    assert "Ana <b>O'Neil</b>: Hello there." in _download(tab, "srt")
    assert out[PICK]["choices"][0] == ("Speaker 1 (Ana <b>O'Neil</b>)", "Speaker 1")
    assert "value" not in out[PICK]  # the person's chosen speaker stays chosen
    assert [e.speaker for e in tab.transcript.finals] == ["Speaker 1", "Speaker 2"]  # finals keep their labels

    # A reload of the tab: the stored transcript brings its names back.
    again = TabState()
    assert await attach(again, browser, store, tab_id, pages=OpenTabs()) == (browser, tab_id)
    assert again.speaker_names == {"Speaker 1": "Ana <b>O'Neil</b>"}
    assert "Ana &lt;b&gt;O&#x27;Neil&lt;/b&gt;:</span>Hello there." in render_finals(again)

    # An empty name gives the label back, here and in the store.
    assert rename_live(again, "Speaker 1", "   ").result() is True
    assert '<span class="rtw-speaker">Speaker 1:</span>Hello there.' in render_finals(again)
    assert store.current_live(browser, tab_id).info.speaker_names == {}

    # A name is one line of at most MAX_SPEAKER_NAME characters, as the store keeps it.
    assert rename_live(again, "Speaker 2", "Bo\nb" + "x" * 200).result() is True
    assert again.speaker_names["Speaker 2"] == ("Bo b" + "x" * 200)[:MAX_SPEAKER_NAME]
    assert store.current_live(browser, tab_id).info.speaker_names == again.speaker_names

    # A label the transcript does not have is refused, and nothing changes.
    with pytest.raises(gr.Error):
        rename_live(again, "Speaker 9", "Mallory")
    with pytest.raises(gr.Error):
        rename_live(again, None, "Mallory")
    assert set(again.speaker_names) == {"Speaker 2"}

    # Clear forgets the transcript and its names; the control hides again.
    again.clear()
    assert again.speaker_names == {}
    assert render(again, engine, slots, force=True)[ROW]["visible"] is False


async def test_names_without_a_store_stay_on_the_page_and_a_new_label_keeps_the_choice():
    tab, engine, slots = TabState(), _Engine(), StreamSlots(2)
    tab.apply(_final(0, "One.", "Speaker 1"), 0.0)
    render(tab, engine, slots)
    assert rename_live(tab, "Speaker 1", "Ana") is None  # nothing to keep it in
    assert "Ana:</span>One." in render_finals(tab)
    tab.apply(_final(1, "Two.", "Speaker 2"), 0.0)
    grown = render(tab, engine, slots)
    assert grown[PICK]["choices"] == [("Speaker 1 (Ana)", "Speaker 1"), ("Speaker 2", "Speaker 2")]
    assert "value" not in grown[PICK]
    assert render(tab, engine, slots)[PICK] == gr.skip()  # unchanged: not sent again


async def test_a_live_transcript_continued_in_a_new_one_keeps_its_names(store, monkeypatch):
    monkeypatch.setattr(recorder_module, "MAX_SEGMENTS_PER_TRANSCRIPT", 1)
    tab = TabState()
    browser, tab_id = await attach(tab, None, store, pages=OpenTabs())
    tab.apply(_final(0, "One.", "Speaker 1"), 0.0)
    rename_live(tab, "Speaker 1", "Ana").result()
    tab.apply(_final(1, "Two.", "Speaker 1"), 0.0)  # the first transcript is full: a new one starts
    current = store.current_live(browser, tab_id)
    assert [s.text for s in current.segments] == ["Two."] and current.info.speaker_names == {"Speaker 1": "Ana"}


async def test_a_history_transcript_renamed_shows_and_exports_the_name(store):
    browser = new_id()
    segments = [Segment(0.0, 1.0, "Good morning.", speaker="A"), Segment(1.5, 3.0, "Morning!", speaker="B")]
    tid = store.save_upload(browser, "talk.wav", segments, duration=3.0)
    stored = await rename_stored(store, tid, browser, "A", "Dr <Ana>")
    assert shown_text(stored) == "[0:00] Dr <Ana>: Good morning.\n[0:02] B: Morning!"
    files = {name.rsplit(".", 1)[1]: text for name, text in export_files(stored)}
    assert files["txt"] == "Dr <Ana>: Good morning.\nB: Morning!\n"
    assert "<v Dr &lt;Ana&gt;>Good morning." in files["vtt"]
    kept = store.get(tid, browser)
    assert kept.info.speaker_names == {"A": "Dr <Ana>"} and [s.speaker for s in kept.segments] == ["A", "B"]
    assert shown_text(kept) == shown_text(stored)  # opened again later: the same names

    with pytest.raises(gr.Error):
        await rename_stored(store, tid, browser, "C", "Nobody")  # not a speaker of this transcript
    with pytest.raises(gr.Error):
        await rename_stored(store, tid, new_id(), "A", "Mallory")  # another browser's transcript
    with pytest.raises(gr.Error):
        await rename_stored(store, None, browser, "A", "Ana")  # nothing opened
    back = await rename_stored(store, tid, browser, "A", "")
    assert shown_text(back).startswith("[0:00] A: Good morning.") and store.get(tid, browser).info.speaker_names == {}


def test_the_history_word_view_escapes_a_name(store):
    from engine.base import Word

    browser = new_id()
    words = [Word(" Hi.", 0.0, 0.5, 0.9)]
    tid = new_id()
    store.append_final(tid, browser, 0.0, 0.5, "Hi.", tab_id="t", words=words, speaker="A").result()
    store.name_speaker(tid, browser, "A", "<i>Ana</i>").result()
    assert "&lt;i&gt;Ana&lt;/i&gt;: " in words_view_html(store.get(tid, browser))


def test_the_control_hides_without_labels():
    hidden = control_updates([], {"A": "Ana"})
    assert hidden[0]["visible"] is False and hidden[1]["choices"] == []
