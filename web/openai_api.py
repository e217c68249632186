"""OpenAI-compatible HTTP API on the app's own engine.

- `POST /v1/audio/transcriptions` and `POST /v1/audio/translations` (multipart, OpenAI's
  fields: file, model, language, prompt, response_format json|text|verbose_json|srt|vtt,
  temperature, `timestamp_granularities[]=segment` and/or `word` (verbose_json: `words`
  with start, end and probability), `include[]=logprobs` on json (each text token's
  log-probability, as OpenAI), `stream=true` as server-sent events
  `transcript.text.delta` / `transcript.text.done`); `response_format=diarized_json`
  (transcriptions) labels speakers, with `known_speaker_names[]` / `_references[]`
  (web/diarized.py), streamed as `transcript.text.segment` events
- `GET /v1/models`, `GET /v1/models/{id}`

Every failure is OpenAI-style error JSON (web/errors.py) with a 4xx status for what the
caller can fix and 502/503 for engine failures; user input never gives a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Annotated, Any, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from engine.audio import load_audio
from engine.base import SAMPLE_RATE, AudioError, DecodeRequest, Engine, Transcription, UnsupportedRequest, check_task, checked_prompt
from engine.formats import to_srt, to_vtt, token_json, word_json
from engine.languages import language_name
from settings import Settings
from web import diarized, metrics
from web.auth import require_api_key
from web.errors import APIError, error_body, from_engine_error
from web.jobs import ClientGone, JobQueue, JobsDraining, JobsFull

log = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt", "diarized_json")
#: Room for the form's other fields and the multipart framing on top of MAX_UPLOAD_MB.
FORM_OVERHEAD_BYTES = 1 << 20
#: How much of an over-limit body is read (and thrown away) so the client sees the 413.
DRAIN_LIMIT_BYTES = 64 << 20
CREATED = int(time.time())


class _TooLarge(Exception):
    pass


def model_ids(engine: Engine) -> list[str]:
    """The names /v1 accepts for the one model: its own id, its directory name, whisper-1."""
    ids = [engine.info.model]
    name = Path(engine.info.model).name
    if name and name not in ids:
        ids.append(name)
    if "whisper-1" not in ids:
        ids.append("whisper-1")
    return ids


@dataclass(frozen=True)
class OpenAIContext:
    """What the /v1 handlers need: injected per app, so the handlers are plain module-level
    functions (importable and testable alone) rather than closures over one factory."""

    engine: Engine
    settings: Settings
    #: The long-form queue shared with the page (MAX_JOBS / MAX_QUEUED).
    jobs: JobQueue

    @property
    def max_upload(self) -> int:
        """MAX_UPLOAD_MB in bytes."""
        return int(self.settings.max_upload_mb * 1024 * 1024)

    def bind(self, request: Request) -> None:
        """The router's dependency: hands this context to the request's handler."""
        request.state.openai = self


def openai_context(request: Request) -> OpenAIContext:
    """The handlers' dependency: the context their router bound to this request."""
    return request.state.openai


Context = Annotated[OpenAIContext, Depends(openai_context)]


def openai_router(engine: Engine, settings: Settings, jobs: JobQueue | None = None) -> APIRouter:
    """The /v1 routes; `jobs` is the long-form queue shared with the page (MAX_JOBS / MAX_QUEUED)."""
    context = OpenAIContext(engine, settings, jobs if jobs is not None else JobQueue(settings.max_jobs, settings.max_queued))
    router = APIRouter(
        prefix="/v1",
        # In order: the key first, then the context the handlers take.
        dependencies=[Depends(require_api_key(settings.api_key.get_secret_value())), Depends(context.bind)],
    )
    router.add_api_route("/models", list_models, methods=["GET"])
    router.add_api_route("/models/{model_id:path}", get_model, methods=["GET"])
    router.add_api_route("/audio/transcriptions", transcriptions, methods=["POST"])
    router.add_api_route("/audio/translations", translations, methods=["POST"])
    return router


# -- the routes ------------------------------------------------------------------------


async def list_models(ctx: Context) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(m) for m in model_ids(ctx.engine)]}


async def get_model(model_id: str, ctx: Context) -> dict[str, Any]:
    if model_id not in model_ids(ctx.engine):
        raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    return _model_card(model_id)


