"""The transcript store's tables and SQL (web/store.py runs these on its writer thread).

Every function takes the store's one connection and runs one short transaction; the
limits below are read at call time (tests lower them).

One set of statements for both backends: SQLite (web/store_sqlite.py, the default) and
PostgreSQL (web/store_pg.py, when DATABASE_URL is set). They are written in the SQL both
understand (`?` placeholders, turned into psycopg's `%s` by the PostgreSQL connection;
`ON CONFLICT`, `IS NOT DISTINCT FROM`, window functions); what differs is a method of the
connection (`Db` below): how a transaction starts, the schema version's home, the size
of the data, a lock per browser, and the schema's few dialect words.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from engine.base import Word

log = logging.getLogger("web.store")

DB_NAME = "transcripts.sqlite3"
#: 1: one current live transcript per browser; 2: one per tab (`tab_id`); 3: a segment's
#: words and speaker, a transcript's speaker names (see `_migrate`).
SCHEMA_VERSION = 3
#: Transcripts kept per browser (live and uploads); the oldest go first.
MAX_TRANSCRIPTS_PER_BROWSER = 200
#: Finals in one live transcript (~4 days of speech at one final every 4 s).
MAX_SEGMENTS_PER_TRANSCRIPT = 100_000
#: Size of the database file past which the least recently updated transcripts go.
MAX_DB_MB = 1024
#: Words of a transcript shown in the history list.
FIRST_WORDS = 12
#: Characters of a name a person gives a speaker.
MAX_SPEAKER_NAME = 60
#: How long a start waits for another process's lock before giving up (seconds).
BUSY_TIMEOUT_S = 5.0

_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

# One schema for both backends: DOUBLE PRECISION is SQLite's REAL affinity and PostgreSQL's
# float8 (its REAL would be float4, seconds since 1970 to ~2 minutes); {rowid} and
# {without_rowid} are the connection's `schema_words` (PostgreSQL has no rowid, so the
# insertion order that breaks ties in the history is a column there).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transcripts (
    id TEXT PRIMARY KEY,
    browser_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('live', 'upload')),
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    first_words TEXT NOT NULL DEFAULT '',
    duration DOUBLE PRECISION NOT NULL DEFAULT 0,
    language TEXT,
    current INTEGER NOT NULL DEFAULT 0,
    segment_count INTEGER NOT NULL DEFAULT 0,{rowid}
    tab_id TEXT,
    speaker_names TEXT
);
CREATE INDEX IF NOT EXISTS transcripts_by_browser ON transcripts (browser_id, updated);
CREATE INDEX IF NOT EXISTS transcripts_by_updated ON transcripts (updated);
CREATE TABLE IF NOT EXISTS segments (
    transcript_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    start DOUBLE PRECISION NOT NULL,
    "end" DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL,
    utterance_id INTEGER,
    words TEXT,
    speaker TEXT,
    PRIMARY KEY (transcript_id, seq)
) {without_rowid};
"""


class Db(Protocol):
    """The store's connection, as the statements here use it (a `sqlite3.Connection`
    subclass or the PostgreSQL wrapper): DB-API `execute` with `?` placeholders, plus the
    few things the two databases do differently."""

    #: Starts a transaction that writes (SQLite takes its one writer lock up front).
    BEGIN: str
    #: Fills `_SCHEMA`'s {rowid} and {without_rowid}.
    schema_words: dict[str, str]
    #: The connection is gone (a database server restarted): the store opens a new one.
    broken: bool

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...

    def lock(self, key: str) -> None:
        """Serialise this transaction with others taking `key` (a browser id, "schema")."""

    def used_bytes(self) -> int:
        """Bytes the transcripts take (MAX_DB_MB holds this)."""

    def schema_version(self) -> int: ...

    def set_schema_version(self, version: int) -> None: ...

    def columns(self, table: str) -> set[str]: ...


def create_schema(db: Db) -> None:
    """Make any missing table (inside the start's transaction, before `_migrate`)."""
    for statement in _SCHEMA.format(**db.schema_words).split(";"):
        if statement.strip():
            db.execute(statement)


class StoreError(RuntimeError):
    """The transcript database can't be used (corrupt, locked, unwritable)."""


class StoreClosedError(StoreError):
    """A call after `close()`."""


