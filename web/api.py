"""Every HTTP route of the app (besides the page), mounted on the one FastAPI server."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.base import Engine
from settings import Settings
from web.errors import APIError, api_error_handler, error_body
from web.health import health_router
from web.jobs import JobQueue
from web.metrics import metrics_router
from web.openai_api import openai_router
from web.realtime import realtime_router
from web.sessions import StreamSlots

_HTTP_TYPES = {401: "invalid_request_error", 403: "invalid_request_error", 404: "invalid_request_error"}


def include_api(
    app: FastAPI, engine: Engine, settings: Settings, slots: StreamSlots, jobs: JobQueue | None = None
) -> JobQueue:
    """Mount /health, the OpenAI-compatible API, the realtime WebSocket and /metrics.

    /metrics counts the decodes of the engine it is given: `app.build_app` hands over
    the engine wrapped once by `web.metered.metered()` (the page shares that wrapper).
    `jobs` is the long-form queue the page shares (one is made from the settings when
    not given); it is returned.
    """
    if jobs is None:
        jobs = JobQueue(settings.max_jobs, settings.max_queued)
    app.add_exception_handler(APIError, api_error_handler)

    async def http_error(request: Request, exc: Exception):
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path.startswith("/v1/"):
            from fastapi.responses import JSONResponse

            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
            status_type = _HTTP_TYPES.get(exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error")
            return JSONResponse(
                error_body(f"{request.method} {request.url.path}: {exc.detail}", type=status_type, code=code),
                status_code=exc.status_code,
                headers=getattr(exc, "headers", None),
            )
        return await http_exception_handler(request, exc)  # type: ignore[arg-type]

    async def validation_error(request: Request, exc: Exception):
        assert isinstance(exc, RequestValidationError)
        if request.url.path.startswith("/v1/"):
            from fastapi.responses import JSONResponse

            errors = exc.errors()
            param = ".".join(str(p) for p in errors[0].get("loc", [])[1:]) if errors else None
            message = errors[0].get("msg", "invalid request") if errors else "invalid request"
            return JSONResponse(error_body(f"Invalid request: {message}", param=param or None, code="invalid_value"), status_code=400)
        return await request_validation_exception_handler(request, exc)  # type: ignore[arg-type]

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(health_router(engine, jobs))
    app.include_router(metrics_router(settings.replica))
    app.include_router(openai_router(engine, settings, jobs))
    app.include_router(realtime_router(engine, settings, slots))
    return jobs
