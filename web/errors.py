"""OpenAI-style errors for the /v1 routes: `{"error": {"message", "type", "param", "code"}}`.

Every failure of a /v1 request leaves as one of these, with a 4xx status for anything
the caller can fix (bad upload, wrong field, wrong key) and 502/503 when the engine
failed; user input never produces a 500. What of an engine failure a client reads is
`engine.public.public_reason` (the rule every door uses, the live session included).
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from engine.base import AudioError, EngineUnavailable, TranscriptionError, UnsupportedRequest
from engine.public import public_reason, redact_urls  # the one rule of what leaves (re-exported)

log = logging.getLogger(__name__)


class APIError(Exception):
    """Raised inside a route; turned into OpenAI-style error JSON by the app's handler."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, object]:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str, *, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, object]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc)


def from_engine_error(exc: BaseException) -> APIError:
    """Map what an engine raised to the status a client should see."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, AudioError):
        return APIError(400, str(exc), param="file", code="invalid_audio")
    if isinstance(exc, UnsupportedRequest):
        return APIError(400, str(exc), code="unsupported_request")
    if isinstance(exc, EngineUnavailable):
        log.warning("engine unavailable: %s", redact_urls(str(exc)))
        return APIError(503, f"The transcription engine is unavailable: {public_reason(exc)}", type="server_error", code="engine_unavailable")
    if isinstance(exc, TranscriptionError):
        log.warning("engine failed: %s", redact_urls(str(exc)))
        return APIError(502, f"The transcription engine failed: {public_reason(exc)}", type="server_error", code="engine_error")
    if isinstance(exc, ValueError):
        return APIError(400, str(exc), code="invalid_value")
    log.error("engine failure: %s", redact_urls(repr(exc)))
    return APIError(502, f"The transcription engine failed ({type(exc).__name__}).", type="server_error", code="engine_error")
