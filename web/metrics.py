"""Prometheus metrics of the app, served at /metrics.

A registry of its own (not the global one) so that nothing else in the process (vLLM
registers metrics too) can collide with these names.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


def metrics_router() -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router
