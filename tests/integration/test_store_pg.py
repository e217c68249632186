"""The transcript store on a real PostgreSQL (DATABASE_URL): the same behaviour as SQLite,
shared by replicas.

One throwaway server for the module (tests/integration/pg_server.py: Debian's binaries,
a temporary folder, 127.0.0.1 on a free port, password authentication), one new database
per test. Skipped, saying why, where the binaries are absent; scripts/setup.sh --test
installs them.

Checked:
- the store's own suite (tests/unit/test_store.py: isolation per browser, uploads,
  history, delete, archive, concurrent writers, the per-browser and size limits, tabs,
  a reload while the old page flushes) passes on PostgreSQL unchanged: its tests are
  imported here and get this module's `store` fixture;
- two stores on one database (two app replicas) see one browser's transcripts: a tab's
  live transcript written through one continues through the other after the first
  closes (its replica died), and both give the page the same browser secret;
- two tabs of one browser loading on two replicas at once never take over the same
  orphaned transcript, and two replicas appending to one transcript at once lose no
  final (the per-browser lock);
- replicas starting together on an empty database make the schema once, without errors;
- a database of schema 1 migrates and keeps its transcripts; a newer one is refused;
- start errors (no server there, wrong password, missing database) are StoreError naming
  DATABASE_URL without its password; the app itself stops with that message;
- a connection the server drops (terminated, or the server restarted) is replaced for
  the next operation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration import pg_server
from tests.integration.misbehaving_server import free_port

# The backend-neutral tests of the store's suite, run again here on PostgreSQL.
from tests.unit.test_store import (  # noqa: F401 - collected by pytest in this module
    test_a_reload_while_the_old_page_flushes_shows_the_last_final,
    test_concurrent_writers_from_threads_lose_nothing,
    test_database_size_is_bounded,
    test_other_browsers_see_nothing,
    test_tab_finals_clear_new_and_restore,
    test_tabs_of_one_browser_keep_their_own_transcripts,
    test_transcripts_per_browser_are_bounded,
    test_uploads_delete_and_history,
)
from web import store_pg
from web.store import SCHEMA_VERSION, StoreError, TranscriptStore, new_id

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(pg_server.missing_reason() is not None, reason=str(pg_server.missing_reason()))


@pytest.fixture(scope="module")
def pg():
    server = pg_server.start()
    yield server
    server.stop()


_databases = iter(range(1_000_000))


@pytest.fixture
def database_url(pg) -> str:
    """A new, empty database on the module's server."""
    return pg.createdb(f"rtw_{os.getpid()}_{next(_databases)}")


@pytest.fixture
def store(database_url):
    s = TranscriptStore.open("", database_url)
    yield s
    s.close()


def test_the_store_says_where_it_is_without_the_password(store, database_url):
    assert store.path.startswith("postgresql://rtw@127.0.0.1:") and pg_server.PASSWORD not in store.path
    assert store.path.endswith("/" + database_url.rsplit("/", 1)[1])


def test_two_replicas_see_one_browsers_transcripts(database_url):
    first = TranscriptStore.open("", database_url)
    second = TranscriptStore.open("", database_url)
    try:
        browser, tab, live = new_id(), new_id(), new_id()
        assert first.browser_secret() == second.browser_secret()  # the page's key, shared
        for i in range(3):
            first.append_final(live, browser, i, i + 1, f"said on replica one {i}", tab_id=tab, utterance_id=i)
        up = first.save_upload(browser, "call.wav", [], duration=0.0)
        first.close()  # the replica goes away; its writes were finished first

        # The browser reloads onto the other replica: its tab's transcript is whole there.
        shown = second.current_live(browser, tab, held_tabs={tab})
        assert shown is not None and shown.info.id == live
        assert [s.text for s in shown.segments] == [f"said on replica one {i}" for i in range(3)]
        assert second.append_final(live, browser, 3, 4, "and on replica two", tab_id=tab).result() == 4
        assert [h.id for h in second.list_transcripts(browser)] == [up]
        assert second.current_live(new_id(), tab) is None  # another browser still sees nothing
    finally:
        first.close()
        second.close()