async def transcriptions(request: Request, ctx: Context) -> Response:
    return await _handle(ctx, request, "transcribe", "transcriptions")


async def translations(request: Request, ctx: Context) -> Response:
    return await _handle(ctx, request, "translate", "translations")


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "rt-whisper"}


# -- one transcription -------------------------------------------------------------------


async def _handle(ctx: OpenAIContext, request: Request, task: str, route: str) -> Response:
    try:
        response = await _run(ctx, request, task)
    except APIError as exc:
        metrics.API_REQUESTS.labels(route, str(exc.status)).inc()
        raise
    metrics.API_REQUESTS.labels(route, str(response.status_code)).inc()
    return response


async def _run(ctx: OpenAIContext, request: Request, task: str) -> Response:
    form = await _read_form(request, ctx.max_upload)
    try:
        return await _transcribe(ctx, request, form, task)
    finally:
        await form.close()


async def _transcribe(ctx: OpenAIContext, request: Request, form: Any, task: str) -> Response:
    upload = form.get("file")
    if upload is None:
        raise APIError(400, "Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
    if not isinstance(upload, UploadFile):
        raise APIError(400, "'file' must be an uploaded file (multipart/form-data), not a text field.", param="file")
    model = _text(form, "model")
    if model is None:
        raise APIError(
            400, "You must provide a model parameter.", param="model", code="missing_required_parameter"
        )
    if model not in model_ids(ctx.engine):
        raise APIError(
            404,
            f"The model '{model}' does not exist; this server offers {', '.join(model_ids(ctx.engine))}.",
            param="model",
            code="model_not_found",
        )
    response_format = _text(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise APIError(
            400,
            f"Invalid value for 'response_format': {response_format!r}. Use one of {', '.join(RESPONSE_FORMATS)}.",
            param="response_format",
            code="invalid_value",
        )
    temperature = _temperature(_text(form, "temperature"))
    language = _text(form, "language") if task == "transcribe" else None
    if language is not None:
        language = language.strip().lower()
        if not language.isalpha() or len(language) > 8:
            raise APIError(400, f"Invalid language {language!r}: use an ISO 639-1 code such as 'en'.", param="language", code="invalid_value")
    try:  # before the upload is read: a 1 MiB prompt is refused, not tokenized on the event loop
        prompt = checked_prompt(_text(form, "prompt"))
    except UnsupportedRequest as exc:
        raise APIError(400, str(exc), param="prompt", code="invalid_value") from exc
    granularities = [g for g in form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities") if isinstance(g, str)]
    for g in granularities:
        if g not in ("segment", "word"):
            raise APIError(400, f"Invalid timestamp granularity {g!r}: use 'segment' and/or 'word'.", param="timestamp_granularities", code="invalid_value")
    if granularities and response_format != "verbose_json":  # OpenAI's rule
        raise APIError(400, "timestamp_granularities needs response_format verbose_json.", param="timestamp_granularities", code="unsupported_value")
    granularity = set(granularities) or {"segment"}
    include = [i for i in form.getlist("include[]") + form.getlist("include") if isinstance(i, str)]
    for item in include:
        if item != "logprobs":
            raise APIError(400, f"Invalid include {item!r}: use 'logprobs'.", param="include", code="invalid_value")
    logprobs = bool(include)
    if logprobs and response_format != "json":  # OpenAI's rule
        raise APIError(400, "include[]=logprobs works with response_format json only.", param="include", code="unsupported_value")
    stream = _flag(_text(form, "stream"), "stream")
    if stream and logprobs:
        raise APIError(400, "include[]=logprobs is not available with stream=true here.", param="include", code="unsupported_value")
    if stream and response_format not in ("json", "text", "diarized_json"):
        raise APIError(400, f"stream=true works with response_format json, text or diarized_json, not {response_format}.", param="stream", code="unsupported_value")
    diarize = response_format == "diarized_json"
    if diarize and task != "transcribe":
        raise APIError(400, "response_format diarized_json is for transcriptions, not translations.", param="response_format", code="unsupported_value")
    if diarize and prompt:  # as OpenAI's diarizing model
        raise APIError(400, "prompt is not supported with response_format diarized_json.", param="prompt", code="unsupported_value")
    known = await diarized.known_speakers(form) if diarize else None
    if not diarize and (form.getlist("known_speaker_names[]") or form.getlist("known_speaker_references[]")):
        raise APIError(400, "known_speaker_names[] needs response_format diarized_json.", param="known_speaker_names", code="unsupported_value")
    try:
        check_task(ctx.engine.info, language, task)
    except UnsupportedRequest as exc:  # before the upload is decoded: the one English-only rule
        param = "model" if task == "translate" else "language"
        raise APIError(400, f"The model {exc}.", param=param, code="unsupported_value") from exc
    if stream:
        return await _stream_job(ctx, upload, language, task, prompt, temperature, known if diarize else False)

    async def work() -> Response:
        # Decoding holds the file's audio in memory: it happens inside the job slot.
        audio = await _decode_upload(ctx, upload)
        duration = len(audio) / SAMPLE_RATE
        metrics.INPUT_AUDIO_SECONDS.labels("api").inc(duration)
        try:
            result = await ctx.engine.transcribe(
                DecodeRequest(
                    audio,
                    language=language,
                    task=task,  # type: ignore[arg-type]
                    prompt=prompt,
                    temperature=temperature,
                    timestamps=response_format in ("verbose_json", "srt", "vtt", "diarized_json"),
                    word_timestamps="word" in granularity or diarize,
                    logprobs=logprobs,
                )
            )
        except Exception as exc:  # noqa: BLE001 -- every engine failure becomes a clear 4xx/5xx
            raise from_engine_error(exc) from exc
        if diarize:
            segments = await diarized.label(audio, result, known)
            return JSONResponse(diarized.body(segments, (result.text or "").strip(), duration))
        return _render(ctx, result, response_format, task, duration, granularity)

    try:
        return await ctx.jobs.run_until_disconnect(work, request.receive, source="api")
    except JobsFull as exc:
        raise _busy(exc) from None
    except ClientGone:
        return Response(status_code=499)  # nobody is there to read it


async def _stream_job(
    ctx: OpenAIContext, upload: UploadFile, language: str | None, task: str, prompt: str | None, temperature: float,
    known: Any = False,
) -> Response:
    """stream=true: the job slot is held until the last event is sent (or the client goes).
    `known` is False unless speakers are asked for (diarized_json): then None or the known speakers."""
    stack = contextlib.AsyncExitStack()
    try:
        await stack.enter_async_context(ctx.jobs.slot("api"))
    except JobsFull as exc:
        raise _busy(exc) from None
    released = False

    async def release() -> None:
        nonlocal released
        if not released:
            released = True
            await stack.aclose()

    try:
        audio = await _decode_upload(ctx, upload)
        duration = len(audio) / SAMPLE_RATE
        metrics.INPUT_AUDIO_SECONDS.labels("api").inc(duration)
        if known is not False:
            return await _stream_diarized(ctx, audio, language, temperature, duration, known, release)
        return await _stream(ctx, audio, language, task, prompt, temperature, duration, release)
    except BaseException:
        await release()
        raise


async def _decode_upload(ctx: OpenAIContext, upload: UploadFile) -> Any:
    # The upload stays in its spooled temp file (on disk past 1 MB): decoded from there,
    # in a worker thread, never read into memory whole.
    size = upload.size
    if size is None:
        size = await asyncio.to_thread(_file_size, upload.file)
    if size > ctx.max_upload:
        raise _too_large(ctx.max_upload)
    if not size:
        raise APIError(400, f"The uploaded file '{upload.filename or 'file'}' is empty.", param="file", code="invalid_audio")
    try:
        upload.file.seek(0)
        return await asyncio.to_thread(load_audio, upload.file, max_seconds=ctx.settings.max_audio_seconds)
    except AudioError as exc:
        name = upload.filename or "the file"
        message = str(exc).replace("the audio data", f"'{name}'")
        raise APIError(400, f"Invalid file: {message}", param="file", code="invalid_audio") from exc
    except Exception as exc:  # noqa: BLE001 -- a decoder surprise is still the upload's fault, not a 500
        log.warning("could not decode upload %r: %r", upload.filename, exc)
        raise APIError(
            400, f"Invalid file: '{upload.filename or 'file'}' could not be decoded as audio.", param="file", code="invalid_audio"
        ) from exc


async def _stream(
    ctx: OpenAIContext,
    audio: Any, language: str | None, task: str, prompt: str | None, temperature: float, duration: float,
    release: Any,
) -> Response:
    request = DecodeRequest(audio, language=language, task=task, prompt=prompt, temperature=temperature)  # type: ignore[arg-type]
    deltas = ctx.engine.transcribe_stream(request)
    # The first delta (or failure) is awaited before answering, so an engine that is
    # down gets a proper error status instead of a broken event stream.
    iterator = deltas.__aiter__()
    try:
        first: str | None = await iterator.__anext__()
    except StopAsyncIteration:
        first = None
    except Exception as exc:  # noqa: BLE001
        raise from_engine_error(exc) from exc

    async def events() -> AsyncIterator[bytes]:
        parts: list[str] = []
        try:
            if first is not None:
                parts.append(first)
                yield _sse({"type": "transcript.text.delta", "delta": first})
            async for delta in iterator:
                parts.append(delta)
                yield _sse({"type": "transcript.text.delta", "delta": delta})
        except Exception as exc:  # noqa: BLE001
            err = from_engine_error(exc)
            yield _sse(err.body())
            return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # noqa: BLE001
                    pass
            await release()
        text = "".join(parts).strip()
        yield _sse({"type": "transcript.text.done", "text": text, "usage": {"type": "duration", "seconds": math.ceil(duration)}})

    # The background task frees the job slot too when the body never started (client gone).
    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}, background=BackgroundTask(release)
    )


async def _stream_diarized(
    ctx: OpenAIContext, audio: Any, language: str | None, temperature: float, duration: float, known: Any, release: Any
) -> Response:
    """diarized_json with stream=true: speakers need the whole file, so the transcript is
    made first (a failure is still a proper error status); then, as OpenAI's stream, each
    segment's text as a delta and its `transcript.text.segment`, then `transcript.text.done`."""
    request = DecodeRequest(audio, language=language, temperature=temperature, timestamps=True, word_timestamps=True)
    try:
        result = await ctx.engine.transcribe(request)
    except Exception as exc:  # noqa: BLE001
        raise from_engine_error(exc) from exc
    segments = diarized.spoken(await diarized.label(audio, result, known))

    async def events() -> AsyncIterator[bytes]:
        try:
            for i, segment in enumerate(segments):
                event = diarized.segment_json(i, segment)
                yield _sse({"type": "transcript.text.delta", "delta": event["text"] if i == 0 else " " + event["text"], "segment_id": event["id"]})
                yield _sse(event)
        finally:
            await release()
        text = (result.text or "").strip()
        yield _sse({"type": "transcript.text.done", "text": text, "usage": {"type": "duration", "seconds": math.ceil(duration)}})

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}, background=BackgroundTask(release)
    )



