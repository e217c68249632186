"""One key for every door (`API_KEY`), and secrets kept out of logs and messages.

- /v1 routes: `Authorization: Bearer <key>` (`require_api_key`).
- the page: Gradio's own login screen, any user name and the key as password, then a
  session cookie (`page_auth`); PUBLIC_PAGE=true leaves it open on purpose.
- /docs, /redoc, /openapi.json: the key or the page's cookie (`DocsGate`).
- /health and /metrics stay open and show nothing secret (hosts only: `url_host`).

The realtime WebSocket also takes the key the ways browsers can send it: the
`openai-insecure-api-key.<key>` subprotocol (what OpenAI's own browser clients use) or
an `api_key` query parameter.
"""

from __future__ import annotations

import hmac
from typing import Any, Callable

from fastapi import Request, WebSocket
from fastapi.responses import JSONResponse

from web.errors import APIError, error_body


def _matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_api_key(api_key: str):
    """A FastAPI dependency: nothing when API_KEY is unset, else a 401 APIError on a bad key."""

    async def check(request: Request) -> None:
        if not api_key:
            return
        header = request.headers.get("authorization")
        token = bearer_token(header)
        if token is None:
            raise APIError(
                401,
                "You didn't provide an API key. Send it as `Authorization: Bearer <API_KEY>`.",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not _matches(token, api_key):
            raise APIError(
                401, "Incorrect API key provided.", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
            )

    return check


def websocket_key_ok(websocket: WebSocket, api_key: str) -> tuple[bool, str | None]:
    """(authorised, subprotocol to accept with) for a WebSocket handshake."""
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    chosen = "realtime" if "realtime" in protocols else None
    if not api_key:
        return True, chosen
    if _matches(bearer_token(websocket.headers.get("authorization")), api_key):
        return True, chosen
    for p in protocols:
        if p.startswith("openai-insecure-api-key.") and _matches(p.split(".", 1)[1], api_key):
            return True, chosen
    if _matches(websocket.query_params.get("api_key"), api_key):
        return True, chosen
    return False, chosen


# -- the page: Gradio's own login ---------------------------------------------------------

#: What Gradio's login screen says when API_KEY guards the page.
LOGIN_MESSAGE = "This server is private: enter its API key as the password (any user name)."


def page_auth(api_key: str, public_page: bool = False) -> Callable[[str, str], bool] | None:
    """Gradio `auth=` for the page: any user name, the API key as password; None leaves it open.

    Gradio then puts every page route behind its login and a session cookie: the page's
    config, `/gradio_api/*` (queue, `/transcribe` for gradio_client, uploads) and the
    component server through which FastRTC's WebRTC offer arrives. `public_page` keeps the
    page open on purpose (PUBLIC_PAGE=true).
    """
    if not api_key or public_page:
        return None

    def check(username: str, password: str) -> bool:
        return _matches(password, api_key)

    return check


# -- FastAPI's docs -----------------------------------------------------------------------

DOC_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


class DocsGate:
    """ASGI middleware: with API_KEY set, /docs, /redoc and /openapi.json need the key.

    The key comes as `Authorization: Bearer <key>` or as the page's login cookie (so a
    browser that logged into the page can read the docs). `session_ok(cookies)` says
    whether a cookie is a live page login; it is looked up when a request comes.
    """

    def __init__(self, app: Any, api_key: str, session_ok: Callable[[dict[str, str]], bool] | None = None) -> None:
        self.app = app
        self.api_key = api_key
        self.session_ok = session_ok

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.api_key and scope.get("type") == "http" and scope.get("path", "").rstrip("/") in DOC_PATHS:
            request = Request(scope)
            allowed = _matches(bearer_token(request.headers.get("authorization")), self.api_key) or (
                self.session_ok is not None and self.session_ok(dict(request.cookies))
            )
            if not allowed:
                response = JSONResponse(
                    error_body("The API docs need the API key: `Authorization: Bearer <API_KEY>`, or log into the page first.",
                               code="missing_api_key"),
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
