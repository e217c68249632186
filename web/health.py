"""Liveness and engine description: what a load balancer or a Space health check reads.

Open to anyone even with API_KEY set, so it shows nothing secret: a remote endpoint
appears as its host only (`public_info`), never with its path, query or credentials.

While the server drains for a restart or deploy (SIGTERM: web/shutdown.py) it answers
503 with `"status": "draining"` (the other fields as always), so a load balancer sends
new traffic elsewhere while the finals in flight finish here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from engine.base import Engine, EngineInfo
from web.redact import redact_urls, url_host


def public_info(info: EngineInfo) -> dict[str, Any]:
    """The engine's description with every URL cut down to its host and no token."""
    data = asdict(info)
    if info.engine == "remote" or "://" in str(info.device):
        data["device"] = url_host(str(info.device)) if "://" in str(info.device) else str(info.device)
    settings = {}
    for key, value in (data.get("settings") or {}).items():
        if "token" in key.lower() or "key" in key.lower() or "secret" in key.lower():
            value = "set" if value not in (None, "", "none") else "none"
        elif isinstance(value, str) and "://" in value:
            value = redact_urls(value)
        settings[key] = value
    data["settings"] = settings
    return data


def public_device(info: EngineInfo) -> str:
    """`info.device` as the page's header and status line may show it (a URL: its host only)."""
    device = str(getattr(info, "device", ""))
    return url_host(device) if "://" in device else device


def health_router(engine: Engine, jobs: Any = None) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> JSONResponse:
        # The job queue drains with the live streams (web.shutdown.drain_app sets both).
        draining = bool(getattr(jobs, "draining", False))
        body: dict[str, object] = {"status": "draining" if draining else "ok", "engine": public_info(engine.info)}
        if jobs is not None:
            body["jobs"] = jobs.snapshot()
        return JSONResponse(body, status_code=503 if draining else 200)

    return router
