"""Live finals carry their words: a final's decode asks for word times (partials never),
the words come back in session time and only as far as they spell the final's text.

A real VAD and segmenter on real speech, a fake engine that answers word times evenly
spread over the audio it got (the real aligner: tests/integration/test_session_engine.py).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engine.base import TokenLogprob, Transcription, Word
from evaluation import read_audio
from streaming.events import TranscriptEvent
from streaming.harness import to_frames
from streaming.session import Session, SessionOptions
from streaming.words import final_logprobs, final_words, spelling_prefix
from tests.datasets import TEST_DATA
from tests.fakes import FakeEngine

SR = 16_000


def _word(text: str, start: float, end: float, p: float = 0.9) -> Word:
    return Word(text, start, end, p)


def test_final_words_move_to_session_time() -> None:
    words = [_word(" Hello", 0.1, 0.4), _word(" world.", 0.5, 0.9)]
    assert final_words(words, "Hello world.", 12.0) == (_word(" Hello", 12.1, 12.4), _word(" world.", 12.5, 12.9))


def test_final_words_stop_where_the_text_stops() -> None:
    """The guards cut a loop off the text: the words of the cut part go too."""
    words = [_word(" go", 0.0, 0.2), _word(" on", 0.2, 0.4), _word(" on", 0.4, 0.6), _word(" on", 0.6, 0.8)]
    assert [w.word for w in final_words(words, "go on", 0.0)] == [" go", " on"]


def test_final_words_that_do_not_spell_the_text_are_dropped() -> None:
    """Committed words kept by the final (other words than decoded): no time is invented."""
    words = [_word(" Hello", 0.1, 0.4), _word(" world.", 0.5, 0.9)]
    assert final_words(words, "Yellow world.", 0.0) == ()
    assert final_words(words, "Hello world. And more", 0.0) == ()
    assert final_words([], "Hello", 0.0) == ()
    assert spelling_prefix(words, lambda ws: "".join(w.word for w in ws), "") == ()


def test_final_logprobs_join_bytes_across_tokens() -> None:
    """One character split over two tokens still spells the text."""
    e_acute = "é".encode()
    tokens = [
        TokenLogprob(" caf", -0.1, tuple(b" caf")),
        TokenLogprob("\ufffd", -0.2, (e_acute[0],)),
        TokenLogprob("\ufffd", -0.3, (e_acute[1],)),
    ]
    assert final_logprobs(tokens, "café") == tuple(tokens)


class TimedEngine(FakeEngine):
    """FakeEngine that answers word times (its words evenly over the audio) and token
    log-probabilities when asked, and records what each request asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[bool, bool, bool]] = []  # (draft, word_timestamps, logprobs)
        self.prepared = 0

    def prepare_words(self) -> None:
        self.prepared += 1

    async def transcribe(self, request):
        self.asked.append((request.draft, request.word_timestamps, request.logprobs))
        result = await super().transcribe(request)
        pieces = [" " + w for w in result.text.split()]
        step = result.duration / max(1, len(pieces))
        words = [Word(p, round(i * step, 3), round((i + 1) * step, 3), 0.8) for i, p in enumerate(pieces)] if request.word_timestamps else []
        logprobs = [TokenLogprob(p, -0.1, tuple(p.encode())) for p in pieces] if request.logprobs else []
        return Transcription(result.text, "en", result.duration, avg_logprob=-0.2, words=words, logprobs=logprobs)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    clip = read_audio(TEST_DATA / "clips" / "cmu_arctic__awb_arctic_a0007.flac")
    return np.concatenate([np.zeros(int(0.8 * SR), np.float32), clip, np.zeros(int(1.2 * SR), np.float32)])


async def _events(session: Session, audio: np.ndarray, kind: str = "final", pace: float = 0.0) -> list[TranscriptEvent]:
    """The session's transcript events of one `kind` for the audio (frames `pace` s apart)."""
    events: list = []

    async def collect() -> None:
        async for ev in session.events():
            events.append(ev)

    consumer = asyncio.ensure_future(collect())
    for frame in to_frames(audio):
        session.feed(frame, 48_000)
        await asyncio.sleep(pace)
    await session.finish()
    await asyncio.wait_for(consumer, 30)
    return [e for e in events if isinstance(e, TranscriptEvent) and e.type == kind]


async def _finals(session: Session, audio: np.ndarray) -> list[TranscriptEvent]:
    return await _events(session, audio)


async def test_finals_carry_words_in_session_time(speech) -> None:
    engine = TimedEngine()
    (final,) = await _finals(Session(engine, SessionOptions(word_times=True, logprobs=True)), speech)
    assert [w.word.strip() for w in final.words] == final.text.split()
    assert final.start_s > 0.3  # the speech starts 0.8 s into the session: times are moved there
    assert final.words[0].start == pytest.approx(final.start_s, abs=0.002)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(final.words, final.words[1:]))
    assert final.words[-1].end <= final.end_s + 0.002
    assert "".join(t.token for t in final.logprobs).strip() == final.text
    # Partials asked for neither; every final decode asked for both.
    assert any(draft for draft, _, _ in engine.asked)
    assert all((words, logprobs) == (not draft, not draft) for draft, words, logprobs in engine.asked)
    assert engine.prepared == 1  # the aligner starts loading with the stream, not at its first final


async def test_word_times_off_asks_for_none(speech) -> None:
    engine = TimedEngine()
    (final,) = await _finals(Session(engine, SessionOptions()), speech)
    assert final.text and final.words == () and final.logprobs == ()
    assert not any(words or logprobs for _, words, logprobs in engine.asked)
    assert engine.prepared == 0


