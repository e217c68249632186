"""The fake engines of the tests, in one place. Each stands in for the real vLLM engine
where a test needs speed, exact control or a scripted failure; each takes a `DecodeRequest`
like the real ones. The real engine is exercised in tests/integration.

- `FakeEngine`: text grows with the audio (3 words a second); delays, failures, fixed text.
- `WordsEngine`: "hears" the first words of a reference, in proportion to the audio it gets.
- `PageFakeEngine`: says "word" twice a second; the e2e server's `E2E_FAKE_ENGINE=1`.
"""

from __future__ import annotations

import asyncio

from engine.base import EngineUnavailable, Transcription
from streaming.session import Session

WORDS = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen".split()


class FakeEngine:
    """Text grows with the audio (3 words a second), like a real decoder's would."""

    def __init__(self, *, delay: float = 0.0, fail: int = 0, text: str | None = None, logprob: float = -0.2) -> None:
        self.delay = delay
        self.fail = fail
        self.text = text
        self.logprob = logprob
        self.calls: list[dict] = []
        self.active = 0
        self.max_active = 0
        self.cancelled = 0
        self.session: Session | None = None

    async def transcribe(self, request):
        dur = request.duration
        self.calls.append(
            {"dur": dur, "prompt": request.prompt, "received_s": self.session.audio_s if self.session else None}
        )
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.delay)
            if self.fail > 0:
                self.fail -= 1
                raise EngineUnavailable("engine down")
            text = self.text if self.text is not None else " ".join(WORDS[: max(1, int(dur * 3))])
            return Transcription(text, "en", dur, avg_logprob=self.logprob)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1


class WordsEngine:
    """Returns the first words of `text`, as many as the audio's share of `duration`."""

    def __init__(self, text: str, duration: float, multilingual: bool = False) -> None:
        from engine.base import EngineInfo

        self.words = text.split()
        self.duration = duration
        self.calls: list[dict] = []
        self.info = EngineInfo(model="words", engine="fake", device="cpu", multilingual=multilingual)

    async def transcribe(self, request):
        from engine.base import Transcription

        self.calls.append({"language": request.language, "task": request.task})
        await asyncio.sleep(0.01)
        seconds = request.duration
        n = max(1, min(len(self.words), round(len(self.words) * seconds / self.duration)))
        return Transcription(text=" ".join(self.words[:n]), language="en", duration=seconds, avg_logprob=-0.1, no_speech_prob=0.01, compression_ratio=1.2)

    async def close(self) -> None:
        pass


class PageFakeEngine:
    """Says "word" twice per second of audio: enough to exercise the page."""

    def __init__(self) -> None:
        from engine.base import EngineInfo

        self.info = EngineInfo(model="fake", engine="fake", device="cpu", multilingual=True)

    async def transcribe(self, request):
        from engine.base import Transcription

        await asyncio.sleep(0.05)
        n = max(1, int(request.duration * 2))
        return Transcription(text=" ".join(["word"] * n), language="en", duration=request.duration)

    async def close(self) -> None:
        pass
