"""What of a failure may leave the process: the one redaction rule for every door.

ENDPOINT_URL may carry credentials (`https://user:token@host/...`), a realtime client may
send its key as `?api_key=`, and a remote endpoint's error body may hold anything
(credentials, internal names, a whole HTML page). Whatever a user reads (the /v1 API's
errors, the upload tab, the live page's status line, the realtime socket's `error`
events) goes through `public_message` or `public_reason`; logs go through `redact_urls`.

It lives in `engine/` because every layer above shows engine failures: `streaming/`
(the live session's error events) may not import `web/`, and `web/` re-exports these.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from engine.base import AudioError, TranscriptionError, UnsupportedRequest

__all__ = ["MAX_REASON_CHARS", "public_message", "public_reason", "redact_urls", "url_host"]

#: Longest failure text shown to a user (the rest goes to the log).
MAX_REASON_CHARS = 200

_URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>]*[^\s'\"<>.,:;)]", re.IGNORECASE)


def url_host(url: str) -> str:
    """Only scheme, host and port of a URL: no user, password, path, query or fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(url)"
    if not parts.scheme or not parts.hostname:
        return "(url)"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def redact_urls(text: str) -> str:
    """Every URL in `text` cut down to its host (ENDPOINT_URL may carry credentials)."""
    return _URL.sub(lambda m: url_host(m.group(0)), text)


def public_reason(exc: BaseException) -> str:
    """What a client may read of an engine failure: its first clause, URLs cut to the host.

    The rest (an upstream server's own error body, "Server said: ...", a redirect page)
    goes to the log only: it may hold anything, credentials and internal names included.
    """
    text = redact_urls(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    head = text.split(": ", 1)[0].split(". Server said", 1)[0]
    return head[:MAX_REASON_CHARS]


def public_message(exc: BaseException) -> str:
    """What a user may read of any failure, by its kind (the same split as the API's statuses):

    - `AudioError`, `UnsupportedRequest`: the message says what to fix and was written for
      the user (an endpoint's refusal is already cleaned by the remote engine): shown
      whole, URLs cut to the host;
    - any other `TranscriptionError` (the engine failed, an endpoint is down): its first
      clause only (`public_reason`);
    - anything else is a bug or an internal failure whose text was never meant for a
      user: its type only.
    """
    if isinstance(exc, (AudioError, UnsupportedRequest)):
        text = " ".join(redact_urls(str(exc)).split())
        return text[: 2 * MAX_REASON_CHARS] or type(exc).__name__
    if isinstance(exc, TranscriptionError):
        return public_reason(exc)
    return f"an internal error ({type(exc).__name__})"
