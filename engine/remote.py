"""An engine that sends each decode to an OpenAI-compatible `/audio/transcriptions` endpoint.

Works with `vllm serve`, Hugging Face Inference Endpoints (base URL ending in `/api/v1`),
OpenAI itself, and this app's own API. `ENGINE=remote ENDPOINT_URL=... HF_TOKEN=...`.

- One `httpx.AsyncClient` per engine: connections are reused (keep-alive), at most
  `REMOTE_CONCURRENCY` requests in flight at once.
- Timeouts: connect 10 s, read `REMOTE_TIMEOUT_S`.
- Retries (`REMOTE_RETRIES`, exponential backoff with jitter, `Retry-After` honoured)
  on 429, 500, 502, 503, 504, timeouts and connections refused or dropped mid-response.
  A transcription has no side effect, so a retry is always safe.
- Clear messages for 401, 403, 404 and 413; other 4xx pass the server's message on.
- Audio goes up as 16 kHz mono 16-bit FLAC (or WAV): what every Whisper server reads.
- Audio longer than 30 s is split on silences here and the pieces decoded concurrently
  (engine/longform.py), the same as the in-process engine does, rather than trusting
  each server's own long-form handling.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import wave
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator

import httpx
import numpy as np

from engine.audio import validate_audio
from engine.base import (
    SAMPLE_RATE,
    WINDOW_S,
    AudioError,
    EngineInfo,
    EngineUnavailable,
    Segment,
    Task,
    Transcription,
    TranscriptionError,
    check_task,
)
from engine.longform import transcribe_any

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 8.0
RETRY_AFTER_MAX_S = 30.0

# Whisper's language names, for servers that answer "english" where a code is expected.
_NAMES = {
    "english": "en", "chinese": "zh", "german": "de", "spanish": "es", "russian": "ru", "korean": "ko",
    "french": "fr", "japanese": "ja", "portuguese": "pt", "turkish": "tr", "polish": "pl", "catalan": "ca",
    "dutch": "nl", "arabic": "ar", "swedish": "sv", "italian": "it", "indonesian": "id", "hindi": "hi",
    "finnish": "fi", "vietnamese": "vi", "hebrew": "he", "ukrainian": "uk", "greek": "el", "malay": "ms",
    "czech": "cs", "romanian": "ro", "danish": "da", "hungarian": "hu", "tamil": "ta", "norwegian": "no",
    "thai": "th", "urdu": "ur", "croatian": "hr", "bulgarian": "bg", "lithuanian": "lt", "latin": "la",
}


class RemoteError(EngineUnavailable):
    """The endpoint refused or failed a request; `status` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def encode_audio(audio: np.ndarray, fmt: str = "flac") -> tuple[bytes, str, str]:
    """16 kHz mono 16-bit audio file bytes: (data, filename, content type)."""
    pcm = np.clip(audio, -1.0, 1.0)
    pcm = (pcm * 32767.0).round().astype("<i2")
    if fmt == "flac":
        import soundfile

        buf = io.BytesIO()
        soundfile.write(buf, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        return buf.getvalue(), "audio.flac", "audio/flac"
    if fmt != "wav":
        raise ValueError(f"remote audio format must be 'flac' or 'wav', not {fmt!r}")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return buf.getvalue(), "audio.wav", "audio/wav"


def _language_code(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    v = value.strip().lower()
    return _NAMES.get(v, v)


def _server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI, vLLM, HF or FastAPI shapes)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err.get("error")
            if msg:
                return str(msg)[:300]
        elif isinstance(err, str):
            return err[:300]
        if "detail" in body:
            return str(body["detail"])[:300]
        if "message" in body:
            return str(body["message"])[:300]
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, min(float(value), RETRY_AFTER_MAX_S))
    except ValueError:
        pass
    try:
        import datetime as dt

        when = parsedate_to_datetime(value)
        return max(0.0, min((when - dt.datetime.now(when.tzinfo)).total_seconds(), RETRY_AFTER_MAX_S))
    except (TypeError, ValueError):
        return None


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
        backoff_base_s: float = BACKOFF_BASE_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not endpoint_url:
            raise ValueError(
                "ENGINE=remote needs ENDPOINT_URL: the API's base URL with its path prefix, "
                "e.g. https://<name>.endpoints.huggingface.cloud/api/v1 or http://127.0.0.1:8000/v1"
            )
        if not endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"ENDPOINT_URL must start with http:// or https://, got {endpoint_url!r}")
        if response_format not in ("json", "verbose_json", "text"):
            raise ValueError(f"REMOTE_RESPONSE_FORMAT must be json, verbose_json or text, not {response_format!r}")
        if audio_format not in ("flac", "wav"):
            raise ValueError(f"REMOTE_AUDIO_FORMAT must be flac or wav, not {audio_format!r}")
        self.base_url = self._normalise(endpoint_url)
        self.model = model
        self.retries = max(0, retries)
        self.response_format = response_format
        self.audio_format = audio_format
        self.backoff_base_s = backoff_base_s
        self._verbose_ok: bool | None = None  # learnt: does the server take verbose_json?
        self._model_checked = bool(model)
        self._model_lock = asyncio.Lock()
        self._semaphore = asyncio.Semaphore(max(1, concurrency))
        headers = {"User-Agent": "rt-whisper-remote/1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max(1, concurrency), max_keepalive_connections=max(1, concurrency)),
            transport=transport,
        )
        multilingual = not (model or "").lower().endswith(".en")
        self.info = EngineInfo(
            model=model or "whisper-1",
            engine="remote",
            device=self.base_url,
            multilingual=multilingual,
            settings={
                "endpoint": self.base_url,
                "timeout_s": timeout_s,
                "retries": self.retries,
                "response_format": response_format,
                "audio_format": audio_format,
                "concurrency": concurrency,
                "token": "set" if token else "none",
            },
        )

    @classmethod
    def from_settings(cls, settings: Any) -> "RemoteEngine":
        import os

        token = settings.hf_token or os.environ.get("OPENAI_API_KEY", "")
        engine = cls(
            settings.endpoint_url,
            token=token,
            model=settings.remote_model,
            timeout_s=float(getattr(settings, "remote_timeout_s", 60.0)),
            retries=int(getattr(settings, "remote_retries", 3)),
            response_format=getattr(settings, "remote_response_format", "json"),
            audio_format=getattr(settings, "remote_audio_format", "flac"),
            concurrency=int(getattr(settings, "remote_concurrency", 8)),
        )
        if not settings.remote_model:
            engine.discover_model()
        return engine

    def discover_model(self, timeout_s: float = 5.0) -> None:
        """Ask the endpoint's /models which model it serves, now (at start-up, no loop yet).

        Failing that (endpoint asleep or without /models), it is asked again with the first
        request, and `whisper-1` is sent meanwhile.
        """
        try:
            with httpx.Client(base_url=self.base_url, headers=dict(self._client.headers), timeout=timeout_s) as client:
                response = client.get("models")
            self._learn_model(response)
            self._model_checked = self._model_checked or bool(self.model)
        except httpx.HTTPError as exc:
            log.info("could not list the remote endpoint's models yet (%s)", exc)

    def _learn_model(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            return
        try:
            models = [m.get("id") for m in response.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            return
        models = [m for m in models if m]
        if models:
            self.model = models[0]
            log.info("remote endpoint serves %s; using %s", models, self.model)
            multilingual = not self.model.lower().endswith(".en")
            self.info = EngineInfo(self.model, "remote", self.info.device, multilingual, self.info.settings)

    @staticmethod
    def _normalise(url: str) -> str:
        url = url.rstrip("/")
        for suffix in ("/audio/transcriptions", "/audio/translations"):
            if url.endswith(suffix):
                url = url[: -len(suffix)]
        return url + "/"

    # -- Engine API -------------------------------------------------------------------

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        task: Task = "transcribe",
        prompt: str | None = None,
        temperature: float = 0.0,
        timestamps: bool = False,
        progress: Any = None,
        priority: int = 0,  # the endpoint has its own queue: not sent
    ) -> Transcription:
        audio = validate_audio(audio)
        await self._ensure_model()
        check_task(self.info, language, task)
        return await transcribe_any(
            self, audio, language=language, task=task, prompt=prompt, temperature=temperature,  # type: ignore[arg-type]
            timestamps=timestamps, progress=progress, priority=priority,
        )

    async def transcribe_window(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        task: Task = "transcribe",
        prompt: str | None = None,
        temperature: float = 0.0,
        timestamps: bool = False,
        offset: float = 0.0,
        priority: int = 0,
    ) -> Transcription:
        duration = len(audio) / SAMPLE_RATE
        fmt = self.response_format
        if timestamps and self._verbose_ok is not False:
            fmt = "verbose_json"
        if fmt == "verbose_json" and self._verbose_ok is False:
            fmt = "json"
        try:
            response = await self._post(audio, language=language, task=task, prompt=prompt, temperature=temperature, fmt=fmt)
        except RemoteError as exc:
            if fmt == "verbose_json" and exc.status in (400, 422) and self._verbose_ok is None:
                log.warning("remote endpoint refused verbose_json (%s); using json from now on", exc)
                self._verbose_ok = False
                fmt = "json"
                response = await self._post(
                    audio, language=language, task=task, prompt=prompt, temperature=temperature, fmt=fmt
                )
            else:
                raise
        if fmt == "verbose_json":
            self._verbose_ok = True
        return self._parse(response, fmt, duration, offset, language)

    async def detect_language(self, audio: np.ndarray, priority: int = 0) -> str | None:
        """The language the endpoint reports for this audio (verbose_json), or None."""
        if not self.info.multilingual:
            return "en"
        if self._verbose_ok is False:
            return None
        piece = audio[: int(WINDOW_S * SAMPLE_RATE)]
        result = await self.transcribe_window(piece, timestamps=True)
        return result.language

    async def transcribe_stream(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        task: Task = "transcribe",
        prompt: str | None = None,
        temperature: float = 0.0,
    ) -> AsyncIterator[str]:
        """Text deltas from the endpoint's `stream=true` server-sent events.

        Retries like `transcribe` until the first delta arrives; a server that answers
        with plain JSON instead of events gives its whole text as one delta.
        """
        audio = validate_audio(audio)
        await self._ensure_model()
        check_task(self.info, language, task)
        if len(audio) > WINDOW_S * SAMPLE_RATE:
            result = await self.transcribe(audio, language=language, task=task, prompt=prompt, temperature=temperature)
            for i, segment in enumerate(result.segments):
                yield (" " if i else "") + segment.text
            return
        await self._ensure_model()
        data, files = self._form(audio, language=language, task=task, prompt=prompt, temperature=temperature, fmt="json")
        data["stream"] = "true"
        path = self._path(task)
        attempt = 0
        while True:
            yielded = False
            retry: tuple[httpx.Response, TranscriptionError] | None = None
            try:
                async with self._semaphore:
                    async with self._client.stream("POST", path, data=data, files=files) as response:
                        if response.status_code >= 400:
                            await response.aread()
                            error = self._status_error(response)
                            if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
                                raise error
                            retry = (response, error)
                        ctype = response.headers.get("content-type", "")
                        if retry is not None:
                            pass
                        elif "text/event-stream" not in ctype:
                            body = await response.aread()
                            text = self._text_of_body(body, ctype)
                            if text:
                                yielded = True
                                yield text
                            return
                        else:
                            async for delta in self._sse_deltas(response):
                                yielded = True
                                yield delta
                            return
            except (httpx.TransportError, httpx.StreamError) as exc:
                if yielded:
                    raise RemoteError(f"the remote endpoint dropped the stream midway: {self._describe(exc)}") from exc
                if attempt >= self.retries:
                    raise RemoteError(
                        f"no answer from the remote endpoint {self.base_url} after {attempt + 1} attempt(s): {self._describe(exc)}"
                    ) from exc
                await self._sleep_before_retry(attempt, None, exc)
                attempt += 1
                continue
            if retry is not None:
                await self._sleep_before_retry(attempt, *retry)
                attempt += 1

    async def close(self) -> None:
        await self._client.aclose()

    # -- HTTP -------------------------------------------------------------------------

    def _path(self, task: Task) -> str:
        return "audio/translations" if task == "translate" else "audio/transcriptions"

    def _form(
        self, audio: np.ndarray, *, language: str | None, task: Task, prompt: str | None, temperature: float, fmt: str
    ) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
        payload, name, ctype = encode_audio(audio, self.audio_format)
        data: dict[str, str] = {"model": self.model or "whisper-1", "response_format": fmt, "temperature": str(temperature)}
        if language:
            # For translations OpenAI takes no language; vLLM uses it as the source language.
            data["language"] = language
        if prompt:
            data["prompt"] = prompt
        if fmt == "verbose_json":
            data["timestamp_granularities[]"] = "segment"
        return data, {"file": (name, payload, ctype)}

    async def _ensure_model(self) -> None:
        """Without REMOTE_MODEL, ask the endpoint which model it serves (once)."""
        if self._model_checked:
            return
        async with self._model_lock:
            if not self._model_checked:
                await self._ask_model()
            self._model_checked = True

    async def _ask_model(self) -> None:
        try:
            async with self._semaphore:
                response = await self._client.get("models", timeout=10.0)
            self._learn_model(response)
        except httpx.HTTPError as exc:
            log.info("could not list the remote endpoint's models (%s); sending model=whisper-1", exc)

    async def _post(
        self, audio: np.ndarray, *, language: str | None, task: Task, prompt: str | None, temperature: float, fmt: str
    ) -> httpx.Response:
        await self._ensure_model()
        data, files = self._form(audio, language=language, task=task, prompt=prompt, temperature=temperature, fmt=fmt)
        path = self._path(task)
        attempt = 0
        while True:
            try:
                async with self._semaphore:
                    response = await self._client.post(path, data=data, files=files)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise RemoteError(
                        f"no answer from the remote endpoint {self.base_url} after {attempt + 1} attempt(s): {self._describe(exc)}"
                    ) from exc
                await self._sleep_before_retry(attempt, None, exc)
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            error = self._status_error(response)
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                await self._sleep_before_retry(attempt, response, error)
                attempt += 1
                continue
            raise error

    async def _sleep_before_retry(self, attempt: int, response: httpx.Response | None, why: BaseException) -> None:
        delay = min(BACKOFF_MAX_S, self.backoff_base_s * 2**attempt) * (0.5 + random.random() / 2)
        if response is not None:
            after = _retry_after(response)
            if after is not None:
                delay = max(delay, after)
        reason = str(why) if isinstance(why, TranscriptionError) else self._describe(why)
        log.warning("remote endpoint: %s; retry %d of %d in %.1f s", reason, attempt + 1, self.retries, delay)
        await asyncio.sleep(delay)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, httpx.TimeoutException):
            return f"timed out ({type(exc).__name__})"
        if isinstance(exc, httpx.ConnectError):
            return f"connection failed ({exc or 'refused'})"
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"the server closed the connection mid-response ({exc})"
        return f"{type(exc).__name__}: {exc}"

    def _status_error(self, response: httpx.Response) -> TranscriptionError:
        status = response.status_code
        detail = _server_message(response)
        url = str(response.request.url) if response.request is not None else self.base_url
        if status == 401:
            return RemoteError(
                f"the remote endpoint refused the credentials (401 Unauthorized): set HF_TOKEN (or OPENAI_API_KEY) "
                f"to a valid token for {self.base_url}. Server said: {detail}",
                status,
            )
        if status == 403:
            return RemoteError(
                f"the remote endpoint denied access (403 Forbidden): the token is valid but has no permission "
                f"for this endpoint (a fine-grained HF token needs 'Make calls to Inference Endpoints'). Server said: {detail}",
                status,
            )
        if status == 404:
            return RemoteError(
                f"not found (404) at {url}: check ENDPOINT_URL and its path prefix (Hugging Face Inference Endpoints "
                f"use .../api/v1, vLLM and OpenAI .../v1) and REMOTE_MODEL ({self.model or 'unset'}). Server said: {detail}",
                status,
            )
        if status == 413:
            return AudioError(
                f"the remote endpoint refused the audio as too large (413 Payload Too Large); "
                f"send shorter audio or raise the endpoint's upload limit. Server said: {detail}"
            )
        if status == 429:
            return RemoteError(f"the remote endpoint is rate-limiting requests (429 Too Many Requests): {detail}", status)
        if status >= 500:
            return RemoteError(f"the remote endpoint failed ({status}): {detail}", status)
        if status in (400, 422):
            return RemoteError(f"the remote endpoint rejected the request ({status}): {detail}", status)
        return RemoteError(f"the remote endpoint answered {status}: {detail}", status)

    # -- parsing ----------------------------------------------------------------------

    @staticmethod
    def _text_of_body(body: bytes, ctype: str) -> str:
        text = body.decode("utf-8", errors="replace")
        if "json" in ctype or text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except ValueError:
                return text.strip()
            if isinstance(data, dict):
                return str(data.get("text", "")).strip()
        return text.strip()

    def _parse(
        self, response: httpx.Response, fmt: str, duration: float, offset: float, language: str | None
    ) -> Transcription:
        ctype = response.headers.get("content-type", "")
        if fmt == "text" or "json" not in ctype:
            text = self._text_of_body(response.content, ctype)
            return Transcription(text, language, duration, [Segment(offset, offset + duration, text)] if text else [])
        try:
            data = response.json()
        except ValueError as exc:
            raise RemoteError(f"the remote endpoint sent an unreadable answer: {response.text[:200]!r}") from exc
        if not isinstance(data, dict) or "text" not in data:
            raise RemoteError(f"the remote endpoint's answer has no 'text': {str(data)[:200]}")
        text = str(data.get("text") or "").strip()
        lang = _language_code(data.get("language")) or language
        raw_segments = data.get("segments") or []
        segments: list[Segment] = []
        logprobs: list[float] = []
        ratios: list[float] = []
        no_speech: list[float] = []
        for s in raw_segments:
            if not isinstance(s, dict):
                continue
            try:
                start = float(s.get("start", 0.0))
                end = float(s.get("end", start))
            except (TypeError, ValueError):
                continue
            seg_text = str(s.get("text") or "").strip()
            if seg_text:
                start = min(max(0.0, start), duration)
                end = min(max(start, end), duration)
                segments.append(Segment(offset + start, offset + end, seg_text))
            for key, bucket in (("avg_logprob", logprobs), ("compression_ratio", ratios), ("no_speech_prob", no_speech)):
                value = s.get(key)
                if isinstance(value, (int, float)):
                    bucket.append(float(value))
        if not segments and text:
            segments = [Segment(offset, offset + duration, text)]
        if raw_segments and segments:
            text = " ".join(s.text for s in segments)
        return Transcription(
            text=text,
            language=lang,
            duration=duration,
            segments=segments,
            avg_logprob=float(np.mean(logprobs)) if logprobs else None,
            compression_ratio=max(ratios) if ratios else None,
            no_speech_prob=float(np.mean(no_speech)) if no_speech else None,
        )

    async def _sse_deltas(self, response: httpx.Response) -> AsyncIterator[str]:
        """Deltas from OpenAI (`transcript.text.delta`) or vLLM (`choices[0].delta.content`) events."""
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if not payload or payload == "[DONE]":
                continue
            try:
                event = json.loads(payload)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if "error" in event and event["error"]:
                err = event["error"]
                message = err.get("message") if isinstance(err, dict) else str(err)
                raise RemoteError(f"the remote endpoint failed mid-stream: {message}")
            kind = event.get("type")
            if kind == "transcript.text.delta":
                if event.get("delta"):
                    yield event["delta"]
                continue
            if kind == "transcript.text.done":
                continue
            for choice in event.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
                if delta:
                    yield delta
