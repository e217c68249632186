"""Secrets out of logs, pages and error messages.

ENDPOINT_URL may carry credentials (`https://user:token@host/...`) and a realtime client
may send the API key as `?api_key=`; neither may reach a log line, /health, the page or
a client's error message. Everything shown is cut down to scheme, host and port.
The URL rule itself (`url_host`, `redact_urls`) is `engine.public`'s, re-exported here:
the live session in `streaming/` applies it too.
"""

from __future__ import annotations

import logging
import re

from engine.public import redact_urls, url_host

__all__ = ["RedactQueryFilter", "RedactUrlFilter", "install_log_redaction", "redact_query", "redact_urls", "url_host"]

_QUERY = re.compile(r"\?[^\s\"']*")


def redact_query(path: str) -> str:
    """`/v1/realtime?api_key=sk-1&x=2` -> `/v1/realtime?api_key=***&x=***`."""

    def hide(match: re.Match) -> str:
        pairs = match.group(0)[1:].split("&")
        return "?" + "&".join(p.split("=", 1)[0] + "=***" if "=" in p else "***" for p in pairs if p)

    return _QUERY.sub(hide, path)


class RedactQueryFilter(logging.Filter):
    """Removes query-string values from uvicorn's access and WebSocket log lines.

    A realtime client may send the key as `?api_key=`; uvicorn logs the path with its
    query ("GET /v1/realtime?api_key=..." and '"WebSocket /v1/realtime?api_key=..."').
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact_query(a) if isinstance(a, str) and "?" in a else a for a in record.args)
        elif isinstance(record.msg, str) and "?" in record.msg and not record.args:
            record.msg = redact_query(record.msg)
        return True


class RedactUrlFilter(logging.Filter):
    """Cuts URLs down to their host in HTTP client log lines ("HTTP Request: POST https://user:pw@...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_urls(str(a)) if not isinstance(a, (int, float)) and "://" in str(a) else a for a in record.args
            )
        if isinstance(record.msg, str) and "://" in record.msg:
            record.msg = redact_urls(record.msg)
        return True


def install_log_redaction() -> None:
    """Put the filters on uvicorn's and the HTTP clients' loggers (after uvicorn configured logging)."""
    for names, flt in (
        (("uvicorn.access", "uvicorn.error", "uvicorn"), RedactQueryFilter()),
        (("httpx", "httpcore", "openai", "openai._base_client"), RedactUrlFilter()),
    ):
        for name in names:
            logger = logging.getLogger(name)
            if not any(type(f) is type(flt) for f in logger.filters):
                logger.addFilter(flt)
