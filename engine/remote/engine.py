"""`RemoteEngine`: Whisper behind an OpenAI-compatible `/audio/transcriptions` endpoint.

Works with vLLM's OpenAI server, Hugging Face Inference Endpoints (base URL ending in
`/api/v1`), OpenAI itself and this app's own API. `ENGINE=remote ENDPOINT_URL=... HF_TOKEN=...`.

The HTTP work is the official `openai` async client's: multipart upload, retries with
exponential backoff and `Retry-After` on 408/409/429/5xx, timeouts and dropped
connections (`REMOTE_RETRIES`; a transcription has no side effect, so a retry is always
safe), typed status errors, server-sent events. Around it, this module adds only what
is ours:

- one httpx client under it, for three reasons: connections reused (keep-alive), at
  most `REMOTE_CONCURRENCY` requests in flight with live finals served before a long
  file's pieces (`limiter.py`), and redirects not followed (a 3xx is an error naming
  where it points, never a transcript);
- errors that say what to fix (`errors.py`), without the endpoint's credentials;
- `verbose_json` (segments, confidence signals) asked for where timestamps are wanted,
  with a fallback to `json` decided for each request: only after several refusals in a
  row, each followed by a `json` answer, is `verbose_json` no longer asked for;
- long audio split on silences here (`engine.longform`), as the in-process engine does,
  rather than trusting each server's own long-form handling; silent audio answered here;
- word times (`timestamp_granularities=["segment", "word"]`): the endpoint's own, else
  timed here on local weights (`REMOTE_ALIGN_MODEL`), else none and `words_unavailable`
  says why (words.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import openai

from engine.audio import validate_audio
from engine.base import (
    PRIORITY_DEFAULT,
    SAMPLE_RATE,
    WINDOW_S,
    DecodeRequest,
    EngineInfo,
    Transcription,
    Word,
    check_task,
)
from engine.longform import transcribe_any
from engine.remote.errors import (
    Redactor,
    RemoteError,
    UpstreamRejected,
    describe_transport,
    from_openai,
    host_of,
)
from engine.remote.limiter import PRIORITY_HEADER, LimitedTransport, PriorityLimiter
from engine.remote.parsing import (
    AUDIO_FORMATS,
    encode_audio,
    event_delta,
    parse_transcription,
    text_of_body,
)
from engine.remote.words import WORDS_UNAVAILABLE, LocalWordTimer, local_model_dir

if TYPE_CHECKING:
    from settings import Settings

log = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "verbose_json", "text")
#: `verbose_json` refusals in a row (each followed by a `json` success) after which the
#: endpoint is taken not to offer it; one refusal may be about that request alone.
VERBOSE_REFUSALS_TO_GIVE_UP = 3
CONNECT_TIMEOUT_S = 10.0


def normalise_url(url: str) -> str:
    """The API base URL: a full route (`.../audio/transcriptions`) is trimmed to its prefix."""
    url = url.rstrip("/")
    for suffix in ("/audio/transcriptions", "/audio/translations"):
        url = url.removesuffix(suffix)
    return url


class RemoteEngine:
    """Whisper behind an OpenAI-compatible HTTP API. Safe to share between sessions."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        token: str = "",
        model: str = "",
        timeout_s: float = 60.0,
        retries: int = 3,
        response_format: str = "json",
        audio_format: str = "flac",
        concurrency: int = 8,
        align_model: str = "",
        model_cache: str = "",
    ) -> None:
        if not endpoint_url:
            raise ValueError(
                "ENGINE=remote needs ENDPOINT_URL: the API's base URL with its path prefix, "
                "e.g. https://<name>.endpoints.huggingface.cloud/api/v1 or http://127.0.0.1:8000/v1"
            )
        if not endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"ENDPOINT_URL must start with http:// or https:// (got {endpoint_url.split(':', 1)[0]}:...)")
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"REMOTE_RESPONSE_FORMAT must be json, verbose_json or text, not {response_format!r}")
        if audio_format not in AUDIO_FORMATS:
            raise ValueError(f"REMOTE_AUDIO_FORMAT must be flac or wav, not {audio_format!r}")
        self._base_url = normalise_url(endpoint_url)  # may carry credentials: never shown
        try:
            self.host = host_of(self._base_url)
            valid = bool(httpx.URL(self._base_url).host)
        except httpx.InvalidURL:
            valid = False
        if not valid:
            raise ValueError("ENDPOINT_URL is not a valid URL: http(s)://host[:port]/path-prefix")
        self._redact = Redactor(self._base_url, token)
        self._token = token
        self.model = model
        self.retries = max(0, retries)
        self.response_format = response_format
        self.audio_format = audio_format
        self._verbose_refusals = 0  # refusals in a row; VERBOSE_REFUSALS_TO_GIVE_UP: not offered
        # Word times the endpoint does not give: timed here on local weights (words.py).
        self._align_model = align_model
        self._model_cache = Path(model_cache or ".").expanduser()
        self._word_timer: LocalWordTimer | None = None
        self._word_timer_lock = asyncio.Lock()
        self._word_timer_tried = False
        #: Why a request for word times got none (the API says so in its answer); None: they come.
        self.words_unavailable: str | None = None
        self._model_checked = bool(model)
        self._model_lock = asyncio.Lock()
        concurrency = max(1, concurrency)
        self.limiter = PriorityLimiter(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http = httpx.AsyncClient(
            transport=LimitedTransport(httpx.AsyncHTTPTransport(limits=limits), self.limiter),
            follow_redirects=False,
            event_hooks={"response": [self._log_failure]},
        )
        self._client = openai.AsyncOpenAI(**self._client_options(), http_client=http, max_retries=self.retries,
                                          timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)))
        self.info = self._describe(model or "whisper-1", settings={
            "endpoint": self.host,
            "timeout_s": timeout_s,
            "retries": self.retries,
            "response_format": response_format,
            "audio_format": audio_format,
            "concurrency": concurrency,
            "token": "set" if token else "none",
        })

    @classmethod
    def from_settings(cls, settings: Settings) -> RemoteEngine:
        engine = cls(
            settings.endpoint_url,
            token=settings.remote_token,
            model=settings.remote_model,
            timeout_s=float(settings.remote_timeout_s),
            retries=int(settings.remote_retries),
            response_format=settings.remote_response_format,
            audio_format=settings.remote_audio_format,
            concurrency=int(settings.remote_concurrency),
            align_model=settings.remote_align_model,
            model_cache=settings.model_cache,
        )
        if not settings.remote_model:
            engine.discover_model()
        return engine

    def _client_options(self) -> dict[str, Any]:
        return {"base_url": self._base_url, "api_key": self._token or "unused"}

    def _headers(self, **extra: str) -> dict[str, Any]:
        """Per-request headers. Without a token, no Authorization header at all (the
        client's own is omitted): some servers refuse a made-up one."""
        return {**extra} if self._token else {"Authorization": openai.Omit(), **extra}

    def _describe(self, model: str, settings: dict[str, object]) -> EngineInfo:
        return EngineInfo(model, "remote", self.host, not model.lower().endswith(".en"), settings)

    # -- the model the endpoint serves ------------------------------------------------

    def discover_model(self, timeout_s: float = 5.0) -> None:
        """Ask the endpoint's /models which model it serves, now (at start-up, no loop yet).

        Failing that (endpoint asleep or without /models), it is asked again with the first
        request, and `whisper-1` is sent meanwhile.
        """
        try:
            with openai.OpenAI(**self._client_options(), max_retries=0, timeout=timeout_s) as client:
                self._learn_model([m.id for m in client.models.list(extra_headers=self._headers()).data])
        except (openai.OpenAIError, ValueError, AttributeError, TypeError) as exc:
            log.info("could not list the remote endpoint's models yet (%s)", self._redact(str(exc)))

    async def _ensure_model(self) -> None:
        """Without REMOTE_MODEL, ask the endpoint which model it serves (once)."""
        if self._model_checked:
            return
        async with self._model_lock:
            if not self._model_checked:
                try:
                    page = await self._client.with_options(max_retries=0, timeout=10.0).models.list(extra_headers=self._headers())
                    self._learn_model([m.id for m in page.data])
                except (openai.OpenAIError, ValueError, AttributeError, TypeError) as exc:
                    log.info("could not list the remote endpoint's models (%s); sending model=whisper-1", self._redact(str(exc)))
            self._model_checked = True

    def _learn_model(self, ids: list[Any]) -> None:
        models = [m for m in ids if isinstance(m, str) and m]
        if models:
            self.model = models[0]
            self._model_checked = True
            log.info("remote endpoint serves %s; using %s", models, self.model)
            self.info = self._describe(self.model, self.info.settings)

    # -- Engine API -------------------------------------------------------------------

    async def transcribe(self, request: DecodeRequest) -> Transcription:
        return await transcribe_any(self, await self._checked(request))

    async def transcribe_window(self, request: DecodeRequest, offset: float = 0.0) -> Transcription:
        """One window of at most 30 s, its segment times moved by `offset` seconds."""
        fmt = self._format_for(request)
        try:
            response = await self._post(request, fmt)
        except UpstreamRejected as exc:
            if fmt != "verbose_json":
                raise
            # Perhaps the endpoint has no verbose_json, perhaps the request itself was bad:
            # the same request in plain json tells (and raises the endpoint's reason if bad).
            fmt = "json" if self.response_format == "verbose_json" else self.response_format
            log.info("remote endpoint refused verbose_json (%s); asking this request in %s", exc, fmt)
            response = await self._post(request, fmt)
            self._verbose_refused()
        else:
            if fmt == "verbose_json":
                self._verbose_refusals = 0
        result = parse_transcription(
            response.content, response.headers.get("content-type", ""), fmt=fmt, duration=request.duration,
            offset=offset, language=request.language,
        )
        if request.word_timestamps and result.text and not result.words:
            result = replace(result, words=await self._local_words(request, result, offset))
        return result

    async def _local_words(self, request: DecodeRequest, result: Transcription, offset: float) -> list[Word]:
        """The words of an answer without word times, timed on local weights when
        `align_model` has them (words.py); else none, and `words_unavailable` says why."""
        async with self._word_timer_lock:
            if not self._word_timer_tried:
                self._word_timer_tried = True
                model_dir = await asyncio.to_thread(local_model_dir, self._align_model, self._model_cache)
                self._word_timer = LocalWordTimer(model_dir) if model_dir is not None else None
                self.words_unavailable = None if model_dir is not None else WORDS_UNAVAILABLE
        if self._word_timer is None:
            return []
        return await self._word_timer.words(
            request.audio, result.text, language=result.language or request.language, task=request.task, offset=offset
        )

    async def detect_language(self, audio: np.ndarray, priority: int = PRIORITY_DEFAULT) -> str | None:
        """The language the endpoint reports for this audio (verbose_json), or None."""
        if not self.info.multilingual:
            return "en"
        if not self.verbose_json_offered:
            return None
        piece = audio[: int(WINDOW_S * SAMPLE_RATE)]
        result = await self.transcribe_window(DecodeRequest(piece, timestamps=True, priority=priority))
        return result.language

    async def transcribe_stream(self, request: DecodeRequest) -> AsyncIterator[str]:
        """Text deltas from the endpoint's `stream=true` server-sent events.

        Retried like `transcribe` until the answer starts; a server that answers with plain
        JSON instead of events gives its whole text as one delta; a stream that breaks
        before its first delta is asked again without streaming, one that breaks after
        it is a clear error (deltas handed on cannot be taken back). Long audio and
        translations (the `openai` client streams transcriptions only) come as segments.
        """
        request = await self._checked(request)
        if request.duration > WINDOW_S or request.task == "translate":
            result = await transcribe_any(self, request)
            for i, segment in enumerate(result.segments):
                yield (" " if i else "") + segment.text
            return
        raw = await self._call(request, "json", stream=True)
        response: httpx.Response = raw.http_response
        try:
            ctype = response.headers.get("content-type", "")
            if "text/event-stream" not in ctype:
                text = text_of_body(await response.aread(), ctype)
                if text:
                    yield text
                return
            yielded = False
            try:
                async for event in raw.parse():
                    delta = event_delta(event)
                    if delta:
                        yielded = True
                        yield delta
                return
            except openai.APIConnectionError as exc:
                reason = self._redact(describe_transport(exc))
                if yielded:
                    raise RemoteError(f"the remote endpoint dropped the stream midway: {reason}") from exc
                log.warning("remote stream broke before its first delta (%s); asking again without streaming", reason)
            except openai.APIError as exc:  # an `error` event
                raise RemoteError(f"the remote endpoint failed mid-stream: {self._redact(exc.message)}") from exc
            except ValueError as exc:  # an event that is not JSON
                raise RemoteError(f"the remote endpoint sent an unreadable event: {exc}") from exc
        finally:
            await response.aclose()
        result = await self.transcribe_window(request)
        if result.text:
            yield result.text

    async def close(self) -> None:
        await self._client.close()

    # -- internals --------------------------------------------------------------------

    async def _log_failure(self, response: httpx.Response) -> None:
        """Each failed attempt in the log (the openai client retries quietly)."""
        if response.status_code >= 300:
            log.warning("remote endpoint %s answered %d to %s", self.host, response.status_code, response.url.path)

    @property
    def verbose_json_offered(self) -> bool:
        return self._verbose_refusals < VERBOSE_REFUSALS_TO_GIVE_UP

    def _verbose_refused(self) -> None:
        self._verbose_refusals += 1
        if self._verbose_refusals == VERBOSE_REFUSALS_TO_GIVE_UP:
            log.warning(
                "remote endpoint %s refused verbose_json %d times in a row while answering json: "
                "no longer asking for it (no segment times or confidence signals)", self.host, self._verbose_refusals,
            )

    def _format_for(self, request: DecodeRequest) -> str:
        wanted = request.timestamps or request.word_timestamps or self.response_format == "verbose_json"
        if wanted and self.verbose_json_offered:
            return "verbose_json"
        return "json" if self.response_format == "verbose_json" else self.response_format

    async def _checked(self, request: DecodeRequest) -> DecodeRequest:
        """Once per public call: valid audio, a task and language the model can do."""
        request = request.with_(audio=validate_audio(request.audio))
        await self._ensure_model()
        check_task(self.info, request.language, request.task)
        return request

    async def _post(self, request: DecodeRequest, fmt: str) -> httpx.Response:
        return (await self._call(request, fmt)).http_response

    async def _call(self, request: DecodeRequest, fmt: str, *, stream: bool = False) -> Any:
        """One upload through the openai client (its retries included); the raw answer."""
        await self._ensure_model()
        # FLAC-encoding a 29 s piece takes tens of ms; a long file's hundreds of pieces
        # on the event loop stalled every live stream and /health (8 s on a 4-hour file).
        audio_file = await asyncio.to_thread(encode_audio, request.audio, self.audio_format)
        options: dict[str, Any] = {
            "file": audio_file,
            "model": self.model or "whisper-1",
            "response_format": fmt,
            "temperature": request.temperature,
            "extra_headers": self._headers(**{PRIORITY_HEADER: str(request.priority)}),
        }
        if request.prompt:
            options["prompt"] = request.prompt
        extra: dict[str, Any] = {}
        if fmt == "verbose_json":
            extra["timestamp_granularities"] = ["segment", "word"] if request.word_timestamps else ["segment"]
        if request.task == "translate":
            # OpenAI's translations take no language; vLLM reads it as the source language.
            endpoint = self._client.audio.translations.with_raw_response
            if request.language:
                extra["language"] = request.language
        else:
            endpoint = self._client.audio.transcriptions.with_raw_response
            if request.language:
                options["language"] = request.language
            if stream:
                options["stream"] = True
        try:
            return await endpoint.create(**options, extra_body=extra or None)
        except openai.APIError as exc:
            raise from_openai(
                exc, host=self.host, model=self.model, attempts=self.retries + 1, redact=self._redact
            ) from None
