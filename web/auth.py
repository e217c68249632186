"""Optional API-key auth for /v1 routes (`API_KEY`): `Authorization: Bearer <key>`.

The realtime WebSocket also takes the key the ways browsers can send it: the
`openai-insecure-api-key.<key>` subprotocol (what OpenAI's own browser clients use) or
an `api_key` query parameter.
"""

from __future__ import annotations

import hmac

from fastapi import Request, WebSocket

from web.errors import APIError


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