def _load_tab(start: threading.Barrier, replica: TranscriptStore, browser: str, tab: str, open_tabs: set[str]):
    """A tab's page load on one replica, at the same moment as the other's."""
    start.wait()
    return replica.current_live(browser, tab, held_tabs=open_tabs)


def test_two_tabs_on_two_replicas_never_take_the_same_transcript(database_url):
    """An orphaned live transcript (its tab closed) goes to exactly one of two tabs that
    load at the same moment on two replicas. (Which tabs are open is known per replica:
    `held_tabs` here names both, as one replica would; the proxy's affinity by browser
    keeps a browser's tabs on one replica.)"""
    replicas = [TranscriptStore.open("", database_url) for _ in range(2)]
    try:
        for _ in range(15):
            browser, orphan = new_id(), new_id()
            replicas[0].append_final(orphan, browser, 0, 1, "from a closed tab", tab_id=new_id()).result()
            tabs = [new_id(), new_id()]
            start = threading.Barrier(2)
            with ThreadPoolExecutor(2) as pool:
                got = list(pool.map(_load_tab, [start] * 2, replicas, [browser] * 2, tabs, [set(tabs)] * 2))
            taken = [g.info.id for g in got if g is not None]
            assert taken == [orphan], got
    finally:
        for r in replicas:
            r.close()


def _append_many(start: threading.Barrier, replica: TranscriptStore, tid: str, browser: str, name: str) -> None:
    start.wait()
    futures = [replica.append_final(tid, browser, i, i + 1, f"{name} {i}") for i in range(30)]
    for f in futures:
        f.result()


def test_two_replicas_appending_to_one_transcript_lose_nothing(database_url):
    """A reload onto another replica while the old page still flushes: both write finals
    to one transcript at once; every final is stored once, numbered in one sequence."""
    replicas = [TranscriptStore.open("", database_url) for _ in range(2)]
    try:
        browser, tid = new_id(), new_id()
        replicas[0].append_final(tid, browser, 0, 1, "first").result()
        start = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(_append_many, [start] * 2, replicas, [tid] * 2, [browser] * 2, ["a", "b"]))
        texts = [s.text for s in replicas[1].get(tid, browser).segments]
        assert len(texts) == 61 and sorted(texts[1:]) == sorted([f"a {i}" for i in range(30)] + [f"b {i}" for i in range(30)])
        assert [t for t in texts if t.startswith("a ")] == [f"a {i}" for i in range(30)]  # each replica's order kept
        info = replicas[0].get(tid, browser).info
        assert info.segment_count == 61
    finally:
        for r in replicas:
            r.close()


def test_replicas_starting_together_make_the_schema_once(database_url):
    start = threading.Barrier(4)

    def open_one(_: int) -> TranscriptStore:
        start.wait()
        return TranscriptStore.open("", database_url)

    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(open_one, range(4)))
    try:
        version = stores[0].submit(lambda db: db.schema_version()).result()
        assert version == SCHEMA_VERSION
        assert len({s.browser_secret() for s in stores}) == 1
    finally:
        for s in stores:
            s.close()


