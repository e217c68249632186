"""The transcript store (web/store.py) on a real SQLite file, and the tab's sink (web/recorder.py).

Checked: finals written one by one come back in order after a reopen (a restart); other
browsers see nothing; concurrent writers from many threads lose nothing; a write after
close, a corrupt file, a file that is not a database and a locked file give clear errors
(the last three at start); the per-browser limit; a tab's finals reach the file as they
land, Clear deletes them for good, New keeps them in the history, and a reload of the
tab gets them back with times that go on.

Tabs of one browser (issue 17, case 1): each tab has its own live transcript (Clear / New /
Record in one never touch another's); a new tab takes over a transcript no open tab holds
(a closed tab's); a database of schema 1 (one live transcript per browser) opens, keeps
its transcripts, and its live one goes to the browser's next tab. A reload while the old
page still flushes (case 8): the final that lands later shows on the new page, stored once.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from types import SimpleNamespace

import pytest

from engine.base import Segment
from streaming.events import TranscriptEvent
from web import store_sql as store_module
from web.store import (
    DB_NAME,
    StoreClosedError,
    StoreError,
    TranscriptStore,
    new_id,
    valid_id,
)


@pytest.fixture
def store(tmp_path):
    s = TranscriptStore.open_dir(str(tmp_path / "data"))
    yield s
    s.close()


def _final(i: int, start: float, end: float, text: str) -> TranscriptEvent:
    return TranscriptEvent(type="final", utterance_id=i, committed=text, tentative="", start_s=start, end_s=end, latency_s=0.3)


def test_finals_survive_a_restart_in_order(tmp_path):
    data = str(tmp_path / "data")
    s = TranscriptStore.open_dir(data)
    browser, tid = new_id(), new_id()
    secret = s.browser_secret()
    for i in range(5):
        s.append_final(tid, browser, i * 2.0, i * 2.0 + 1.5, f" sentence {i} ", utterance_id=i, language="en")
    s.close()  # pending writes are finished first

    s = TranscriptStore.open_dir(data)
    try:
        assert s.browser_secret() == secret  # the browser's stored id stays readable after a restart
        got = s.current_live(browser)
        assert got is not None and got.info.id == tid and got.info.kind == "live"
        assert [seg.text for seg in got.segments] == [f"sentence {i}" for i in range(5)]
        assert got.info.duration == pytest.approx(9.5)
        assert got.info.first_words.startswith("sentence 0 sentence 1")
        assert got.info.language == "en"
    finally:
        s.close()
    assert oct(os.stat(os.path.join(data, DB_NAME)).st_mode & 0o777) == "0o600"


def test_other_browsers_see_nothing(store):
    mine, theirs, tid = new_id(), new_id(), new_id()
    store.append_final(tid, mine, 0, 1, "private words").result()
    assert store.current_live(theirs) is None
    assert store.get(tid, theirs) is None
    assert store.list_transcripts(theirs, include_current=True) == []
    assert store.delete(tid, theirs).result() is False
    with pytest.raises(StoreError, match="another browser"):
        store.append_final(tid, theirs, 1, 2, "injected").result()
    assert [s.text for s in store.get(tid, mine).segments] == ["private words"]


def test_uploads_delete_and_history(store):
    browser = new_id()
    live = new_id()
    store.append_final(live, browser, 0, 1, "live words").result()
    up = store.save_upload(browser, "talk.mp3", [Segment(0, 2, "hello"), Segment(2, 4, "  "), Segment(4, 6, "world")], duration=6.5)
    history = store.list_transcripts(browser)
    assert [h.id for h in history] == [up]  # the current live transcript is on the Live tab, not here
    assert history[0].title == "talk.mp3" and history[0].segment_count == 2 and history[0].duration == 6.5
    assert {h.id for h in store.list_transcripts(browser, include_current=True)} == {up, live}
    store.archive(live, browser).result()
    assert store.current_live(browser) is None
    assert [h.id for h in store.list_transcripts(browser)] == [up, live]
    assert store.delete(up, browser).result() is True
    assert store.get(up, browser) is None
    # Gone from the database, segments included (asked on the store's own connection: either backend).
    left = store.submit(lambda db: db.execute("SELECT COUNT(*) FROM segments WHERE transcript_id = ?", (up,)).fetchone()[0])
    assert left.result() == 0


def test_concurrent_writers_from_threads_lose_nothing(store):
    browser = new_id()
    shared = new_id()
    own = [new_id() for _ in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(k: int) -> None:
        try:
            start.wait()
            futures = []
            for i in range(40):
                futures.append(store.append_final(own[k], browser, i, i + 1, f"w{k} n{i}"))
                futures.append(store.append_final(shared, browser, i, i + 1, f"s{k} n{i}"))
                if i % 10 == 0:
                    store.list_transcripts(browser)  # reads in between
            for f in futures:
                f.result()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for k in range(8):
        got = store.get(own[k], browser)
        assert [s.text for s in got.segments] == [f"w{k} n{i}" for i in range(40)]  # each thread's order kept
    shared_texts = [s.text for s in store.get(shared, browser).segments]
    assert len(shared_texts) == 320 and len(set(shared_texts)) == 320
    rows = store.submit(lambda db: db.execute("SELECT seq FROM segments WHERE transcript_id = ? ORDER BY seq", (shared,)).fetchall())
    assert [r[0] for r in rows.result()] == list(range(320))


def test_write_after_close_is_a_clear_error(tmp_path):
    s = TranscriptStore.open_dir(str(tmp_path))
    s.close()
    s.close()  # twice is fine
    with pytest.raises(StoreClosedError, match="closed"):
        s.append_final(new_id(), new_id(), 0, 1, "late")
    with pytest.raises(StoreClosedError):
        s.list_transcripts(new_id())


def test_a_file_that_is_not_a_database_fails_at_start(tmp_path):
    (tmp_path / DB_NAME).write_bytes(b"these are meeting notes, not a database\n" * 200)
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="corrupt or not a SQLite file") as info:
        TranscriptStore.open_dir(str(tmp_path))
    assert "DATA_DIR" in str(info.value) and str(tmp_path) in str(info.value)
    assert time.monotonic() - t0 < 5


def test_a_corrupt_database_fails_at_start(tmp_path):
    s = TranscriptStore.open_dir(str(tmp_path))
    browser = new_id()
    for i in range(300):
        s.append_final(new_id() if i % 50 == 0 else "t" * 32, browser, i, i + 1, "words of a long meeting " * 8)
    s.list_transcripts(browser)
    s.close()
    path = tmp_path / DB_NAME
    size = path.stat().st_size
    with open(path, "r+b") as f:  # damage pages in the middle of the file (the header stays valid)
        f.seek(size // 3)
        f.write(os.urandom(size // 3))
    with pytest.raises(StoreError, match="corrupt"):
        TranscriptStore.open_dir(str(tmp_path))


def test_a_locked_database_fails_at_start(tmp_path):
    first = TranscriptStore.open_dir(str(tmp_path))
    first.close()
    other = sqlite3.connect(str(tmp_path / DB_NAME), isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="locked by another process"):
            TranscriptStore.open_dir(str(tmp_path), busy_timeout_s=0.3)
        assert time.monotonic() - t0 < 5
        other.execute("ROLLBACK")
        TranscriptStore.open_dir(str(tmp_path)).close()  # usable once the lock is gone
    finally:
        other.close()


def test_ids_are_unguessable_and_checked():
    ids = {new_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(valid_id(i) and len(i) == 32 for i in ids)
    for bad in (None, "", "short", "x" * 200, "../../etc/passwd", 123, "a b c d e f g h i j k l m n o p"):
        assert not valid_id(bad)


def test_transcripts_per_browser_are_bounded(store, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_TRANSCRIPTS_PER_BROWSER", 3)
    browser = new_id()
    ids = [store.save_upload(browser, f"f{i}.wav", [Segment(0, 1, f"file {i}")], duration=1) for i in range(5)]
    kept = [h.id for h in store.list_transcripts(browser)]
    assert kept == ids[-3:][::-1]  # newest first, the oldest went
    other = new_id()
    store.save_upload(other, "x.wav", [Segment(0, 1, "x")], duration=1)
    assert len(store.list_transcripts(browser)) == 3  # another browser's limit is its own


# -- the tab's sink ----------------------------------------------------------------------


async def test_tab_finals_clear_new_and_restore(store):
    from web.live import TabState
    from web.recorder import attach, start_new

    tab = TabState()
    browser, tab_id = await attach(tab, None, store)  # first visit: new ids
    assert valid_id(browser) and valid_id(tab_id)
    tab.apply(_final(0, 0.5, 2.0, "first words"), offset_s=0.0)
    tab.apply(_final(1, 3.0, 4.5, "second words"), offset_s=0.0)
    tab.apply(_final(2, 5.0, 5.5, "   "), offset_s=0.0)  # empty: not a line, not stored
    await asyncio.sleep(0)
    await asyncio.to_thread(lambda: None)
    stored = store.current_live(browser)  # queued after the writes: sees them
    assert [s.text for s in stored.segments] == ["first words", "second words"]

    # A reload of the tab (a fresh TabState, same ids): the transcript is back, times go on.
    again = TabState()
    assert await attach(again, browser, store, tab_id) == (browser, tab_id)
    assert [f.text for f in again.transcript.finals] == ["first words", "second words"]
    again.apply(_final(0, 0.2, 1.0, "after the reload"), offset_s=again.offset_s)
    assert again.transcript.finals[-1].start_s >= 4.5
    stored = store.current_live(browser)
    assert [s.text for s in stored.segments][-1] == "after the reload"

    # Another browser: its own, empty transcript.
    stranger = TabState()
    await attach(stranger, None, store)
    assert stranger.transcript.finals == []

    # New transcript: the old one goes to the history, the next final starts another.
    old_id = stored.info.id
    start_new(again)
    assert again.transcript.finals == []
    again.apply(_final(1, 0.0, 1.0, "a fresh start"), offset_s=again.offset_s)
    current = store.current_live(browser)
    assert current.info.id != old_id and [s.text for s in current.segments] == ["a fresh start"]
    assert [h.id for h in store.list_transcripts(browser)] == [old_id]

    # Clear: gone for good, from the file too.
    again.clear()
    assert store.delete(new_id(), browser).result() is False  # (a barrier: the delete ran)
    assert store.current_live(browser) is None
    assert store.get(current.info.id, browser) is None
    fresh = TabState()
    await attach(fresh, browser, store, tab_id)
    assert fresh.transcript.finals == []


async def test_a_failing_store_is_shown_not_fatal(tmp_path):
    from web.live import TabState
    from web.recorder import attach

    s = TranscriptStore.open_dir(str(tmp_path))
    tab = TabState()
    await attach(tab, None, s)
    s.close()
    tab.apply(_final(0, 0.0, 1.0, "spoken after the store closed"), offset_s=0.0)
    assert [f.text for f in tab.transcript.finals] == ["spoken after the store closed"]  # still shown
    assert tab.message and "could not be saved" in tab.message


def test_database_size_is_bounded(store, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_DB_MB", 0.25)  # 256 KiB
    browsers = [new_id() for _ in range(30)]
    for b in browsers:
        store.save_upload(b, "long.wav", [Segment(i, i + 1, "many words in a long recording " * 4) for i in range(60)], duration=60)
    live, owner = new_id(), browsers[0]
    store.append_final(live, owner, 0, 1, "the current live transcript is never pruned").result()
    for b in browsers[:5]:
        store.save_upload(b, "more.wav", [Segment(i, i + 1, "more words " * 10) for i in range(60)], duration=60)
    # What the limit holds (SQLite: the file's pages in use; PostgreSQL: the rows' text).
    used = store.submit(lambda db: db.used_bytes()).result()
    assert used <= 0.25 * 1024 * 1024 + 64 * 1024  # the limit, give or take the newest transcript
    assert store.current_live(owner).info.id == live
    assert store.list_transcripts(browsers[5]) == []  # an old one (no newer upload) went first
    assert [h.title for h in store.list_transcripts(browsers[4])][:1] == ["more.wav"]  # the newest stayed


# -- tabs of one browser (issue 17) ------------------------------------------------------


async def _written(store: TranscriptStore) -> None:
    """Every write submitted so far has reached the file (the writer runs in order)."""
    await asyncio.to_thread(store.list_transcripts, new_id())


async def test_tabs_of_one_browser_keep_their_own_transcripts(store):
    from web.live import TabState
    from web.recorder import OpenTabs, attach, detach, start_new

    pages = OpenTabs()
    a, b = TabState(), TabState()
    browser, tab_a = await attach(a, None, store, session="page-a", pages=pages)
    a.apply(_final(0, 0.0, 1.0, "tab a speaks"), offset_s=0.0)
    await _written(store)

    # A second tab of the same browser, while the first is open: its own, empty transcript.
    assert (await attach(b, browser, store, None, session="page-b", pages=pages))[0] == browser
    tab_b = b.sink.tab_id
    assert tab_b != tab_a and b.transcript.finals == []
    # Both record at once: two transcripts, each on its own timeline.
    b.apply(_final(0, 0.0, 2.0, "tab b speaks"), offset_s=0.0)
    a.apply(_final(1, 1.5, 2.5, "tab a again"), offset_s=0.0)
    await _written(store)
    assert [s.text for s in store.current_live(browser, tab_a).segments] == ["tab a speaks", "tab a again"]
    assert [s.text for s in store.current_live(browser, tab_b).segments] == ["tab b speaks"]

    # Clear and New in tab B leave tab A's transcript alone.
    b.clear()
    await _written(store)
    b.apply(_final(1, 3.0, 4.0, "b after clear"), offset_s=0.0)
    start_new(b)
    await _written(store)
    assert [s.text for s in store.current_live(browser, tab_a).segments] == ["tab a speaks", "tab a again"]
    a.apply(_final(2, 3.0, 4.0, "a goes on"), offset_s=0.0)
    await _written(store)
    assert [s.text for s in store.current_live(browser, tab_a).segments][-1] == "a goes on"
    assert [h.first_words for h in store.list_transcripts(browser)] == ["b after clear"]  # B's New

    # A reload of tab A (same tab id) shows tab A's transcript, not tab B's.
    detach("page-a", pages)
    reloaded = TabState()
    await attach(reloaded, browser, store, tab_a, session="page-a2", pages=pages)
    assert [f.text for f in reloaded.transcript.finals] == ["tab a speaks", "tab a again", "a goes on"]

    # Tab A is closed; a new tab gets its transcript back (B, still open, keeps its own).
    detach("page-a2", pages)
    c = TabState()
    _, tab_c = await attach(c, browser, store, None, session="page-c", pages=pages)
    assert [f.text for f in c.transcript.finals] == ["tab a speaks", "tab a again", "a goes on"]
    c.apply(_final(0, 0.0, 1.0, "c continues"), offset_s=c.offset_s)
    await _written(store)
    assert [s.text for s in store.current_live(browser, tab_c).segments][-1] == "c continues"
    assert store.current_live(browser, tab_a, held_tabs={tab_b, tab_c}) is None  # taken over, not shared
    # Another new tab while B and C are open: nothing free to take, an empty transcript.
    d = TabState()
    await attach(d, browser, store, None, session="page-d", pages=pages)
    assert d.transcript.finals == []


def test_a_schema_1_database_opens_and_keeps_its_transcripts(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    path = data / DB_NAME
    browser, live, upload = new_id(), new_id(), new_id()
    with sqlite3.connect(path) as db:  # what version 1 of the app wrote
        db.executescript(
            """
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE transcripts (
                id TEXT PRIMARY KEY, browser_id TEXT NOT NULL, kind TEXT NOT NULL CHECK (kind IN ('live', 'upload')),
                created REAL NOT NULL, updated REAL NOT NULL, title TEXT NOT NULL DEFAULT '',
                first_words TEXT NOT NULL DEFAULT '', duration REAL NOT NULL DEFAULT 0, language TEXT,
                current INTEGER NOT NULL DEFAULT 0, segment_count INTEGER NOT NULL DEFAULT 0);
            CREATE INDEX transcripts_by_browser ON transcripts (browser_id, updated);
            CREATE INDEX transcripts_by_updated ON transcripts (updated);
            CREATE TABLE segments (transcript_id TEXT NOT NULL, seq INTEGER NOT NULL, start REAL NOT NULL,
                "end" REAL NOT NULL, text TEXT NOT NULL, utterance_id INTEGER, PRIMARY KEY (transcript_id, seq)) WITHOUT ROWID;
            PRAGMA user_version = 1;
            """
        )
        db.execute("INSERT INTO transcripts VALUES (?, ?, 'live', 1, 2, '', 'old words', 1.5, 'en', 1, 1)", (live, browser))
        db.execute("INSERT INTO segments VALUES (?, 0, 0.0, 1.5, 'old words', 0)", (live,))
        db.execute("INSERT INTO transcripts VALUES (?, ?, 'upload', 1, 1, 'a.wav', 'file words', 2, 'en', 0, 1)", (upload, browser))
        db.execute("INSERT INTO segments VALUES (?, 0, 0.0, 2.0, 'file words', NULL)", (upload,))

    s = TranscriptStore.open_dir(str(data))
    try:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
        assert [h.id for h in s.list_transcripts(browser)] == [upload]
        tab = new_id()
        got = s.current_live(browser, tab)  # the browser's first tab takes the old live transcript
        assert got is not None and got.info.id == live and [x.text for x in got.segments] == ["old words"]
        assert s.current_live(browser, new_id(), held_tabs={tab}) is None  # held by that tab now
        s.append_final(live, browser, 2.0, 3.0, "new words", tab_id=tab).result()
    finally:
        s.close()
    s = TranscriptStore.open_dir(str(data))  # opened again: already at the new version
    try:
        assert [x.text for x in s.current_live(browser, tab).segments] == ["old words", "new words"]
    finally:
        s.close()


async def test_a_reload_while_the_old_page_flushes_shows_the_last_final(store):
    from web.live import TabState
    from web.recorder import OpenTabs, attach, detach

    pages = OpenTabs()
    old = TabState()
    browser, tab_id = await attach(old, None, store, session="before", pages=pages)
    old.apply(_final(0, 0.0, 1.0, "first utterance"), offset_s=0.0)
    old.live = True  # its stream is still flushing the last utterance

    detach("before", pages)  # the page reloads
    new = TabState()
    assert await attach(new, browser, store, tab_id, session="after", pages=pages) == (browser, tab_id)
    assert [f.text for f in new.transcript.finals] == ["first utterance"]
    shown = new.version

    old.apply(_final(1, 2.0, 3.0, "the last utterance"), offset_s=0.0)  # the flush lands
    assert [f.text for f in new.transcript.finals] == ["first utterance", "the last utterance"]
    assert new.version > shown  # the page's next render shows it
    await _written(store)
    assert [s.text for s in store.current_live(browser, tab_id).segments] == ["first utterance", "the last utterance"]

    # Later finals of the new page go on in the same stored transcript.
    new.apply(_final(0, 0.0, 1.0, "after the reload"), offset_s=new.offset_s)
    await _written(store)
    stored = store.current_live(browser, tab_id)
    assert [s.text for s in stored.segments][-1] == "after the reload" and stored.segments[-1].start >= 3.0


def test_words_speakers_and_speaker_names_are_kept(tmp_path):
    """Schema 3: a final's words (times, confidence) and speaker label, an upload segment's
    too, and the names a person gives speakers, all read back after a restart."""
    from engine.base import Word

    data = str(tmp_path / "data")
    s = TranscriptStore.open_dir(data)
    browser, tid = new_id(), new_id()
    words = (Word(" Hello", 0.12, 0.48, 0.93), Word(" wörld", 0.5, 0.91, 0.41))
    s.append_final(tid, browser, 0.1, 1.0, "Hello wörld", utterance_id=0, words=words, speaker="Speaker 1")
    s.append_final(tid, browser, 1.5, 2.0, "no words here", utterance_id=1)
    # An upload's segments: anything with start/end/text, and words/speaker where it has them.
    segments = [SimpleNamespace(start=0.0, end=1.0, text=" from a file", words=[Word(" from", 0.0, 0.3, 0.8)], speaker="Speaker 2")]
    upload = s.save_upload(browser, "talk.wav", segments, duration=1.0)
    assert s.name_speaker(tid, browser, "Speaker 1", "  Ada   Lovelace ").result() is True
    assert s.name_speaker(tid, new_id(), "Speaker 1", "Mallory").result() is False  # not that browser's
    s.close()

    s = TranscriptStore.open_dir(data)
    try:
        live = s.current_live(browser)
        assert live.segments[0].words == words and live.segments[0].speaker == "Speaker 1"
        assert live.segments[1].words == () and live.segments[1].speaker is None
        assert live.info.speaker_names == {"Speaker 1": "Ada Lovelace"}
        got = s.get(upload, browser)
        assert got.segments[0].words == (Word(" from", 0.0, 0.3, 0.8),) and got.segments[0].speaker == "Speaker 2"
        assert s.name_speaker(tid, browser, "Speaker 1", "").result() and s.get(tid, browser).info.speaker_names == {}
    finally:
        s.close()


def test_a_schema_2_database_gains_words_and_speakers_and_keeps_its_rows(tmp_path):
    data = str(tmp_path / "data")
    s = TranscriptStore.open_dir(data)
    browser, tid = new_id(), new_id()
    s.append_final(tid, browser, 0.0, 1.0, "before the upgrade", tab_id=new_id())
    s.close()
    path = os.path.join(data, DB_NAME)
    with sqlite3.connect(path) as db:  # back to what version 2 wrote: no words, speaker, speaker_names
        for table, column in (("segments", "words"), ("segments", "speaker"), ("transcripts", "speaker_names")):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 2")

    s = TranscriptStore.open_dir(data)
    try:
        got = s.current_live(browser)
        assert [x.text for x in got.segments] == ["before the upgrade"] and got.segments[0].words == ()
        s.append_final(tid, browser, 1.0, 2.0, "after", speaker="Speaker 1").result()
        assert s.current_live(browser).segments[1].speaker == "Speaker 1"
    finally:
        s.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION == 3


def test_a_damaged_words_row_loses_its_times_not_its_text(tmp_path):
    data = str(tmp_path / "data")
    s = TranscriptStore.open_dir(data)
    browser, tid = new_id(), new_id()
    s.append_final(tid, browser, 0.0, 1.0, "kept text").result()
    s.close()
    with sqlite3.connect(os.path.join(data, DB_NAME)) as db:
        db.execute("UPDATE segments SET words = '[not json'")
    s = TranscriptStore.open_dir(data)
    try:
        seg = s.current_live(browser).segments[0]
        assert seg.text == "kept text" and seg.words == ()
    finally:
        s.close()
