"""The page's transcripts on disk: one SQLite file (standard library, WAL mode) in DATA_DIR,
or a PostgreSQL database shared by every app replica when DATABASE_URL is set.

Why a database and not the tab's memory: a reload, a closed tab or a server restart must
not lose what was said. Each live final is written when it lands (one short transaction,
fsynced), so a crash loses at most the utterance being spoken.

    transcripts(id, browser_id, kind live|upload, created, updated, title, first_words,
                duration, language, current, tab_id)
                current = 1: the live transcript of the browser's tab `tab_id` (one per tab)
    segments(transcript_id, seq, start, end, text, utterance_id)
    meta(key, value)                              schema version, the BrowserState secret

Threads: every operation runs on one writer thread that owns the only connection, in the
order it was submitted (`submit` returns a `concurrent.futures.Future` at once, so the
event loop never waits on the disk; the plain methods wait for their result). So a final
and a later "clear" reach the file in the order they happened, from any thread.

Backends (one interface, nothing above the store knows which runs): web/store_sqlite.py
(the file, the default) and web/store_pg.py (PostgreSQL); both run the statements of
web/store_sql.py on the connection the writer thread owns. `TranscriptStore.open` picks one.

Errors come early and say what to do: a file that is not a database, a corrupt one, one
locked by another process, or a folder that can't be written fails `TranscriptStore(...)`
with `StoreError`; so do a PostgreSQL server that can't be reached, a wrong password and a
missing database (named as DATABASE_URL without its password). A call after `close()`
raises `StoreClosedError`. A PostgreSQL connection that drops (the server restarted) is
opened again for the next operation; the one that saw it drop fails with StoreError.

Schema changes are steps in `web.store_sql._migrate`, run at start for both backends (the
version is SQLite's PRAGMA user_version, a `meta` row on PostgreSQL; replicas starting
together take turns), so a database of an older version opens and keeps its transcripts;
a newer one is refused.

Limits (so one browser, or many, can't fill the disk): at most MAX_TRANSCRIPTS_PER_BROWSER
transcripts per browser and MAX_DB_MB for the file; past either, the least recently updated
transcripts (never a browser's current live one) are deleted when a new one is created.
A live transcript holds at most MAX_SEGMENTS_PER_TRANSCRIPT finals; the next one starts a
new transcript (the full one stays in the history).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from web.store_sql import (  # noqa: F401 - re-exported: the store's names live here for callers
    _SCHEMA,
    BUSY_TIMEOUT_S,
    DB_NAME,
    FIRST_WORDS,
    MAX_DB_MB,
    MAX_SEGMENTS_PER_TRANSCRIPT,
    MAX_TRANSCRIPTS_PER_BROWSER,
    SCHEMA_VERSION,
    Db,
    StoreClosedError,
    StoredSegment,
    StoredTranscript,
    StoreError,
    TranscriptInfo,
    _append_final,
    _archive,
    _browser_secret,
    _current_live,
    _delete,
    _get,
    _list,
    _migrate,
    _name_speaker,
    _save_upload,
    _transaction,
    create_schema,
    new_id,
    valid_id,
    words_json,
)
from web.store_sqlite import SqliteBackend

log = logging.getLogger(__name__)

T = TypeVar("T")


class Backend(Protocol):
    """Where the transcripts are: opens the connection the writer thread owns."""

    #: Shown in messages and logs: the SQLite file, or DATABASE_URL without its password.
    location: str
    #: What its connection raises (turned into StoreError with `explain`).
    errors: tuple[type[BaseException], ...]

    def connect(self) -> Db: ...

    def explain(self, exc: BaseException) -> str: ...


def _open(backend: Backend) -> Db:
    """Connect, then bring the schema to SCHEMA_VERSION in one transaction (a write at start:
    another process's lock shows now, not at the first final)."""
    db = backend.connect()
    try:
        with _transaction(db):
            db.lock("schema")  # PostgreSQL: replicas starting together migrate one at a time
            version = db.schema_version()
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"The transcript database {backend.location} was written by a newer version of the app "
                    f"(schema {version} > {SCHEMA_VERSION}); use that version or another DATA_DIR / DATABASE_URL."
                )
            create_schema(db)
            _migrate(db, version)
            db.set_schema_version(SCHEMA_VERSION)
        return db
    except BaseException:
        db.close()
        raise