def _schema_1(db, browser: str, live: str) -> None:
    """What a PostgreSQL store of schema 1 held: no tab_id; one current live transcript."""
    db.execute("BEGIN")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        "CREATE TABLE transcripts (id TEXT PRIMARY KEY, browser_id TEXT NOT NULL, kind TEXT NOT NULL, "
        "created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, title TEXT NOT NULL DEFAULT '', "
        "first_words TEXT NOT NULL DEFAULT '', duration DOUBLE PRECISION NOT NULL DEFAULT 0, language TEXT, "
        "current INTEGER NOT NULL DEFAULT 0, segment_count INTEGER NOT NULL DEFAULT 0, "
        "rowid BIGINT GENERATED ALWAYS AS IDENTITY)"
    )
    db.execute(
        'CREATE TABLE segments (transcript_id TEXT NOT NULL, seq INTEGER NOT NULL, start DOUBLE PRECISION NOT NULL, '
        '"end" DOUBLE PRECISION NOT NULL, text TEXT NOT NULL, utterance_id INTEGER, PRIMARY KEY (transcript_id, seq))'
    )
    db.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('browser_secret', 'kept-secret')")
    db.execute(
        "INSERT INTO transcripts (id, browser_id, kind, created, updated, first_words, duration, current, segment_count) "
        "VALUES (?, ?, 'live', 1, 2, 'before the upgrade', 3, 1, 1)",
        (live, browser),
    )
    db.execute("INSERT INTO segments VALUES (?, 0, 0, 3, 'before the upgrade', 0)", (live,))
    db.execute("COMMIT")


def test_a_schema_1_database_migrates_and_keeps_its_transcripts(database_url):
    browser, live = new_id(), new_id()
    db = store_pg.PostgresBackend(database_url).connect()
    try:
        _schema_1(db, browser, live)
    finally:
        db.close()
    s = TranscriptStore.open("", database_url)
    try:
        assert s.submit(lambda db: (db.schema_version(), "tab_id" in db.columns("transcripts"))).result() == (SCHEMA_VERSION, True)
        assert s.browser_secret() == "kept-secret"  # browsers are still known
        tab = new_id()
        taken = s.current_live(browser, tab, held_tabs={tab})  # the old browser-wide one goes to a tab
        assert taken is not None and taken.info.id == live and [x.text for x in taken.segments] == ["before the upgrade"]
        assert s.append_final(live, browser, 3, 4, "after it", tab_id=tab).result() == 2
        s.submit(lambda db: db.set_schema_version(SCHEMA_VERSION + 1)).result()  # a newer app wrote it
    finally:
        s.close()
    with pytest.raises(StoreError, match="newer version"):
        TranscriptStore.open("", database_url)


@pytest.mark.parametrize("case", ["no server", "wrong password", "no database"])
def test_start_errors_name_database_url_without_its_password(pg, case):
    url = {
        "no server": pg.url(port=free_port()),
        "wrong password": pg.url(password="not-the-password"),
        "no database": pg.url("no_such_database"),
    }[case]
    with pytest.raises(StoreError) as info:
        TranscriptStore.open("", url)
    message = str(info.value)
    assert "DATABASE_URL postgresql://rtw@127.0.0.1:" in message
    assert "not-the-password" not in message and pg_server.PASSWORD not in message
    expected = {"no server": "can't be reached", "wrong password": "user name or password", "no database": "no such database"}
    assert expected[case] in message, message


def test_the_app_stops_at_start_naming_database_url(pg):
    """app.py main(): a wrong DATABASE_URL stops it before the engine loads, with the message."""
    env = {**os.environ, "DATABASE_URL": pg.url(password="wrong-password-here"), "ENGINE": "remote",
           "ENDPOINT_URL": "http://127.0.0.1:9/v1", "GRADIO_SERVER_PORT": str(free_port())}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "error: The transcript database at DATABASE_URL postgresql://rtw@127.0.0.1:" in done.stderr, done.stderr[-2000:]
    assert "wrong-password-here" not in done.stderr + done.stdout


def test_the_store_carries_on_after_the_database_restarts(store, pg):
    """A deploy of PostgreSQL (its connections closed): the write that meets the closed
    connection fails named as the store's error, the next opens a new one, nothing stored is lost."""
    browser, tid = new_id(), new_id()
    store.append_final(tid, browser, 0, 1, "before the restart").result()
    pg.restart()
    try:
        store.append_final(tid, browser, 1, 2, "met the closed connection").result()
    except StoreError as exc:
        assert "DATABASE_URL" in str(exc) and pg_server.PASSWORD not in str(exc)
    store.append_final(tid, browser, 2, 3, "after the restart").result()
    texts = [s.text for s in store.get(tid, browser).segments]
    assert texts[0] == "before the restart" and texts[-1] == "after the restart"


