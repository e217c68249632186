"""An Engine wrapper that records what /metrics shows: decode latency, decodes in flight,
audio seconds transcribed, decode errors.

`metered(engine)` wraps once (wrapping a metered engine returns it as is); everything
else an engine offers (`transcribe_window`, `detect_language`, `vocab`...) passes through.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import numpy as np

from engine.base import SAMPLE_RATE, Engine, EngineInfo, Task, Transcription


class MeteredEngine:
    def __init__(self, engine: Engine) -> None:
        from web import metrics

        self.inner = engine
        self._m = metrics

    @property
    def info(self) -> EngineInfo:  # type: ignore[override]
        return self.inner.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def transcribe(self, audio: np.ndarray, **kwargs: Any) -> Transcription:
        m = self._m
        m.DECODES_IN_FLIGHT.inc()
        start = time.monotonic()
        try:
            result = await self.inner.transcribe(audio, **kwargs)
        except BaseException as exc:
            m.DECODE_ERRORS.labels(type(exc).__name__).inc()
            raise
        finally:
            m.DECODES_IN_FLIGHT.dec()
        m.DECODE_SECONDS.labels("transcribe").observe(time.monotonic() - start)
        m.AUDIO_SECONDS.labels("transcribe").inc(len(audio) / SAMPLE_RATE)
        return result

    async def transcribe_stream(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        task: Task = "transcribe",
        prompt: str | None = None,
        temperature: float = 0.0,
    ) -> AsyncIterator[str]:
        m = self._m
        m.DECODES_IN_FLIGHT.inc()
        start = time.monotonic()
        ok = False
        try:
            async for delta in self.inner.transcribe_stream(
                audio, language=language, task=task, prompt=prompt, temperature=temperature
            ):
                yield delta
            ok = True
        except GeneratorExit:
            raise
        except BaseException as exc:
            m.DECODE_ERRORS.labels(type(exc).__name__).inc()
            raise
        finally:
            m.DECODES_IN_FLIGHT.dec()
            if ok:
                m.DECODE_SECONDS.labels("stream").observe(time.monotonic() - start)
                m.AUDIO_SECONDS.labels("stream").inc(len(audio) / SAMPLE_RATE)

    async def close(self) -> None:
        await self.inner.close()


def metered(engine: Engine) -> Engine:
    if isinstance(engine, MeteredEngine):
        return engine
    return MeteredEngine(engine)  # type: ignore[return-value]
