"""`python -m bench.store_writes`: what one live final costs the transcript store, SQLite vs PostgreSQL.

For the README's sizing table (More than one machine): how many finals a second one
replica's store writer takes, and one PostgreSQL server shared by replicas. Each
"stream" is its own browser and live transcript; each final carries 12 words with
times (what a 3-4 s utterance brings). Measured:

- latency of one final's write (submitted alone, waited for) and its p50 / p95;
- throughput with every stream's finals submitted at once (the writer thread is serial,
  so this is the store's ceiling per replica), and on PostgreSQL with two stores
  (replicas) writing to one database together;
- the statements one final sends (counted on the PostgreSQL connection; SQLite runs the
  same ones, web/store_sql.py): round trips, transactions, rows written.

SQLite: a temporary DATA_DIR on this machine's disk (synchronous=FULL, as the app runs
it). PostgreSQL: Debian's server started in a temporary folder (bench/pg.py) with fsync on, as in production, on loopback. The figures are for this
machine; run both here in one go so they compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from engine.base import Word
from bench import pg
from bench.soak import free_port
from web.store import TranscriptStore, new_id

WORDS = tuple(Word(f" word{i}", 0.3 * i, 0.3 * i + 0.25, 0.9) for i in range(12))
TEXT = "".join(w.word for w in WORDS).strip()


def _final(store: TranscriptStore, stream: tuple[str, str, str], n: int):
    transcript, browser, tab = stream
    return store.append_final(transcript, browser, 4.0 * n, 4.0 * n + 3.5, TEXT, tab_id=tab, words=WORDS)


def _streams(count: int) -> list[tuple[str, str, str]]:
    return [(new_id(), new_id(), new_id()) for _ in range(count)]


def latency_ms(store: TranscriptStore, finals: int) -> list[float]:
    """One final at a time, as a quiet stream's are: each write waited for."""
    stream = _streams(1)[0]
    times = []
    for n in range(finals):
        began = time.perf_counter()
        _final(store, stream, n).result()
        times.append(1000 * (time.perf_counter() - began))
    return times


def throughput(stores: list[TranscriptStore], streams: int, finals_each: int) -> float:
    """Finals a second with `streams` streams per store all submitting at once."""
    plans = [(store, _streams(streams)) for store in stores]
    began = time.perf_counter()

    def run(store: TranscriptStore, mine: list[tuple[str, str, str]]) -> None:
        futures = [_final(store, s, n) for n in range(finals_each) for s in mine]
        for f in futures:
            f.result()

    threads = [threading.Thread(target=run, args=plan) for plan in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(stores) * streams * finals_each / (time.perf_counter() - began)


def statements_per_final(store: TranscriptStore, finals: int) -> dict[str, float]:
    """Statements a final sends, by their first word (BEGIN, SELECT, INSERT, UPDATE, COMMIT)."""
    from web.store_pg import PgDb

    counts: Counter[str] = Counter()
    plain, many = PgDb.execute, PgDb.executemany

    def execute(self: PgDb, sql: str, params: Any = None, /) -> Any:
        counts[sql.split()[0].upper()] += 1
        return plain(self, sql, params)

    def executemany(self: PgDb, sql: str, rows: Any, /) -> None:
        counts[sql.split()[0].upper()] += 1
        return many(self, sql, rows)

    stream = _streams(1)[0]
    _final(store, stream, 0).result()  # the transcript is created with the first final
    PgDb.execute, PgDb.executemany = execute, executemany  # type: ignore[method-assign]
    try:
        for n in range(1, finals + 1):
            _final(store, stream, n).result()
    finally:
        PgDb.execute, PgDb.executemany = plain, many  # type: ignore[method-assign]
    per = {kind: round(n / finals, 2) for kind, n in sorted(counts.items())}
    per["round_trips"] = round(sum(counts.values()) / finals, 2)
    return per


def measure(open_store: Callable[[], TranscriptStore], finals: int, streams: int) -> dict[str, Any]:
    store = open_store()
    try:
        latency_ms(store, 20)  # warm: the schema, the first transcript
        times = latency_ms(store, finals)
        one = throughput([store], streams, max(1, finals // streams))
    finally:
        store.close()
    return {
        "write_ms_p50": round(statistics.median(times), 2),
        "write_ms_p95": round(statistics.quantiles(times, n=20)[18], 2),
        "finals_per_s_one_replica": round(one, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.store_writes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--finals", type=int, default=400, help="finals per measurement")
    parser.add_argument("--streams", type=int, default=16, help="streams writing at once in the throughput run")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"finals": args.finals, "streams": args.streams}
    with tempfile.TemporaryDirectory(prefix="rtw-store-bench-") as folder:
        result["sqlite"] = measure(lambda: TranscriptStore.open_dir(folder), args.finals, args.streams)
    reason = pg.missing_reason()
    if reason:
        result["postgresql"] = f"skipped: {reason}"
    else:
        server = pg.start(free_port(), fsync=True)  # fsync on, as a production server runs
        try:
            url = server.createdb("bench")
            result["postgresql"] = measure(lambda: TranscriptStore.open("", url), args.finals, args.streams)
            stores = [TranscriptStore.open("", url) for _ in range(2)]
            try:
                result["postgresql"]["finals_per_s_two_replicas"] = round(
                    throughput(stores, args.streams, max(1, args.finals // args.streams)), 1
                )
                result["postgresql"]["statements_per_final"] = statements_per_final(stores[0], 100)
            finally:
                for s in stores:
                    s.close()
        finally:
            server.stop()
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
