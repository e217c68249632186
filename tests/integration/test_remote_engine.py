"""RemoteEngine against real servers on loopback.

- a real `vllm serve` (vLLM's OpenAI server) of the embedded multilingual base model,
  started by a fixture (about a minute on CPU) and killed at the end;
- the app's own API (on the in-process tiny.en engine);
- the app on a RemoteEngine: translation through the app's API with the multilingual model.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.datasets import TEST_DATA, require_eval_set
from evaluation import clips, read_audio, wer
from engine.base import DecodeRequest, EngineUnavailable
from engine.remote import RemoteEngine, RemoteError
from tests.integration.misbehaving_server import serve_app, vllm_server

ROOT = Path(__file__).resolve().parents[2]
MAX_WER = 0.3  # base / tiny.en on short clean clips

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_model_dir():
    from engine.models import resolve_model
    from settings import Settings

    return resolve_model("embedded:base", Path(Settings().model_cache))


@pytest.fixture(scope="module")
def vllm_url(base_model_dir):
    with vllm_server(base_model_dir, name="whisper-base") as url:
        yield url


@pytest.fixture(scope="module")
def en_clips():
    return [c for c in clips(kind="speech", lang="en", base=TEST_DATA) if 3 <= c.duration <= 12][:3]


@pytest.fixture(scope="module")
def de_clip():
    return min((c for c in clips(kind="speech", lang="de", base=require_eval_set())), key=lambda c: c.duration)


def _remote(url: str, **kw) -> RemoteEngine:
    kw.setdefault("timeout_s", 300.0)
    return RemoteEngine(url, **kw)


# -- vllm serve ----------------------------------------------------------------------------


async def test_vllm_serve_transcribe(vllm_url, en_clips):
    engine = _remote(vllm_url)  # REMOTE_MODEL unset: the engine asks /v1/models
    try:
        results = await asyncio.gather(*(engine.transcribe(DecodeRequest(read_audio(c.path))) for c in en_clips))
    finally:
        await engine.close()
    assert engine.info.model == "whisper-base"
    assert wer([c.text for c in en_clips], [r.text for r in results]) <= MAX_WER, [r.text for r in results]


async def test_vllm_serve_timestamps_language_and_wav(vllm_url, en_clips, de_clip):
    engine = _remote(vllm_url, model="whisper-base", audio_format="wav")
    try:
        clip = en_clips[0]
        result = await engine.transcribe(DecodeRequest(read_audio(clip.path), timestamps=True))
        assert result.segments and result.segments[-1].end <= clip.duration + 0.5
        assert result.language == "en"
        assert result.avg_logprob is not None
        german = await engine.transcribe(DecodeRequest(read_audio(de_clip.path), language="de"))
        assert wer([de_clip.text], [german.text]) < 0.8, german.text  # base on German: rough, but German
    finally:
        await engine.close()


async def test_vllm_serve_stream(vllm_url, en_clips):
    engine = _remote(vllm_url, model="whisper-base")
    clip = en_clips[0]
    try:
        deltas = [d async for d in engine.transcribe_stream(DecodeRequest(read_audio(clip.path), language="en"))]
    finally:
        await engine.close()
    assert len(deltas) > 1
    assert wer([clip.text], ["".join(deltas)]) <= MAX_WER


async def test_vllm_serve_translate(vllm_url, de_clip):
    engine = _remote(vllm_url, model="whisper-base")
    try:
        german = await engine.transcribe(DecodeRequest(read_audio(de_clip.path), language="de"))
        english = await engine.transcribe(DecodeRequest(read_audio(de_clip.path), language="de", task="translate"))
    finally:
        await engine.close()
    assert english.text and english.text != german.text
    words = set(english.text.lower().replace(",", " ").replace(".", " ").split())
    assert words & {"the", "to", "of", "and", "a", "in", "is", "for", "you", "on", "was", "it", "be"}, english.text


async def test_vllm_serve_errors_are_clear(vllm_url):

    wrong_prefix = _remote(vllm_url.rsplit("/v1", 1)[0] + "/api/v1", model="whisper-base", retries=0)
    wrong_model = _remote(vllm_url, model="no-such-model", retries=0)
    audio = _faint_noise()
    try:
        with pytest.raises(RemoteError, match="404.*ENDPOINT_URL"):
            await wrong_prefix.transcribe(DecodeRequest(audio))
        with pytest.raises(EngineUnavailable):
            await wrong_model.transcribe(DecodeRequest(audio))
    finally:
        await wrong_prefix.close()
        await wrong_model.close()


def test_app_on_remote_engine_translates_via_openai_client(vllm_url, de_clip):
    """The app with ENGINE=remote (vllm serve, multilingual base): translation through its API."""
    from fastapi import FastAPI

    from settings import Settings
    from web.api import include_api
    from web.sessions import StreamSlots

    engine = _remote(vllm_url, model="whisper-base")
    app = FastAPI()
    include_api(app, engine, Settings(), StreamSlots(2))
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=300)
        translation = client.audio.translations.create(model="whisper-base", file=(de_clip.path.name, de_clip.path.read_bytes()))
        assert translation.text
        words = set(translation.text.lower().replace(",", " ").replace(".", " ").split())
        assert words & {"the", "to", "of", "and", "a", "in", "is", "for", "you", "on", "was", "it", "be"}, translation.text
        verbose = client.audio.transcriptions.create(
            model="whisper-base", file=(de_clip.path.name, de_clip.path.read_bytes()), response_format="verbose_json"
        )
        assert verbose.language == "german"


def test_cli_with_remote_engine(vllm_url, en_clips):
    clip = en_clips[0]
    env = {**os.environ, "ENGINE": "remote", "ENDPOINT_URL": vllm_url, "REMOTE_MODEL": "whisper-base", "HF_TOKEN": ""}
    out = subprocess.run(
        [sys.executable, "-m", "engine", "transcribe", str(clip.path), "--language", "en"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert wer([clip.text], [out.stdout]) <= MAX_WER
    out = subprocess.run(
        [sys.executable, "-m", "engine", "transcribe", str(clip.path), "--engine", "remote", "--endpoint-url", vllm_url,
         "--remote-model", "whisper-base", "--format", "srt"],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k not in ("ENGINE", "ENDPOINT_URL")},
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert " --> " in out.stdout


# -- the app's own API -------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_api(engine):
    from fastapi import FastAPI

    from settings import Settings
    from web.api import include_api
    from web.sessions import StreamSlots

    settings = Settings()
    settings.api_key = "own-key"
    app = FastAPI()
    include_api(app, engine, settings, StreamSlots(2))
    with serve_app(app) as url:
        yield url + "/v1"


async def test_remote_engine_on_the_apps_own_api(own_api, en_clips, engine):
    remote = _remote(own_api, token="own-key")
    try:
        results = await asyncio.gather(*(remote.transcribe(DecodeRequest(read_audio(c.path))) for c in en_clips))
        deltas = [d async for d in remote.transcribe_stream(DecodeRequest(read_audio(en_clips[0].path)))]
        timed = await remote.transcribe(DecodeRequest(read_audio(en_clips[0].path), timestamps=True))
    finally:
        await remote.close()
    assert remote.info.model == engine.info.model
    assert not remote.info.multilingual  # tiny.en: translation is refused before any request
    assert wer([c.text for c in en_clips], [r.text for r in results]) <= MAX_WER
    assert "".join(deltas).strip() and wer([en_clips[0].text], ["".join(deltas)]) <= MAX_WER
    assert timed.segments and timed.language == "en"


async def test_remote_engine_on_the_apps_own_api_wrong_key(own_api):

    remote = _remote(own_api, token="wrong", model="whisper-1")
    try:
        with pytest.raises(RemoteError, match="401.*HF_TOKEN"):
            await remote.transcribe(DecodeRequest(_faint_noise()))
    finally:
        await remote.close()


async def test_remote_long_audio_is_split_here(own_api):
    """Over 30 s: split on silences locally, pieces decoded concurrently, segments in order."""
    import numpy as np

    pieces = [read_audio(c.path) for c in clips(kind="speech", lang="en", base=TEST_DATA) if 4 <= c.duration <= 10][:5]
    gap = np.zeros(8000, dtype=np.float32)
    audio = np.concatenate([x for p in pieces for x in (p, gap)])
    assert len(audio) > 30 * 16000
    remote = _remote(own_api, token="own-key", model="whisper-1")
    try:
        result = await remote.transcribe(DecodeRequest(audio, timestamps=True))
    finally:
        await remote.close()
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= len(audio) / 16000 + 0.5
    assert len(result.text.split()) > 40


def _faint_noise():
    """One second of -40 dBFS noise: sound enough to be sent (silence is answered locally)."""
    import numpy as np

    return (np.random.default_rng(0).standard_normal(16000) * 0.01).astype(np.float32)
