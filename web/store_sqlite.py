"""The transcript store's embedded backend: one SQLite file (standard library, WAL mode) in DATA_DIR.

The default: nothing to run beside the app. `SqliteBackend.connect` opens the file with the
checks that make a bad DATA_DIR fail at start (not a database, corrupt, locked by another
process, unwritable), and `SqliteDb` is the connection the statements in web/store_sql.py
run on (its `Db` methods are what SQLite does its own way).
"""

from __future__ import annotations

import os
import sqlite3
from typing import ClassVar

from web.store_sql import BUSY_TIMEOUT_S, Db

#: What a SQLite connection or statement raises (the store turns it into StoreError).
ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)


class SqliteDb(sqlite3.Connection):
    """A sqlite3 connection with the store's `Db` methods (`sqlite3.connect(factory=...)`)."""

    BEGIN: ClassVar[str] = "BEGIN IMMEDIATE"
    schema_words: ClassVar[dict[str, str]] = {"rowid": "", "without_rowid": "WITHOUT ROWID"}
    #: A file does not drop its connection (PostgreSQL's may; the store then reconnects).
    broken = False

    def lock(self, key: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the file's only writer lock."""

    def used_bytes(self) -> int:
        page_size = self.execute("PRAGMA page_size").fetchone()[0]
        pages = self.execute("PRAGMA page_count").fetchone()[0] - self.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * page_size)

    def schema_version(self) -> int:
        return int(self.execute("PRAGMA user_version").fetchone()[0])

    def set_schema_version(self, version: int) -> None:
        self.execute(f"PRAGMA user_version = {int(version)}")

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.execute(f"PRAGMA table_info({table})")}


def explain(path: str, exc: BaseException) -> str:
    """What went wrong with the file, and what to do about it."""
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


class SqliteBackend:
    """Opens the SQLite file at `path` (the store calls `connect` on its writer thread)."""

    errors = ERRORS

    def __init__(self, path: str, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.location = os.path.abspath(os.path.expanduser(path))
        self.busy_timeout_s = busy_timeout_s

    def explain(self, exc: BaseException) -> str:
        return explain(self.location, exc)

    def connect(self) -> Db:
        db = sqlite3.connect(self.location, timeout=self.busy_timeout_s, isolation_level=None, factory=SqliteDb)
        try:
            try:
                os.chmod(self.location, 0o600)
            except OSError:
                pass
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"WAL mode refused (journal_mode {mode}); is the database locked?")
            db.execute("PRAGMA synchronous = FULL")  # a final that was written survives a crash
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise sqlite3.DatabaseError(f"quick_check failed: {'; '.join(str(r[0]) for r in check[:3])}")
            return db
        except BaseException:
            db.close()
            raise
