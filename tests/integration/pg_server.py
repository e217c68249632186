"""A throwaway PostgreSQL server for the tests: bench/pg.py's (one implementation for the
benches and the tests), on a free loopback port. Tests skip with `missing_reason()`."""

from __future__ import annotations

from bench.pg import PASSWORD, USER, Postgres, missing_reason  # noqa: F401 - the tests' names
from bench.pg import start as _start
from tests.integration.misbehaving_server import free_port

PgServer = Postgres


def start() -> Postgres:
    """A new server on a free port; waits until it accepts connections."""
    return _start(free_port())
