"""Every HTTP route of the app (besides the page), mounted on the one FastAPI server."""

from __future__ import annotations

from fastapi import FastAPI

from engine.base import Engine
from settings import Settings
from web.health import health_router
from web.sessions import StreamSlots


def include_api(app: FastAPI, engine: Engine, settings: Settings, slots: StreamSlots) -> None:
    """Mount /health, the OpenAI-compatible API, the realtime WebSocket and /metrics."""
    app.include_router(health_router(engine))
