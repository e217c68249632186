"""ICE servers for the page's WebRTC connection.

Locally (no `SPACE_ID`) neither side uses any ICE server: host candidates connect a
browser to a server on the same machine or network, and nothing is asked of the
internet. On a Hugging Face Space the browser and the container are in different
networks, so the connection needs a TURN relay: FastRTC's Cloudflare helper gets
credentials with the Space's `HF_TOKEN` (or with `CLOUDFLARE_TURN_KEY_ID` /
`CLOUDFLARE_TURN_KEY_API_TOKEN`). `TURN_PROVIDER` picks: `auto` (TURN on a Space,
none elsewhere), `none`, `hf` or `cloudflare` (the same relay; `hf` insists on
HF_TOKEN). A failure to get credentials is logged and the page falls back to no TURN
(direct connections still work on open networks) instead of failing to start.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

NO_ICE: dict[str, Any] = {"iceServers": []}
#: Lifetime of the browser's credentials (fetched per connection) and the server's (once).
CLIENT_TTL_S = 600
SERVER_TTL_S = 360_000


def turn_mode(provider: str = "auto", space_id: str = "") -> str:
    """`none`, `hf` or `cloudflare` after resolving `auto` (TURN on a Space: `space_id` set).
    Both come from settings (TURN_PROVIDER, SPACE_ID)."""
    mode = (provider or "auto").strip().lower()
    if mode == "auto":
        return "hf" if space_id else "none"
    if mode not in ("none", "hf", "cloudflare"):
        raise ValueError(f"TURN_PROVIDER={mode!r}: use auto, none, hf or cloudflare")
    return mode


def _token(hf_token: str | None) -> str | None:
    token = (hf_token or "").strip()
    return token or None


def client_rtc_configuration(mode: str, hf_token: str | None = None) -> Callable[[], Awaitable[dict[str, Any]]] | dict[str, Any]:
    """What `WebRTC(rtc_configuration=...)` gets: a dict, or an async function FastRTC
    calls for every new connection (it must be a plain function, not a partial)."""
    if mode == "none":
        return dict(NO_ICE)
    token = _token(hf_token)

    async def turn_credentials() -> dict[str, Any]:
        from fastrtc import get_cloudflare_turn_credentials_async

        try:
            if mode == "hf" and not token:
                raise ValueError("HF_TOKEN is not set")
            return await get_cloudflare_turn_credentials_async(hf_token=token, ttl=CLIENT_TTL_S)
        except Exception as exc:  # no network, bad token, quota: connect without TURN
            log.warning("TURN credentials unavailable (%s); the browser connects without a relay", exc)
            return dict(NO_ICE)

    return turn_credentials


def server_rtc_configuration(mode: str, hf_token: str | None = None) -> dict[str, Any]:
    """What `WebRTC(server_rtc_configuration=...)` gets (fetched once, long-lived)."""
    if mode == "none":
        return dict(NO_ICE)
    token = _token(hf_token)
    try:
        from fastrtc import get_cloudflare_turn_credentials

        if mode == "hf" and not token:
            raise ValueError("HF_TOKEN is not set")
        creds = get_cloudflare_turn_credentials(hf_token=token, ttl=SERVER_TTL_S)
        if not isinstance(creds, dict) or "iceServers" not in creds:
            raise ValueError(f"unexpected answer {str(creds)[:200]!r}")
        return creds
    except Exception as exc:
        log.warning("TURN credentials for the server unavailable (%s); it offers host candidates only", exc)
        return dict(NO_ICE)


def rtc_configurations(provider: str = "auto", hf_token: str | None = None, space_id: str = "") -> tuple[Any, dict[str, Any]]:
    """(browser configuration, server configuration) for the page's WebRTC widget."""
    mode = turn_mode(provider, space_id)
    log.info("WebRTC: TURN %s", "off" if mode == "none" else f"via {mode}")
    return client_rtc_configuration(mode, hf_token), server_rtc_configuration(mode, hf_token)
