"""The page's transcripts on disk: one SQLite file (standard library, WAL mode) in DATA_DIR.

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

Errors come early and say what to do: a file that is not a database, a corrupt one, one
locked by another process, or a folder that can't be written fails `TranscriptStore(...)`
with `StoreError`; a call after `close()` raises `StoreClosedError`.

Schema changes are steps in `web.store_sql._migrate`, run at start (PRAGMA user_version
says which step a file is at), so a database of an older version opens and keeps its
transcripts; a newer one is refused.

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
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from web.store_sql import (  # noqa: F401 - re-exported: the store's names live here for callers
    _SCHEMA,
    BUSY_TIMEOUT_S,
    DB_NAME,
    FIRST_WORDS,
    MAX_DB_MB,
    MAX_SEGMENTS_PER_TRANSCRIPT,
    MAX_TRANSCRIPTS_PER_BROWSER,
    SCHEMA_VERSION,
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
    _save_upload,
    _transaction,
    new_id,
    valid_id,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def _explain(path: str, exc: BaseException) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return (
            f"The transcript database {path} is locked by another process (is a second copy of the app "
            f"running on the same DATA_DIR?). Stop it, or give this one its own DATA_DIR."
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text or "quick_check" in text:
        return (
            f"The transcript database {path} is corrupt or not a SQLite file ({exc}). Move it away "
            f"(the app then starts a new one) or restore a backup; set DATA_DIR to use another folder."
        )
    if "readonly" in text or "unable to open" in text or "permission" in text or "disk i/o" in text:
        return f"The transcript database {path} can't be opened for writing ({exc}). Check DATA_DIR's permissions and free space."
    return f"The transcript database {path} can't be used: {exc}"


class TranscriptStore:
    """All transcripts of the page, in one SQLite file, used from any thread."""

    def __init__(self, path: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple, Future] | None] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, args=(busy_timeout_s, ready), name="transcript-store", daemon=True)
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

    # -- the writer thread ---------------------------------------------------------------

    def _connect(self, busy_timeout_s: float) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
        try:
            try:
                os.chmod(self.path, 0o600)
            except OSError:
                pass
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"WAL mode refused (journal_mode {mode}); is the database locked?")
            db.execute("PRAGMA synchronous = FULL")  # a final that was written survives a crash
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise sqlite3.DatabaseError(f"quick_check failed: {'; '.join(str(r[0]) for r in check[:3])}")
            # A write at start: another process's lock shows now, not at the first final.
            with _transaction(db):
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"The transcript database {self.path} was written by a newer version of the app "
                        f"(schema {version} > {SCHEMA_VERSION}); use that version or another DATA_DIR."
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                _migrate(db, version)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return db
        except BaseException:
            db.close()
            raise

    def _run(self, busy_timeout_s: float, ready: Future) -> None:
        try:
            db = self._connect(busy_timeout_s)
        except StoreError as exc:
            ready.set_exception(exc)
            return
        except (sqlite3.Error, OSError) as exc:
            ready.set_exception(StoreError(_explain(self.path, exc)))
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
                    fut.set_result(fn(db, *args))
                except BaseException as exc:  # noqa: BLE001 - the caller's future carries it
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.Error):
                        exc = StoreError(_explain(self.path, exc))
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
    ) -> Future[int]:
        """Add a final to a live transcript (created on its first final, as the current one of
        the browser's tab `tab_id`). Future: its segment count."""
        return self.submit(
            _append_final, transcript_id, browser_id, tab_id, float(start), float(end), text, utterance_id, language, time.time()
        )

    def save_upload(
        self, browser_id: str, title: str, segments: Iterable[Any], *, duration: float, language: str | None = None
    ) -> str:
        """Store a transcribed recording (segments with start/end/text); returns its id."""
        rows = [(float(s.start), float(s.end), str(s.text).strip()) for s in segments]
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

    def delete(self, transcript_id: str, browser_id: str) -> Future[bool]:
        """Delete a transcript of this browser for good."""
        return self.submit(_delete, transcript_id, browser_id)

    def list_transcripts(self, browser_id: str, *, include_current: bool = False) -> list[TranscriptInfo]:
        """This browser's transcripts, newest first."""
        return self._call(_list, browser_id, include_current)

    def get(self, transcript_id: str, browser_id: str) -> StoredTranscript | None:
        """One transcript with its segments, only if it belongs to `browser_id`."""
        return self._call(_get, transcript_id, browser_id)