async def test_partials_carry_words_only_when_asked(speech) -> None:
    """LIVE_PARTIAL_WORD_TIMES: every decode asks for word times, and each partial's words
    (session time) spell what it shows; off, partials carry none."""
    engine = TimedEngine()
    # Frames 2 ms apart, slower than _finals: partials get their turn.
    partials = await _events(Session(engine, SessionOptions(word_times=True, partial_words=True)), speech, "partial", 0.002)
    assert partials and all(words for _, words, _ in engine.asked)
    timed = [p for p in partials if p.words]
    assert timed, [p.text for p in partials]
    for p in timed:
        assert " ".join(w.word.strip() for w in p.words) == p.text
        assert p.words[0].start >= p.start_s - 0.002 and p.words[-1].end <= p.end_s + 0.5

    engine = TimedEngine()
    (final,) = await _finals(Session(engine, SessionOptions(word_times=True)), speech)
    assert final.words and not any(words for draft, words, _ in engine.asked if draft)


def test_setting_turns_it_on() -> None:
    from settings import Settings

    s = Settings.from_env()
    for on in (True, False):
        s.live_word_times = on
        s.live_partial_word_times = on
        assert SessionOptions.from_settings(s).word_times is on
        assert SessionOptions.from_settings(s).partial_words is on


# -- the page ----------------------------------------------------------------------------


def test_words_html_titles_each_word_escaped_and_underlines_doubt() -> None:
    from web.word_spans import words_html

    words = [_word(" <b>Hi</b>", 1.0, 1.25, 0.93), _word(" there", 1.3, 1.6, 0.31)]
    out = words_html(" <b>Hi</b> there", words)
    assert "<b>" not in out and "&lt;b&gt;Hi&lt;/b&gt;" in out
    assert out.count('<span class="rtw-word') == 2
    assert 'title="1.00–1.25 s · p 0.93"' in out
    assert '<span class="rtw-word rtw-low" title="1.30–1.60 s · p 0.31">there</span>' in out
    assert '<span class="rtw-word" title="1.00–1.25 s · p 0.93">' in out
    assert words_html("<i>plain</i>", ()) == "&lt;i&gt;plain&lt;/i&gt;"


def test_page_finals_show_word_spans_on_the_tabs_timeline() -> None:
    """A second stream of a tab starts later on the tab's timeline: its words move with it."""
    from web.live import TabState
    from web.page import render_finals

    tab = TabState()
    final = TranscriptEvent("final", 0, "Hello world.", "", 0.5, 1.5, 0.2, "en", words=(_word(" Hello", 0.6, 0.9), _word(" world.", 1.0, 1.4, 0.2)))
    tab.apply(final, offset_s=10.0)
    (shown,) = tab.transcript.finals
    assert [(w.start, w.end) for w in shown.words] == [(10.6, 10.9), (11.0, 11.4)]
    html = render_finals(tab)
    assert 'title="10.60–10.90 s · p 0.90">Hello</span>' in html and "rtw-low" in html


# -- realtime ------------------------------------------------------------------------------


def test_realtime_include_asks_for_logprobs_in_both_shapes() -> None:
    import json

    from web.realtime import RealtimeConfig
    from web.realtime_events import EventError, parse_client_event

    beta = parse_client_event(json.dumps({"type": "transcription_session.update", "session": {"include": ["item.input_audio_transcription.logprobs"]}}))
    ga = parse_client_event(json.dumps({"type": "session.update", "session": {"type": "transcription", "include": ["item.input_audio_transcription.logprobs"]}}))
    for event in (beta, ga):
        config = RealtimeConfig().updated(event.session.config())
        assert config.logprobs is True
        # Saying nothing keeps it; an empty list turns it off.
        assert config.updated(parse_client_event(json.dumps({"type": "transcription_session.update", "session": {}})).session.config()).logprobs
        off = parse_client_event(json.dumps({"type": "transcription_session.update", "session": {"include": []}}))
        assert config.updated(off.session.config()).logprobs is False
    with pytest.raises(EventError) as bad:
        parse_client_event(json.dumps({"type": "transcription_session.update", "session": {"include": ["item.words"]}}))
    assert bad.value.code == "invalid_value"


# -- the History --------------------------------------------------------------------------


def test_history_viewer_shows_the_stored_words(tmp_path) -> None:
    """A live final's words go into the store (real SQLite file) and come back to the
    History's word view; a transcript without word times has no word view."""
    from web.history import words_view_html
    from web.store import TranscriptStore, new_id

    store = TranscriptStore.open_dir(str(tmp_path))
    try:
        browser, timed, plain = new_id(), new_id(), new_id()
        words = (_word(" Hello", 61.0, 61.4, 0.95), _word(" <world>", 61.5, 62.0, 0.2))
        store.append_final(timed, browser, 61.0, 62.0, "Hello <world>", tab_id="t", words=words).result()
        store.append_final(plain, browser, 0.0, 1.0, "no times", tab_id="u").result()
        out = words_view_html(store.get(timed, browser))
        assert "[1:01]" in out and 'title="61.00–61.40 s · p 0.95">Hello</span>' in out
        assert '<span class="rtw-word rtw-low" title="61.50–62.00 s · p 0.20">&lt;world&gt;</span>' in out
        assert words_view_html(store.get(plain, browser)) == ""
    finally:
        store.close()


async def test_the_aligners_time_counts_in_the_finals_latency(speech) -> None:
    """The aligning pass is part of the final's decode: a slow one shows in `latency_s`."""

    class SlowWords(TimedEngine):
        async def transcribe(self, request):
            if request.word_timestamps:
                await asyncio.sleep(0.4)  # the aligner's pass
            return await super().transcribe(request)

    (slow,) = await _finals(Session(SlowWords(), SessionOptions(word_times=True)), speech)
    assert slow.words and slow.latency_s >= 0.4
