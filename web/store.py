"""The page's transcripts on disk: one SQLite file (standard library, WAL mode) in DATA_DIR.

Why a database and not the tab's memory: a reload, a closed tab or a server restart must
not lose what was said. Each live final is written when it lands (one short transaction,
fsynced), so a crash loses at most the utterance being spoken.

    transcripts(id, browser_id, kind live|upload, created, updated, title, first_words,
                duration, language, current)      current = 1: the browser's live transcript
    segments(transcript_id, seq, start, end, text, utterance_id)
    meta(key, value)                              schema version, the BrowserState secret

Threads: every operation runs on one writer thread that owns the only connection, in the
order it was submitted (`submit` returns a `concurrent.futures.Future` at once, so the
event loop never waits on the disk; the plain methods wait for their result). So a final
and a later "clear" reach the file in the order they happened, from any thread.

Errors come early and say what to do: a file that is not a database, a corrupt one, one
locked by another process, or a folder that can't be written fails `TranscriptStore(...)`
with `StoreError`; a call after `close()` raises `StoreClosedError`.

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
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

DB_NAME = "transcripts.sqlite3"
SCHEMA_VERSION = 1
#: Transcripts kept per browser (live and uploads); the oldest go first.
MAX_TRANSCRIPTS_PER_BROWSER = 200
#: Finals in one live transcript (~4 days of speech at one final every 4 s).
MAX_SEGMENTS_PER_TRANSCRIPT = 100_000
#: Size of the database file past which the least recently updated transcripts go.
MAX_DB_MB = 1024
#: Words of a transcript shown in the history list.
FIRST_WORDS = 12
#: How long a start waits for another process's lock before giving up (seconds).
BUSY_TIMEOUT_S = 5.0

_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transcripts (
    id TEXT PRIMARY KEY,
    browser_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('live', 'upload')),
    created REAL NOT NULL,
    updated REAL NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    first_words TEXT NOT NULL DEFAULT '',
    duration REAL NOT NULL DEFAULT 0,
    language TEXT,
    current INTEGER NOT NULL DEFAULT 0,
    segment_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS transcripts_by_browser ON transcripts (browser_id, updated);
CREATE INDEX IF NOT EXISTS transcripts_by_updated ON transcripts (updated);
CREATE TABLE IF NOT EXISTS segments (
    transcript_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    text TEXT NOT NULL,
    utterance_id INTEGER,
    PRIMARY KEY (transcript_id, seq)
) WITHOUT ROWID;
"""

T = TypeVar("T")


class StoreError(RuntimeError):
    """The transcript database can't be used (corrupt, locked, unwritable)."""


class StoreClosedError(StoreError):
    """A call after `close()`."""


