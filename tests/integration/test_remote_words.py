"""Word times through the remote engine, against a local OpenAI-compatible server:
passed through where the endpoint gives them, timed here on local weights where it
gives none (the real aligner on the embedded tiny.en), else empty with a warning in
the API's answer, never invented."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engine.base import DecodeRequest
from engine.remote import RemoteEngine
from evaluation import clips, read_audio
from tests.datasets import TEST_DATA
from tests.integration.misbehaving_server import MisbehavingServer, serve_app


def _clip():
    return next(c for c in clips(kind="speech", lang="en", base=TEST_DATA) if 2 <= c.duration <= 5)


async def test_endpoint_words_are_passed_through() -> None:
    with MisbehavingServer(words=True, text="three small words") as server:
        engine = RemoteEngine(server.url, model="fake-whisper")
        try:
            audio = np.zeros(16_000 * 2, np.float32)
            audio[8000:24000] = 0.1 * np.sin(np.arange(16000) * 0.05)
            result = await engine.transcribe(DecodeRequest(audio, language="en", word_timestamps=True))
            plain = await engine.transcribe(DecodeRequest(audio, language="en"))
        finally:
            await engine.close()
        asked, not_asked = server.seen[-2], server.seen[-1]
    assert asked.field("response_format") == "verbose_json" and b"word" in asked.body
    assert not_asked.field("response_format") == "json"
    assert [w.word for w in result.words] == [" three", " small", " words"]
    assert [(w.start, w.end) for w in result.words] == [(0.0, 0.25), (0.3, 0.55), (0.6, 0.85)]
    assert all(math.isnan(w.probability) for w in result.words)  # OpenAI's words have none
    assert plain.words == [] and engine.words_unavailable is None


async def test_words_timed_here_on_local_weights(engine) -> None:
    """vLLM's server returns no words: REMOTE_ALIGN_MODEL's weights time the endpoint's text."""
    clip = _clip()
    audio = np.concatenate([np.zeros(16_000, np.float32), read_audio(clip.path), np.zeros(8000, np.float32)])
    with MisbehavingServer(words=False, text=clip.text) as server:
        remote = RemoteEngine(server.url, model="fake-whisper", align_model=str(engine._model_dir))
        try:
            result = await remote.transcribe(DecodeRequest(audio, language="en", word_timestamps=True))
        finally:
            await remote.close()
    assert [w.word.strip() for w in result.words] == clip.text.split()
    times = [t for w in result.words for t in (w.start, w.end)]
    assert times == sorted(times) and 0.9 <= times[0] and times[-1] <= len(audio) / 16_000
    assert all(0.0 <= w.probability <= 1.0 for w in result.words)
    assert remote.words_unavailable is None


def test_no_words_and_no_weights_says_so_in_the_api_answer(tmp_path: Path) -> None:
    """The app on a remote engine that gives no words and has no local weights: `words`
    is empty and the answer (field and header) says why."""
    import openai
    from fastapi import FastAPI

    from settings import Settings
    from web.api import include_api
    from web.openai_api import WORDS_WARNING_HEADER
    from web.sessions import StreamSlots

    clip = _clip()
    with MisbehavingServer(words=False, text=clip.text) as server:
        remote = RemoteEngine(server.url, model="fake-whisper", align_model=str(tmp_path / "absent"))
        app = FastAPI()
        include_api(app, remote, Settings(), StreamSlots(2))
        with serve_app(app) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="unused")
            with open(clip.path, "rb") as f:
                raw = client.audio.transcriptions.with_raw_response.create(
                    model="fake-whisper", file=f, response_format="verbose_json", timestamp_granularities=["word"]
                )
    body = raw.parse()
    assert body.text.startswith(clip.text) and body.words == []
    assert "word times unavailable" in body.model_extra["warning"]
    assert raw.headers[WORDS_WARNING_HEADER] == body.model_extra["warning"]