class TranscriptStore:
    """All transcripts of the page, in one SQLite file or a PostgreSQL database, used from any thread."""

    def __init__(self, path: str = "", *, busy_timeout_s: float = BUSY_TIMEOUT_S, backend: Backend | None = None) -> None:
        self._backend: Backend = backend if backend is not None else SqliteBackend(path, busy_timeout_s)
        #: Where the transcripts are (the file, or DATABASE_URL without its password).
        self.path = self._backend.location
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple, Future] | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="transcript-store", daemon=True)
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._closed = True
            self._thread.join(5)
            raise

    @classmethod
    def open_dir(cls, data_dir: str, **kwargs: Any) -> TranscriptStore:
        """The store in `data_dir` (created, private to this user, if missing)."""
        data_dir = os.path.abspath(os.path.expanduser(data_dir))
        try:
            os.makedirs(data_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"DATA_DIR {data_dir} can't be created ({exc}); set DATA_DIR to a writable folder.") from exc
        return cls(os.path.join(data_dir, DB_NAME), **kwargs)

    @classmethod
    def open(cls, data_dir: str, database_url: str = "") -> TranscriptStore:
        """The store the settings name: PostgreSQL at `database_url` when it is set (shared by
        replicas), else the SQLite file in `data_dir`."""
        if not database_url:
            return cls.open_dir(data_dir)
        try:
            from web.store_pg import PostgresBackend  # psycopg only where it is used
        except ImportError as exc:
            raise StoreError(f"DATABASE_URL is set but psycopg can't be imported ({exc}); pip install -r requirements/app.txt") from exc

        return cls(backend=PostgresBackend(database_url))

    # -- the writer thread ---------------------------------------------------------------

    def _run(self, ready: Future) -> None:
        backend = self._backend
        try:
            db = _open(backend)
        except StoreError as exc:
            ready.set_exception(exc)
            return
        except backend.errors as exc:
            ready.set_exception(StoreError(backend.explain(exc)))
            return
        ready.set_result(None)
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                fn, args, fut = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    if db.broken:  # the server restarted: a new connection for this operation
                        db.close()
                        db = _open(backend)
                    fut.set_result(fn(db, *args))
                except BaseException as exc:  # noqa: BLE001 - the caller's future carries it
                    if not db.broken and db.in_transaction:
                        try:
                            db.execute("ROLLBACK")
                        except backend.errors:
                            log.warning("transcript store: the rollback failed too", exc_info=True)
                    if isinstance(exc, backend.errors):
                        exc = StoreError(backend.explain(exc))
                    fut.set_exception(exc)
        finally:
            db.close()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run `fn(connection, *args)` on the writer thread, after everything submitted before."""
        fut: Future[T] = Future()
        with self._close_lock:
            if self._closed:
                raise StoreClosedError(f"The transcript store {self.path} is closed; nothing more can be written.")
            self._queue.put((fn, args, fut))
        return fut

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def close(self) -> None:
        """Finish what was submitted, then close the file. Later calls raise StoreClosedError."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- operations (each one transaction on the writer thread) ---------------------------

    def browser_secret(self) -> str:
        """A random secret made once per DATA_DIR (gr.BrowserState's key must survive restarts)."""
        return self._call(_browser_secret)

    def append_final(
        self,
        transcript_id: str,
        browser_id: str,
        start: float,
        end: float,
        text: str,
        *,
        utterance_id: int | None = None,
        language: str | None = None,
        tab_id: str | None = None,
        words: Iterable[Any] = (),
        speaker: str | None = None,
    ) -> Future[int]:
        """Add a final to a live transcript (created on its first final, as the current one of
        the browser's tab `tab_id`), with its words (objects with word/start/end/probability)
        and speaker label if it has them. Future: its segment count."""
        return self.submit(
            _append_final, transcript_id, browser_id, tab_id, float(start), float(end), text, utterance_id, language,
            time.time(), words_json(tuple(words)), speaker,
        )

    def save_upload(
        self, browser_id: str, title: str, segments: Iterable[Any], *, duration: float, language: str | None = None
    ) -> str:
        """Store a transcribed recording (segments with start/end/text, and `words` / `speaker`
        where they have them); returns its id."""
        rows = [
            (float(s.start), float(s.end), str(s.text).strip(), words_json(getattr(s, "words", None)), getattr(s, "speaker", None))
            for s in segments
        ]
        rows = [r for r in rows if r[2]]
        return self._call(_save_upload, new_id(), browser_id, title, rows, float(duration), language, time.time())

    def current_live(
        self, browser_id: str, tab_id: str | None = None, *, held_tabs: Iterable[str] = ()
    ) -> StoredTranscript | None:
        """The live transcript a tab shows and Record continues: the tab's own, else one that
        no open tab (`held_tabs`: the browser's tabs open now) holds, which becomes this tab's.
        Without `tab_id`: the browser's most recent current transcript."""
        return self._call(_current_live, browser_id, tab_id, frozenset(held_tabs))

    def archive(self, transcript_id: str, browser_id: str) -> Future[None]:
        """The live transcript is no longer the current one (it stays in the history)."""
        return self.submit(_archive, transcript_id, browser_id)

    def name_speaker(self, transcript_id: str, browser_id: str, label: str, name: str) -> Future[bool]:
        """Name speaker `label` ("Speaker 1") of this browser's transcript; "" takes the name back.
        Future: whether the transcript was this browser's."""
        return self.submit(_name_speaker, transcript_id, browser_id, label, name)

    def delete(self, transcript_id: str, browser_id: str) -> Future[bool]:
        """Delete a transcript of this browser for good."""
        return self.submit(_delete, transcript_id, browser_id)

    def list_transcripts(self, browser_id: str, *, include_current: bool = False) -> list[TranscriptInfo]:
        """This browser's transcripts, newest first."""
        return self._call(_list, browser_id, include_current)

    def get(self, transcript_id: str, browser_id: str) -> StoredTranscript | None:
        """One transcript with its segments, only if it belongs to `browser_id`."""
        return self._call(_get, transcript_id, browser_id)
