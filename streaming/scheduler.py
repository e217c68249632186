"""Process-wide admission of partial decodes, shared by every session of one engine.

Why: each session keeps at most one partial in flight, but many sessions together can
still fill a small CPU engine with partials, and then every final (the text that
matters) waits behind them. The gate caps partial decodes in flight per engine,
counting the finals in flight too: a partial starts only while
`partials + finals < max_in_flight`, so finals always find room and a partial that
cannot start is simply skipped (the session tries again with newer audio). Finals are
never gated.

Fairness: when a slot frees, the first session to ask used to take it, so at 8 streams
one stream could go through a 10 s utterance without a single partial (max lag 10.4 s
in the benchmark) while others got theirs. Now a free slot goes to the session that has
been waiting longest for a partial; a waiter that stops asking (its utterance ended,
it closed) drops out after `STALE_S`.

The default cap follows the engine's device: on a CPU a decode already uses every core,
so two decodes at once (one being batched with the other) is the useful maximum; on a
GPU batching is nearly free and the cap is high.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

__all__ = ["DecodeGate", "gate_for"]

CPU_MAX_IN_FLIGHT = 2
GPU_MAX_IN_FLIGHT = 64


#: A session that has not asked for this long is no longer waiting (sessions ask on
#: every 20 ms frame while a partial is due).
STALE_S = 0.25


@dataclass
class DecodeGate:
    max_in_flight: int
    partials: int = 0
    finals: int = 0
    #: key -> (waiting since, last asked), for sessions refused a partial.
    waiting: dict[object, tuple[float, float]] = field(default_factory=dict)

    def try_start_partial(self, key: object = None, now: float | None = None) -> bool:
        """May the session `key` start a partial now? Without a key: no fairness."""
        if key is None:
            if self.partials + self.finals >= self.max_in_flight:
                return False
            self.partials += 1
            return True
        now = time.monotonic() if now is None else now
        since = self.waiting.get(key, (now, now))[0]
        self.waiting[key] = (since, now)
        if self.partials + self.finals >= self.max_in_flight:
            return False
        self.waiting = {k: v for k, v in self.waiting.items() if now - v[1] <= STALE_S}
        if min(v[0] for v in self.waiting.values()) < since:
            return False  # a session that has waited longer goes first
        del self.waiting[key]
        self.partials += 1
        return True

    def forget(self, key: object) -> None:
        """The session no longer wants a partial (its utterance ended, it closed)."""
        self.waiting.pop(key, None)

    def end_partial(self) -> None:
        self.partials = max(0, self.partials - 1)

    def start_final(self) -> None:
        self.finals += 1

    def end_final(self) -> None:
        self.finals = max(0, self.finals - 1)


_lock = threading.Lock()
_gates: dict[int, tuple[object, DecodeGate]] = {}


def default_max_in_flight(engine) -> int:
    info = getattr(engine, "info", None)
    device = str(getattr(info, "device", "") or "").lower()
    kind = str(getattr(info, "engine", "") or "").lower()
    if kind == "remote":
        return GPU_MAX_IN_FLIGHT  # the remote server batches; its own limit applies
    return CPU_MAX_IN_FLIGHT if device.startswith("cpu") else GPU_MAX_IN_FLIGHT


def gate_for(engine, max_in_flight: int | None = None) -> DecodeGate:
    """The gate of this engine (created on first use; `max_in_flight` None: by device)."""
    with _lock:
        entry = _gates.get(id(engine))
        if entry is None or entry[0] is not engine:
            gate = DecodeGate(max_in_flight or default_max_in_flight(engine))
            _gates[id(engine)] = (engine, gate)
            return gate
        gate = entry[1]
        if max_in_flight:
            gate.max_in_flight = max_in_flight
        return gate