def _render(
    ctx: OpenAIContext,
    result: Transcription,
    response_format: str,
    task: str,
    duration: float,
    granularity: frozenset[str] | set[str] = frozenset({"segment"}),
) -> Response:
    text = (result.text or "").strip()
    if response_format == "text":
        return PlainTextResponse(text + "\n" if text else "")
    if response_format == "srt":
        return PlainTextResponse(to_srt(result.segments))
    if response_format == "vtt":
        return PlainTextResponse(to_vtt(result.segments), media_type="text/vtt")
    usage = {"type": "duration", "seconds": math.ceil(duration)}
    if response_format == "json":
        extra = {"logprobs": [token_json(t) for t in result.logprobs]} if result.logprobs else {}
        return JSONResponse({"text": text, **extra, "usage": usage})
    segments = []
    for i, s in enumerate(x for x in result.segments if x.text.strip()):
        segments.append(
            {
                "id": i,
                "seek": int(s.start * 100),
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "text": " " + s.text.strip(),
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": result.avg_logprob if result.avg_logprob is not None else 0.0,
                "compression_ratio": result.compression_ratio if result.compression_ratio is not None else 0.0,
                "no_speech_prob": result.no_speech_prob if result.no_speech_prob is not None else 0.0,
            }
        )
    language = result.language or ("en" if not ctx.engine.info.multilingual else None)
    body: dict[str, Any] = {
        "task": task,
        "language": language_name(language) if language else None,
        "duration": round(duration, 3),
        "text": text,
    }
    # As OpenAI: `segments` for the segment granularity (the default), `words` for word.
    if "segment" in granularity:
        body["segments"] = segments
    headers: dict[str, str] = {}
    if "word" in granularity:
        body["words"] = [word_json(w) for w in result.words]
        reason = getattr(ctx.engine, "words_unavailable", None)
        if text and not result.words and reason:
            # A remote endpoint gave no word times and none could be computed here:
            # say so (an empty list alone reads as "no words were spoken").
            body["warning"] = reason
            headers[WORDS_WARNING_HEADER] = reason
    body["usage"] = usage
    return JSONResponse(body, headers=headers)


