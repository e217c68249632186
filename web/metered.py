"""An Engine wrapper that records what /metrics shows: decode latency, decodes in flight,
audio seconds transcribed, decode errors.

It lives in `web/` beside the metrics it feeds, so the engine knows nothing of servers:
`app.build_app` wraps the engine once and hands the wrapper to the page and the API.
`metered(engine)` returns an already metered engine as is; everything else an engine
offers (`transcribe_window`, `detect_language`, `vocab`...) passes through.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

from engine.base import DecodeRequest, Engine, EngineInfo, Transcription
from web import metrics


class MeteredEngine:
    def __init__(self, engine: Engine) -> None:
        self.inner = engine

    @property
    def info(self) -> EngineInfo:
        return self.inner.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def transcribe(self, request: DecodeRequest) -> Transcription:
        metrics.DECODES_IN_FLIGHT.inc()
        start = time.monotonic()
        try:
            result = await self.inner.transcribe(request)
        except BaseException as exc:
            metrics.DECODE_ERRORS.labels(type(exc).__name__).inc()
            raise
        finally:
            metrics.DECODES_IN_FLIGHT.dec()
        metrics.DECODE_SECONDS.labels("transcribe").observe(time.monotonic() - start)
        metrics.AUDIO_SECONDS.labels("transcribe").inc(request.duration)
        return result

    async def transcribe_stream(self, request: DecodeRequest) -> AsyncIterator[str]:
        metrics.DECODES_IN_FLIGHT.inc()
        start = time.monotonic()
        ok = False
        try:
            async for delta in self.inner.transcribe_stream(request):
                yield delta
            ok = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            metrics.DECODE_ERRORS.labels(type(exc).__name__).inc()
            raise
        finally:
            metrics.DECODES_IN_FLIGHT.dec()
            if ok:
                metrics.DECODE_SECONDS.labels("stream").observe(time.monotonic() - start)
                metrics.AUDIO_SECONDS.labels("stream").inc(request.duration)

    async def close(self) -> None:
        await self.inner.close()


def metered(engine: Engine) -> Engine:
    """The engine wrapped once for /metrics (an already metered engine is returned as is)."""
    if isinstance(engine, MeteredEngine):
        return engine
    return MeteredEngine(engine)
