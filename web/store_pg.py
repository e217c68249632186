"""The transcript store on PostgreSQL (DATABASE_URL set): one database shared by every app replica.

Why: with two or more app processes behind a proxy, a browser whose replica is replaced
continues its transcript on another one after a reload; that needs one store they all
see. The statements are web/store_sql.py's, the same as SQLite's; `PgDb` is the
connection they run on (psycopg 3, autocommit, transactions begun by the statements),
owned by the store's writer thread like the SQLite file's.

What PostgreSQL does its own way (the `Db` methods): the schema version is a row in
`meta`; `lock(key)` is a transaction-scoped advisory lock, so two replicas creating,
pruning or taking over one browser's transcripts do it one after the other (SQLite's
BEGIN IMMEDIATE serialises everything anyway); the size MAX_DB_MB holds is the segments'
text plus 40 bytes a row (the files keep deleted rows' space for reuse, so their size
is no measure), counted when a transcript is created: one scan of `segments` then.

DATABASE_URL is shown without its password in every message and log line (`location`).

A database that hangs must not hang the finals behind it (one writer thread serves them
all): every statement has `STATEMENT_TIMEOUT_S` (the server cancels it: a lock another
replica holds, an overloaded server), and the TCP connection has keepalives and a user
timeout, so a server or network that vanished without closing the connection is noticed
within `TCP_DEAD_S` instead of the kernel's two hours. Each ends in a StoreError saying
what happened; the next write opens a new connection. A parameter DATABASE_URL names
itself (`?keepalives_idle=30`, `?options=-c statement_timeout=30s`) wins over these.
"""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from web.store_sql import Db, StoreError

#: Seconds a start (or a reconnect) waits for the server before saying it can't reach it.
CONNECT_TIMEOUT_S = 10
#: Longest a statement may run before the server cancels it (the store's are single-row
#: writes and one browser's reads; a pruning scan of a big store takes well under a second).
STATEMENT_TIMEOUT_S = 10
#: A connection whose peer stops answering is dropped after about this long: keepalive
#: probes after 10 s idle, every 5 s, 3 of them; unacknowledged data for as long.
TCP_DEAD_S = 25
#: libpq's parameters for the above (DATABASE_URL's own values win).
TCP_PARAMS: dict[str, str] = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": str(TCP_DEAD_S * 1000),
}
#: What a connection or statement raises (the store turns it into StoreError).
ERRORS: tuple[type[BaseException], ...] = (psycopg.Error,)


def location(url: str) -> str:
    """DATABASE_URL as shown to people: postgresql://user@host:port/database, no password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:  # its message may quote the URL, password included
        raise StoreError(
            "DATABASE_URL can't be read as a PostgreSQL connection URL; the form is "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    user = f"{params['user']}@" if params.get("user") else ""
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{params.get('host') or 'localhost'}{port}/{params.get('dbname') or ''}"


def explain(where: str, exc: BaseException, password: str = "") -> str:
    """What went wrong with the server, and what to do about it (never the password)."""
    text = " ".join(str(exc).split())
    if password:
        text = text.replace(password, "***")
    lower = text.lower()
    head = f"The transcript database at DATABASE_URL {where}"
    if "password authentication failed" in lower or "authentication failed" in lower:
        return f"{head} refused the user name or password ({text}). Check DATABASE_URL's user and password."
    if "does not exist" in lower and "database" in lower:
        return f"{head} has no such database ({text}). Create it (createdb) or fix DATABASE_URL."
    if "statement timeout" in lower:
        return (
            f"{head} did not finish a statement within its statement_timeout ({STATEMENT_TIMEOUT_S} s unless "
            f"DATABASE_URL sets another; {text}): the server is overloaded, or another connection holds a lock "
            "on the transcripts' tables (pg_stat_activity shows which)."
        )
    if any(w in lower for w in ("connection refused", "timeout", "timed out", "could not translate host", "no such file")):
        return f"{head} can't be reached ({text}). Is PostgreSQL running there, and is the host and port right?"
    return f"{head} can't be used: {text}"


class PgDb:
    """A psycopg connection with the store's `Db` methods and sqlite3's `?` placeholders."""

    BEGIN: ClassVar[str] = "BEGIN"
    schema_words: ClassVar[dict[str, str]] = {"rowid": "\n    rowid BIGINT GENERATED ALWAYS AS IDENTITY,", "without_rowid": ""}

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self._conn.closed or self._conn.broken

    def execute(self, sql: str, params: Any = None, /) -> psycopg.Cursor:
        # The statements hold no literal '?' or '%': each '?' is a parameter.
        return self._conn.execute(sql.replace("?", "%s"), params or None)

    def executemany(self, sql: str, rows: Any, /) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)

    def lock(self, key: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def used_bytes(self) -> int:
        # The rows' own size, as `_prune` counts what a deletion frees: the tables' files
        # do not shrink when rows go (the space waits for reuse), so their size would
        # keep the store "full" and evict on every new transcript.
        row = self.execute("SELECT COALESCE(SUM(LENGTH(text)) + 40 * COUNT(*), 0) FROM segments").fetchone()
        return int(row[0])

    def schema_version(self) -> int:
        if self.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
            return 0
        row = self.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def set_schema_version(self, version: int) -> None:
        self.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(int(version)),),
        )

    def columns(self, table: str) -> set[str]:
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        ).fetchall()
        return {r[0] for r in rows}

    def close(self) -> None:
        self._conn.close()


class PostgresBackend:
    """Connects to DATABASE_URL (the store calls `connect` on its writer thread)."""

    errors = ERRORS

    def __init__(self, url: str) -> None:
        self.location = location(url)  # also checks that the URL can be read
        self._url = url
        self._password = str(conninfo_to_dict(url).get("password") or "")

    def explain(self, exc: BaseException) -> str:
        return explain(self.location, exc, self._password)

    def connect(self) -> Db:
        conn = psycopg.connect(**connect_params(self._url))
        return PgDb(conn)


def connect_params(url: str) -> dict[str, Any]:
    """psycopg.connect's parameters: DATABASE_URL's, plus the timeouts it does not set itself."""
    params: dict[str, Any] = {"connect_timeout": str(CONNECT_TIMEOUT_S), "application_name": "rt-whisper", **TCP_PARAMS}
    params.update({k: str(v) for k, v in conninfo_to_dict(url).items()})
    if "statement_timeout" not in params.get("options", ""):
        params["options"] = f"{params.get('options', '')} -c statement_timeout={STATEMENT_TIMEOUT_S * 1000}".strip()
    params["autocommit"] = True  # psycopg's own keyword, not libpq's
    return params