# -- request parsing ---------------------------------------------------------------------


#: Set (with a `warning` field) when words were asked for and none could be timed.
WORDS_WARNING_HEADER = "X-Word-Times-Warning"


def _busy(exc: JobsFull) -> APIError:
    """429 when the queue is full; 503 while the server drains for a restart (the fault is
    not the client's rate, and a load balancer retries such a request on another replica)."""
    headers = {"Retry-After": str(exc.retry_after_s)}
    if isinstance(exc, JobsDraining):
        return APIError(503, str(exc), type="server_error", code="server_restarting", headers=headers)
    return APIError(429, str(exc), type="rate_limit_exceeded", code="server_busy", headers=headers)


def _file_size(f: Any) -> int:
    pos = f.tell()
    end = f.seek(0, 2)
    f.seek(pos)
    return end


def _too_large(limit: int) -> APIError:
    return APIError(
        413,
        f"The uploaded file is too large: the limit is {limit / (1024 * 1024):g} MB (MAX_UPLOAD_MB).",
        param="file",
        code="file_too_large",
    )


async def _read_form(request: Request, max_upload: int) -> Any:
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise APIError(
            400,
            f"Send the audio as multipart/form-data with a 'file' field (got content type {ctype or 'none'!r}).",
            param="file",
            code="invalid_content_type",
        )
    limit = max_upload + FORM_OVERHEAD_BYTES
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        await _drain(request, DRAIN_LIMIT_BYTES)
        raise _too_large(max_upload)

    received = 0
    receive = request.receive

    async def limited_receive() -> Any:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge()
        return message

    limited = Request(request.scope, limited_receive)
    try:
        return await limited.form(max_files=4, max_fields=64)
    except _TooLarge:
        await _drain(request, DRAIN_LIMIT_BYTES)
        raise _too_large(max_upload) from None
    except ClientDisconnect:  # the client went away mid-upload: nobody to answer, nothing to log
        raise APIError(400, "The upload was cut off before it ended.", param="file", code="incomplete_upload") from None
    except MultiPartException as exc:
        raise APIError(400, f"Malformed multipart body: {exc.message}", param="file", code="invalid_multipart") from exc
    except (ValueError, KeyError) as exc:
        raise APIError(400, f"Malformed multipart body: {exc}", param="file", code="invalid_multipart") from exc


async def _drain(request: Request, cap: int) -> None:
    """Read and drop what is left of the body (up to `cap`), so the client gets to read our answer."""
    seen = 0
    try:
        while seen < cap:
            message = await asyncio.wait_for(request.receive(), timeout=5.0)
            if message["type"] != "http.request":
                return
            seen += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
    except (asyncio.TimeoutError, RuntimeError, OSError):
        return


def _text(form: Any, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise APIError(400, f"'{name}' must be a text field, not a file.", param=name, code="invalid_value")
    return value


def _temperature(raw: str | None) -> float:
    if raw is None or raw.strip() == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise APIError(400, f"Invalid value for 'temperature': {raw!r} is not a number.", param="temperature", code="invalid_value") from None
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise APIError(400, f"Invalid value for 'temperature': {raw} (use 0 to 1).", param="temperature", code="invalid_value")
    return value


def _flag(raw: str | None, name: str) -> bool:
    if raw is None or raw == "":
        return False
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise APIError(400, f"Invalid value for '{name}': {raw!r} (use true or false).", param=name, code="invalid_value")


def _sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


__all__ = ["openai_router", "model_ids", "error_body"]