def new_id() -> str:
    """An unguessable id (browsers and transcripts): 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


@dataclass(frozen=True)
class StoredSegment:
    start: float
    end: float
    text: str
    utterance_id: int | None = None


@dataclass(frozen=True)
class TranscriptInfo:
    """One row of the history list."""

    id: str
    kind: str  # "live" or "upload"
    created: float  # time.time()
    updated: float
    title: str  # file name of an upload; "" for live
    first_words: str
    duration: float  # seconds (end of the last segment)
    language: str | None
    current: bool  # the browser's live transcript on the Live tab
    segment_count: int


@dataclass(frozen=True)
class StoredTranscript:
    info: TranscriptInfo
    segments: list[StoredSegment] = field(default_factory=list)


def _first_words(text: str, n: int = FIRST_WORDS) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


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
    def open_dir(cls, data_dir: str, **kwargs: Any) -> "TranscriptStore":
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
                except BaseException as exc:  # the caller's future carries it
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.Error):
                        exc = StoreError(_explain(self.path, exc))
                    fut.set_exception(exc)
        finally:
            db.close()

    def submit(self, fn: Callable[..., T], *args: Any) -> "Future[T]":
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
    ) -> "Future[int]":
        """Add a final to a live transcript (created on its first final). Future: its segment count."""
        return self.submit(_append_final, transcript_id, browser_id, float(start), float(end), text, utterance_id, language, time.time())

    def save_upload(
        self, browser_id: str, title: str, segments: Iterable[Any], *, duration: float, language: str | None = None
    ) -> str:
        """Store a transcribed recording (segments with start/end/text); returns its id."""
        rows = [(float(s.start), float(s.end), str(s.text).strip()) for s in segments]
        rows = [r for r in rows if r[2]]
        return self._call(_save_upload, new_id(), browser_id, title, rows, float(duration), language, time.time())

    def current_live(self, browser_id: str) -> StoredTranscript | None:
        """The browser's live transcript (the one the Live tab shows and Record continues)."""
        return self._call(_current_live, browser_id)

    def archive(self, transcript_id: str, browser_id: str) -> "Future[None]":
        """The live transcript is no longer the current one (it stays in the history)."""
        return self.submit(_archive, transcript_id, browser_id)

    def delete(self, transcript_id: str, browser_id: str) -> "Future[bool]":
        """Delete a transcript of this browser for good."""
        return self.submit(_delete, transcript_id, browser_id)

    def list_transcripts(self, browser_id: str, *, include_current: bool = False) -> list[TranscriptInfo]:
        """This browser's transcripts, newest first."""
        return self._call(_list, browser_id, include_current)

    def get(self, transcript_id: str, browser_id: str) -> StoredTranscript | None:
        """One transcript with its segments, only if it belongs to `browser_id`."""
        return self._call(_get, transcript_id, browser_id)


# -- SQL, run on the writer thread --------------------------------------------------------

_COLUMNS = "id, kind, created, updated, title, first_words, duration, language, current, segment_count"


def _info(row: tuple) -> TranscriptInfo:
    return TranscriptInfo(
        id=row[0], kind=row[1], created=row[2], updated=row[3], title=row[4], first_words=row[5],
        duration=row[6], language=row[7], current=bool(row[8]), segment_count=row[9],
    )


def _segments(db: sqlite3.Connection, transcript_id: str) -> list[StoredSegment]:
    rows = db.execute(
        'SELECT start, "end", text, utterance_id FROM segments WHERE transcript_id = ? ORDER BY seq', (transcript_id,)
    ).fetchall()
    return [StoredSegment(*r) for r in rows]


def _browser_secret(db: sqlite3.Connection) -> str:
    row = db.execute("SELECT value FROM meta WHERE key = 'browser_secret'").fetchone()
    if row:
        return row[0]
    value = secrets.token_urlsafe(32)
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('browser_secret', ?)", (value,))
    return db.execute("SELECT value FROM meta WHERE key = 'browser_secret'").fetchone()[0]


def _prune(db: sqlite3.Connection, browser_id: str) -> None:
    """Keep the limits (called when a transcript is created, inside its transaction)."""
    old = db.execute(
        "SELECT id FROM transcripts WHERE browser_id = ? AND current = 0 ORDER BY updated DESC LIMIT -1 OFFSET ?",
        (browser_id, MAX_TRANSCRIPTS_PER_BROWSER - 1),
    ).fetchall()
    for (tid,) in old:
        _delete_rows(db, tid)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    excess = pages * page_size - MAX_DB_MB * 1024 * 1024
    while excess > 0:
        row = db.execute(
            "SELECT id, (SELECT COALESCE(SUM(LENGTH(text)) + 40 * COUNT(*), 0) FROM segments WHERE transcript_id = t.id) "
            "FROM transcripts t WHERE current = 0 ORDER BY updated LIMIT 1"
        ).fetchone()
        if row is None:
            break
        log.warning("transcript store over %d MB: deleting the least recently used transcript", MAX_DB_MB)
        _delete_rows(db, row[0])
        excess -= max(1, row[1])


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the writer lock is taken up front)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _delete_rows(db: sqlite3.Connection, transcript_id: str) -> None:
    db.execute("DELETE FROM segments WHERE transcript_id = ?", (transcript_id,))
    db.execute("DELETE FROM transcripts WHERE id = ?", (transcript_id,))