def test_a_dropped_connection_is_opened_again(store, pg, database_url):
    browser, tid = new_id(), new_id()
    store.append_final(tid, browser, 0, 1, "before the drop").result()
    pid = store.submit(lambda db: db.execute("SELECT pg_backend_pid()").fetchone()[0]).result()
    other = store_pg.PostgresBackend(database_url).connect()
    try:
        other.execute("SELECT pg_terminate_backend(?)", (pid,))
    finally:
        other.close()
    try:  # the operation that meets the dropped connection may fail, named as the store's error
        store.append_final(tid, browser, 1, 2, "maybe lost").result()
    except StoreError as exc:
        assert "DATABASE_URL" in str(exc)
    store.append_final(tid, browser, 2, 3, "after the drop").result()
    texts = [s.text for s in store.get(tid, browser).segments]
    assert texts[0] == "before the drop" and texts[-1] == "after the drop"


def test_words_speakers_and_names_on_postgresql(store):
    """Schema 3 on PostgreSQL: the same rows as on SQLite (tests/unit/test_store.py)."""
    from engine.base import Word

    browser, tid = new_id(), new_id()
    words = (Word(" Hello", 0.12, 0.48, 0.93), Word(" there", 0.5, 0.9, 0.41))
    store.append_final(tid, browser, 0.1, 1.0, "Hello there", words=words, speaker="Speaker 2").result()
    assert store.name_speaker(tid, browser, "Speaker 2", "Grace").result()
    got = store.current_live(browser)
    assert got.segments[0].words == words and got.segments[0].speaker == "Speaker 2"
    assert got.info.speaker_names == {"Speaker 2": "Grace"}


def test_a_blocked_statement_times_out_with_a_clear_error(pg, database_url, monkeypatch):
    """A database that stops answering a write (here: a lock another connection holds on
    the segments table) fails that final with a StoreError naming the statement timeout
    within seconds, instead of holding the writer thread (and every final behind it)
    until the lock goes; the write after the lock is released goes through."""
    monkeypatch.setattr(store_pg, "STATEMENT_TIMEOUT_S", 1)
    store = TranscriptStore.open("", database_url)
    holder = store_pg.PostgresBackend(database_url).connect()
    try:
        assert store.submit(lambda db: db.execute("SHOW statement_timeout").fetchone()[0]).result(timeout=30) == "1s"
        browser, tid = new_id(), new_id()
        store.append_final(tid, browser, 0, 1, "before the lock").result(timeout=30)
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE segments IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        with pytest.raises(StoreError, match="did not finish a statement within its statement_timeout") as caught:
            store.append_final(tid, browser, 1, 2, "blocked by the lock").result(timeout=30)
        assert time.monotonic() - began < 10
        assert "DATABASE_URL" in str(caught.value) and pg_server.PASSWORD not in str(caught.value)
        holder.execute("ROLLBACK")
        store.append_final(tid, browser, 2, 3, "after the lock").result(timeout=30)
        assert [s.text for s in store.get(tid, browser).segments] == ["before the lock", "after the lock"]
    finally:
        holder.close()
        store.close()


def test_database_url_parameters_win_over_the_timeouts(pg, database_url):
    """The keepalives, TCP user timeout and statement timeout are on every connection,
    and a value DATABASE_URL gives itself is kept."""
    conn = store_pg.PostgresBackend(database_url + "?keepalives_idle=30&options=-c%20statement_timeout%3D2500").connect()
    try:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "2500ms"
        params = conn._conn.info.get_parameters()
        assert params["keepalives_idle"] == "30" and params["tcp_user_timeout"] == str(store_pg.TCP_DEAD_S * 1000)
    finally:
        conn.close()
