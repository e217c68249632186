"""Liveness and engine description: what a load balancer or a Space health check reads."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from engine.base import Engine


def health_router(engine: Engine) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "engine": asdict(engine.info)}

    return router