def new_id() -> str:
    """An unguessable id (browsers and transcripts): 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


def _migrate(db: Db, version: int) -> None:
    """Bring a database written by an older version up to SCHEMA_VERSION (inside the
    start's transaction, after `_SCHEMA` made any missing table).

    1 -> 2: live transcripts belong to a tab of the browser (`tab_id`). An old browser-wide
    current transcript keeps tab_id NULL: no tab holds it, so the browser's next page
    load takes it over (`_current_live`), nothing is lost.
    2 -> 3: a segment keeps its words (times, confidence) and its speaker label, a
    transcript the names a person gave its speakers; older rows have none (NULL).
    Each step checks the columns, so a half-migrated database (or one `_SCHEMA` just made)
    is brought up the same way.
    """
    transcripts, segments = db.columns("transcripts"), db.columns("segments")
    if "tab_id" not in transcripts:
        db.execute("ALTER TABLE transcripts ADD COLUMN tab_id TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS transcripts_current ON transcripts (browser_id, current, tab_id)")
    if "speaker_names" not in transcripts:
        db.execute("ALTER TABLE transcripts ADD COLUMN speaker_names TEXT")
    for column in ("words", "speaker"):
        if column not in segments:
            db.execute(f"ALTER TABLE segments ADD COLUMN {column} TEXT")


@dataclass(frozen=True)
class StoredSegment:
    start: float
    end: float
    text: str
    utterance_id: int | None = None
    words: tuple[Word, ...] = ()  # engine.base.Word: text, times, confidence
    speaker: str | None = None


def words_json(words: Any) -> str | None:
    """A segment's words as stored: compact JSON rows [word, start, end, probability],
    with a fifth item, its speaker, on a word that has one (None without words). Takes
    anything with those attributes."""
    if not words:
        return None
    rows = [
        [str(w.word), round(float(w.start), 3), round(float(w.end), 3), round(float(w.probability), 4)]
        + ([str(w.speaker)] if getattr(w, "speaker", None) else [])
        for w in words
    ]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def _words_from_json(text: str | None) -> tuple[Word, ...]:
    if not text:
        return ()
    try:
        return tuple(
            Word(str(row[0]), float(row[1]), float(row[2]), float(row[3]), str(row[4]) if len(row) > 4 else None)
            for row in json.loads(text)
        )
    except (ValueError, TypeError, IndexError) as exc:  # a damaged row loses its word times, not its text
        log.warning("a stored segment's words could not be read: %s", exc)
        return ()


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
    current: bool  # a live transcript a tab continues (not set aside, not an upload)
    segment_count: int
    tab_id: str | None = None  # the tab whose live transcript it is (None: no tab yet)
    speaker_names: dict[str, str] = field(default_factory=dict)  # label -> the name a person gave it


@dataclass(frozen=True)
class StoredTranscript:
    info: TranscriptInfo
    segments: list[StoredSegment] = field(default_factory=list)


def _first_words(text: str, n: int = FIRST_WORDS) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" …" if len(words) > n else "")


# -- SQL, run on the writer thread --------------------------------------------------------

_COLUMNS = "id, kind, created, updated, title, first_words, duration, language, current, segment_count, tab_id, speaker_names"


def _info(row: tuple) -> TranscriptInfo:
    return TranscriptInfo(
        id=row[0], kind=row[1], created=row[2], updated=row[3], title=row[4], first_words=row[5],
        duration=row[6], language=row[7], current=bool(row[8]), segment_count=row[9], tab_id=row[10],
        speaker_names=_names_from_json(row[11]),
    )


def speaker_name(name: str) -> str:
    """A name a person gave a speaker as kept: one line, at most MAX_SPEAKER_NAME characters
    ("" takes the name back). The page shows exactly this (web/speaker_names.py)."""
    return " ".join(str(name or "").split())[:MAX_SPEAKER_NAME]


def _names_from_json(text: str | None) -> dict[str, str]:
    try:
        names = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in names.items()} if isinstance(names, dict) else {}


def _segments(db: Db, transcript_id: str) -> list[StoredSegment]:
    rows = db.execute(
        'SELECT start, "end", text, utterance_id, words, speaker FROM segments WHERE transcript_id = ? ORDER BY seq',
        (transcript_id,),
    ).fetchall()
    return [StoredSegment(s, e, t, u, _words_from_json(w), sp) for s, e, t, u, w, sp in rows]


def _browser_secret(db: Db) -> str:
    row = db.execute("SELECT value FROM meta WHERE key = 'browser_secret'").fetchone()
    if row:
        return row[0]
    value = secrets.token_urlsafe(32)
    db.execute("INSERT INTO meta (key, value) VALUES ('browser_secret', ?) ON CONFLICT (key) DO NOTHING", (value,))
    return db.execute("SELECT value FROM meta WHERE key = 'browser_secret'").fetchone()[0]


def _prune(db: Db, browser_id: str, new: str) -> None:
    """Keep the limits (called when transcript `new` is created, inside its transaction,
    holding the browser's lock)."""
    old = db.execute(
        "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY updated DESC, rowid DESC) AS n FROM transcripts "
        "WHERE browser_id = ? AND current = 0 AND id != ?) AS ranked WHERE n >= ?",
        (browser_id, new, MAX_TRANSCRIPTS_PER_BROWSER),
    ).fetchall()
    for (tid,) in old:
        _delete_rows(db, tid)
    excess = db.used_bytes() - MAX_DB_MB * 1024 * 1024
    while excess > 0:
        row = db.execute(
            "SELECT id, (SELECT COALESCE(SUM(LENGTH(text)) + 40 * COUNT(*), 0) FROM segments WHERE transcript_id = t.id) "
            "FROM transcripts t WHERE current = 0 AND id != ? ORDER BY updated LIMIT 1", (new,)
        ).fetchone()
        if row is None:
            break
        log.warning("transcript store over %d MB: deleting the least recently used transcript", MAX_DB_MB)
        _delete_rows(db, row[0])
        excess -= max(1, row[1])


@contextmanager
def _transaction(db: Db) -> Iterator[None]:
    """BEGIN ... COMMIT, rolled back on any error (SQLite: BEGIN IMMEDIATE, the writer lock is taken up front)."""
    db.execute(db.BEGIN)
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _delete_rows(db: Db, transcript_id: str) -> None:
    db.execute("DELETE FROM segments WHERE transcript_id = ?", (transcript_id,))
    db.execute("DELETE FROM transcripts WHERE id = ?", (transcript_id,))


def _append_final(
    db: Db, tid: str, browser_id: str, tab_id: str | None, start: float, end: float, text: str,
    utterance_id: int | None, language: str | None, now: float, words: str | None = None, speaker: str | None = None,
) -> int:
    text = text.strip()
    with _transaction(db):
        # The browser's lock first: two replicas appending to one transcript (a reload onto
        # another while the old page still flushes) must not both take the next seq.
        db.lock(browser_id)
        row = db.execute("SELECT browser_id, segment_count, first_words FROM transcripts WHERE id = ?", (tid,)).fetchone()
        if row is None:
            # A new live transcript: it becomes the tab's current one (other tabs keep theirs).
            db.execute(
                "UPDATE transcripts SET current = 0 WHERE browser_id = ? AND current = 1 AND tab_id IS NOT DISTINCT FROM ?",
                (browser_id, tab_id),
            )
            db.execute(
                "INSERT INTO transcripts (id, browser_id, kind, created, updated, current, tab_id) VALUES (?, ?, 'live', ?, ?, 1, ?)",
                (tid, browser_id, now, now, tab_id),
            )
            _prune(db, browser_id, tid)
            row = (browser_id, 0, "")
        elif row[0] != browser_id:
            raise StoreError("that transcript belongs to another browser")
        count, first = row[1], row[2]
        if text:
            db.execute(
                'INSERT INTO segments (transcript_id, seq, start, "end", text, utterance_id, words, speaker) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                (tid, count, start, end, text, utterance_id, words, speaker),
            )
            count += 1
            if len(first.split()) < FIRST_WORDS:
                first = _first_words(f"{first} {text}")
            db.execute(
                "UPDATE transcripts SET updated = ?, segment_count = ?, duration = CASE WHEN duration > ? THEN duration ELSE ? END, "
                "language = COALESCE(?, language), first_words = ? WHERE id = ?",
                (now, count, end, end, language, first, tid),
            )
    return count


def _save_upload(
    db: Db, tid: str, browser_id: str, title: str, rows: list[tuple[float, float, str, str | None, str | None]],
    duration: float, language: str | None, now: float,
) -> str:
    text = " ".join(r[2] for r in rows)
    with _transaction(db):
        db.lock(browser_id)
        db.execute(
            "INSERT INTO transcripts (id, browser_id, kind, created, updated, title, first_words, duration, language, current, segment_count) "
            "VALUES (?, ?, 'upload', ?, ?, ?, ?, ?, ?, 0, ?)",
            (tid, browser_id, now, now, title[:200], _first_words(text), duration, language, len(rows)),
        )
        db.executemany(
            'INSERT INTO segments (transcript_id, seq, start, "end", text, words, speaker) VALUES (?, ?, ?, ?, ?, ?, ?)',
            [(tid, i, s, e, t, w, sp) for i, (s, e, t, w, sp) in enumerate(rows)],
        )
        _prune(db, browser_id, tid)
    return tid


def _current_live(
    db: Db, browser_id: str, tab_id: str | None, held_tabs: frozenset[str]
) -> StoredTranscript | None:
    """The tab's current live transcript; failing that, one no open tab holds, taken over.

    Without a tab (`tab_id` None): the browser's most recent current transcript, as read.
    With one: the tab's own; if it has none, the most recently updated current transcript
    of the browser whose tab is not in `held_tabs` (a closed tab's, or one from before
    schema 2) becomes this tab's, in the same transaction, so two tabs loading at once
    never take the same one (the browser's lock: on PostgreSQL two replicas either).
    """
    with _transaction(db):
        db.lock(browser_id)
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM transcripts WHERE browser_id = ? AND current = 1 AND kind = 'live' "
            "ORDER BY updated DESC, rowid DESC",
            (browser_id,),
        ).fetchall()
        infos = [_info(r) for r in rows]
        if tab_id is None:
            info = infos[0] if infos else None
        else:
            info = next((i for i in infos if i.tab_id == tab_id), None)
            if info is None:
                info = next((i for i in infos if i.tab_id is None or i.tab_id not in held_tabs), None)
                if info is not None:
                    db.execute("UPDATE transcripts SET tab_id = ? WHERE id = ?", (tab_id, info.id))
                    info = replace(info, tab_id=tab_id)
        return None if info is None else StoredTranscript(info, _segments(db, info.id))


def _archive(db: Db, tid: str, browser_id: str) -> None:
    db.execute("UPDATE transcripts SET current = 0 WHERE id = ? AND browser_id = ?", (tid, browser_id))


def _name_speaker(db: Db, tid: str, browser_id: str, label: str, name: str) -> bool:
    """Give speaker `label` of one transcript a person's name ("" takes it back)."""
    with _transaction(db):
        db.lock(browser_id)
        row = db.execute("SELECT speaker_names FROM transcripts WHERE id = ? AND browser_id = ?", (tid, browser_id)).fetchone()
        if row is None:
            return False
        names = _names_from_json(row[0])
        name = speaker_name(name)
        if name:
            names[label] = name
        else:
            names.pop(label, None)
        db.execute(
            "UPDATE transcripts SET speaker_names = ? WHERE id = ?",
            (json.dumps(names, ensure_ascii=False) if names else None, tid),
        )
    return True


def _delete(db: Db, tid: str, browser_id: str) -> bool:
    with _transaction(db):
        owned = db.execute("SELECT 1 FROM transcripts WHERE id = ? AND browser_id = ?", (tid, browser_id)).fetchone()
        if owned:
            _delete_rows(db, tid)
    return bool(owned)


def _list(db: Db, browser_id: str, include_current: bool) -> list[TranscriptInfo]:
    where = "browser_id = ?" + ("" if include_current else " AND current = 0")
    rows = db.execute(f"SELECT {_COLUMNS} FROM transcripts WHERE {where} ORDER BY updated DESC, rowid DESC", (browser_id,)).fetchall()
    return [_info(r) for r in rows]


def _get(db: Db, tid: str, browser_id: str) -> StoredTranscript | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM transcripts WHERE id = ? AND browser_id = ?", (tid, browser_id)).fetchone()
    return None if row is None else StoredTranscript(_info(row), _segments(db, tid))
