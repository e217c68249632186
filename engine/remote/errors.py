"""What the remote endpoint's failures mean for the user, in words that say what to fix.

The `openai` client raises typed errors (a status error with the server's answer, a
timeout, a connection error) after its own retries; `from_openai` turns each into one of
the engine's errors: `AudioError` (413), `UpstreamRejected` (400/422: the request itself
was refused, which the API reports as a 400 with the endpoint's reason) or `RemoteError`
(everything the caller cannot fix: credentials, URL, outage, redirect).

Each message puts what failed and what to fix first (no ": " inside), the server's own
words last ("Server said: ..."), so the API can show its clients the first part alone.
Nothing here ever shows the whole ENDPOINT_URL or the token: a URL may carry credentials
(`https://user:pass@host/...`, `?api_key=`), so messages name the endpoint's host only,
and the server's own words are cleaned of both before they are passed on.
"""

from __future__ import annotations

import base64

import httpx
import openai

from engine.base import (
    AudioError,
    EngineUnavailable,
    TranscriptionError,
    UnsupportedRequest,
)

DETAIL_MAX_CHARS = 300


class RemoteError(EngineUnavailable):
    """The endpoint refused or failed a request; `status` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamRejected(RemoteError, UnsupportedRequest):
    """The endpoint refused the request itself (400/422: an unknown language, a bad option).

    An `UnsupportedRequest`, so the API answers 400 with the endpoint's reason rather than
    a 503 that clients would retry; still a `RemoteError` for code that handles those.
    """


def host_of(url: str) -> str:
    """`scheme://host[:port]` of a URL: no credentials, path or query."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


class Redactor:
    """Removes the secrets of one endpoint (token, URL credentials) from text."""

    def __init__(self, endpoint_url: str, token: str) -> None:
        url = httpx.URL(endpoint_url)
        secrets = {token, url.password or "", str(url.query, "ascii", "replace"), endpoint_url.rstrip("/")}
        if url.username or url.password:  # httpx sends URL credentials as Basic auth: its header value too
            secrets.add(base64.b64encode(f"{url.username}:{url.password}".encode()).decode())
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
        self.host = host_of(endpoint_url)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, self.host if secret.startswith("http") else "***")
        return text


def server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI, vLLM, HF or FastAPI shapes)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:DETAIL_MAX_CHARS]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err.get("error")
            if msg:
                return str(msg)[:DETAIL_MAX_CHARS]
        elif isinstance(err, str):
            return err[:DETAIL_MAX_CHARS]
        for key in ("detail", "message"):
            if key in body:
                return str(body[key])[:DETAIL_MAX_CHARS]
    return str(body)[:DETAIL_MAX_CHARS]


def describe_transport(exc: BaseException) -> str:
    """Why no answer came: a timeout, a refused connection, a connection dropped mid-answer."""
    cause = exc.__cause__ or exc
    if isinstance(exc, openai.APITimeoutError) or isinstance(cause, httpx.TimeoutException):
        return f"timed out ({type(cause).__name__})"
    if isinstance(cause, httpx.ConnectError):
        return f"connection failed ({cause or 'refused'})"
    if isinstance(cause, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"the server closed the connection mid-response ({cause or type(cause).__name__})"
    return f"{type(cause).__name__}: {cause}"


def status_error(response: httpx.Response, *, host: str, model: str, redact: Redactor) -> TranscriptionError:
    """The engine error for an HTTP answer that is not a success (3xx included)."""
    status = response.status_code
    detail = redact(server_message(response))
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        target = host_of(str(response.url.join(location))) if location else "an address it did not give"
        where = "another path on the same host" if target == host else target
        return RemoteError(
            f"the remote endpoint {host} answered with a redirect ({status}) to {where}; set ENDPOINT_URL to the "
            f"address it redirects to (redirects are not followed, as a redirect would turn the upload into a GET)",
            status,
        )
    if status == 401:
        return RemoteError(
            f"the remote endpoint refused the credentials (401 Unauthorized); set HF_TOKEN (or OPENAI_API_KEY) "
            f"to a valid token for {host}. Server said: {detail}",
            status,
        )
    if status == 403:
        return RemoteError(
            f"the remote endpoint denied access (403 Forbidden); the token is valid but has no permission "
            f"for this endpoint (a fine-grained HF token needs 'Make calls to Inference Endpoints'). Server said: {detail}",
            status,
        )
    if status == 404:
        return RemoteError(
            f"not found (404) at {host}{response.url.path}; check ENDPOINT_URL and its path prefix (Hugging Face "
            f"Inference Endpoints use .../api/v1, vLLM and OpenAI .../v1) and REMOTE_MODEL ({model or 'unset'}). "
            f"Server said: {detail}",
            status,
        )
    if status == 413:
        return AudioError(
            f"the remote endpoint refused the audio as too large (413 Payload Too Large); "
            f"send shorter audio or raise the endpoint's upload limit. Server said: {detail}"
        )
    if status == 429:
        return RemoteError(f"the remote endpoint is rate-limiting requests (429 Too Many Requests). Server said: {detail}", status)
    if status >= 500:
        return RemoteError(f"the remote endpoint failed ({status}). Server said: {detail}", status)
    if status in (400, 422):
        return UpstreamRejected(f"the remote endpoint rejected the request ({status}): {detail}", status)
    return RemoteError(f"the remote endpoint answered {status}. Server said: {detail}", status)


def from_openai(exc: openai.APIError, *, host: str, model: str, attempts: int, redact: Redactor) -> TranscriptionError:
    """The engine error for what the `openai` client raised after its retries."""
    if isinstance(exc, openai.APIStatusError):
        return status_error(exc.response, host=host, model=model, redact=redact)
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
        return RemoteError(
            f"no answer from the remote endpoint {host} after {attempts} attempt(s): {redact(describe_transport(exc))}"
        )
    return RemoteError(f"the remote endpoint failed: {redact(str(exc))}")
