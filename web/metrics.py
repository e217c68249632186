"""Prometheus metrics of the app, served at /metrics.

A registry of its own (not the global one) so that nothing else in the process (vLLM
registers metrics too) can collide with these names.

Every series is served with a `replica` label (REPLICA, default the host name): with
several app processes behind a proxy, their streams and errors add up or compare by it.
The label is added when /metrics is read (`ReplicaLabelled`), so the metrics themselves
and the code that counts them know nothing of replicas.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric

REGISTRY = CollectorRegistry(auto_describe=True)

ACTIVE_SESSIONS = Gauge(
    "rtw_active_sessions", "Live streams running now (page and realtime WebSocket)", registry=REGISTRY
)
DECODES_IN_FLIGHT = Gauge(
    "rtw_decodes_in_flight", "Decodes submitted to the engine and not finished (the engine's queue depth)", registry=REGISTRY
)
DECODE_SECONDS = Histogram(
    "rtw_decode_seconds",
    "Wall time of one engine decode, by kind (transcribe, stream)",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 900),
    registry=REGISTRY,
)
AUDIO_SECONDS = Counter(
    "rtw_audio_seconds", "Seconds of audio decoded by the engine, by kind (transcribe, stream); live streams re-decode growing utterances", ["kind"], registry=REGISTRY
)
INPUT_AUDIO_SECONDS = Counter(
    "rtw_input_audio_seconds",
    "Seconds of audio received to transcribe through the API, by source (api, realtime)",
    ["source"],
    registry=REGISTRY,
)
DECODE_ERRORS = Counter("rtw_decode_errors", "Engine decodes that raised, by error class", ["error"], registry=REGISTRY)
API_REQUESTS = Counter(
    "rtw_api_requests", "HTTP API requests, by route and status code", ["route", "status"], registry=REGISTRY
)
REALTIME_CONNECTIONS = Counter(
    "rtw_realtime_connections", "Realtime WebSocket connections, by outcome (accepted, full, unauthorized)", ["outcome"],
    registry=REGISTRY,
)


class ReplicaLabelled:
    """A collector serving `source`'s metrics with `replica=<name>` on every sample."""

    def __init__(self, source: CollectorRegistry, name: str) -> None:
        self.source = source
        self.name = name

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            family.samples = [s._replace(labels={**s.labels, "replica": self.name}) for s in family.samples]
            yield family


def replica_name(setting: str = "") -> str:
    """REPLICA, or this host's name (a container's or pod's, where replicas differ)."""
    return setting or socket.gethostname()


def metrics_router(replica: str = "") -> APIRouter:
    router = APIRouter()
    served = CollectorRegistry(auto_describe=False)
    served.register(ReplicaLabelled(REGISTRY, replica_name(replica)))

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(served), media_type=CONTENT_TYPE_LATEST)

    return router