def _append_final(
    db: sqlite3.Connection, tid: str, browser_id: str, start: float, end: float, text: str,
    utterance_id: int | None, language: str | None, now: float,
) -> int:
    text = text.strip()
    with _transaction(db):
        row = db.execute("SELECT browser_id, segment_count, first_words FROM transcripts WHERE id = ?", (tid,)).fetchone()
        if row is None:
            # A new live transcript: it becomes the browser's current one.
            db.execute("UPDATE transcripts SET current = 0 WHERE browser_id = ? AND current = 1", (browser_id,))
            db.execute(
                "INSERT INTO transcripts (id, browser_id, kind, created, updated, current) VALUES (?, ?, 'live', ?, ?, 1)",
                (tid, browser_id, now, now),
            )
            _prune(db, browser_id)
            row = (browser_id, 0, "")
        elif row[0] != browser_id:
            raise StoreError("that transcript belongs to another browser")
        count, first = row[1], row[2]
        if text:
            db.execute(
                'INSERT INTO segments (transcript_id, seq, start, "end", text, utterance_id) VALUES (?, ?, ?, ?, ?, ?)',
                (tid, count, start, end, text, utterance_id),
            )
            count += 1
            if len(first.split()) < FIRST_WORDS:
                first = _first_words(f"{first} {text}")
            db.execute(
                "UPDATE transcripts SET updated = ?, segment_count = ?, duration = MAX(duration, ?), "
                "language = COALESCE(?, language), first_words = ? WHERE id = ?",
                (now, count, end, language, first, tid),
            )
    return count


def _save_upload(
    db: sqlite3.Connection, tid: str, browser_id: str, title: str, rows: list[tuple[float, float, str]],
    duration: float, language: str | None, now: float,
) -> str:
    text = " ".join(r[2] for r in rows)
    with _transaction(db):
        db.execute(
            "INSERT INTO transcripts (id, browser_id, kind, created, updated, title, first_words, duration, language, current, segment_count) "
            "VALUES (?, ?, 'upload', ?, ?, ?, ?, ?, ?, 0, ?)",
            (tid, browser_id, now, now, title[:200], _first_words(text), duration, language, len(rows)),
        )
        db.executemany(
            'INSERT INTO segments (transcript_id, seq, start, "end", text) VALUES (?, ?, ?, ?, ?)',
            [(tid, i, s, e, t) for i, (s, e, t) in enumerate(rows)],
        )
        _prune(db, browser_id)
    return tid


def _current_live(db: sqlite3.Connection, browser_id: str) -> StoredTranscript | None:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM transcripts WHERE browser_id = ? AND current = 1 ORDER BY updated DESC LIMIT 1", (browser_id,)
    ).fetchone()
    return None if row is None else StoredTranscript(_info(row), _segments(db, row[0]))


def _archive(db: sqlite3.Connection, tid: str, browser_id: str) -> None:
    db.execute("UPDATE transcripts SET current = 0 WHERE id = ? AND browser_id = ?", (tid, browser_id))


def _delete(db: sqlite3.Connection, tid: str, browser_id: str) -> bool:
    with _transaction(db):
        owned = db.execute("SELECT 1 FROM transcripts WHERE id = ? AND browser_id = ?", (tid, browser_id)).fetchone()
        if owned:
            _delete_rows(db, tid)
    return bool(owned)


def _list(db: sqlite3.Connection, browser_id: str, include_current: bool) -> list[TranscriptInfo]:
    where = "browser_id = ?" + ("" if include_current else " AND current = 0")
    rows = db.execute(f"SELECT {_COLUMNS} FROM transcripts WHERE {where} ORDER BY updated DESC", (browser_id,)).fetchall()
    return [_info(r) for r in rows]


def _get(db: sqlite3.Connection, tid: str, browser_id: str) -> StoredTranscript | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM transcripts WHERE id = ? AND browser_id = ?", (tid, browser_id)).fetchone()
    return None if row is None else StoredTranscript(_info(row), _segments(db, tid))
