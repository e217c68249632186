"""RemoteEngine against a real local HTTP server that misbehaves on purpose.

401/403/404/413 give clear errors at once; 429, 5xx, hangs and dropped connections are
retried; nothing is lost and concurrent requests (other sessions) are not held up by one
bad request. No vLLM here: these run in seconds.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engine.base import AudioError, DecodeRequest, EngineUnavailable
from engine.remote import RemoteEngine, RemoteError
from tests.integration.misbehaving_server import MisbehavingServer, free_port, serve_app

AUDIO = (0.1 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32)


@pytest.fixture(scope="module")
def server():
    with MisbehavingServer() as s:
        yield s


def make_engine(url: str, **kw) -> RemoteEngine:
    kw.setdefault("retries", 3)
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("model", "fake-whisper")
    return RemoteEngine(url, **kw)


async def test_ok_sends_token_model_and_flac(server):
    server.behave("ok")
    engine = make_engine(server.url, token="hf_secret")
    try:
        result = await engine.transcribe(DecodeRequest(AUDIO, language="en", prompt="Names: Ada"))
    finally:
        await engine.close()
    assert result.text == server.text
    assert result.duration == pytest.approx(1.0)
    seen = server.seen[0]
    assert seen.path == "/v1/audio/transcriptions"
    assert seen.headers["authorization"] == "Bearer hf_secret"
    assert seen.field("model") == "fake-whisper"
    assert seen.field("language") == "en"
    assert seen.field("prompt") == "Names: Ada"
    assert b"fLaC" in seen.body


async def test_silence_is_answered_locally(server):
    """Whisper invents "you" for silence; a silent clip costs no request (and no hallucination)."""
    server.behave("ok")
    engine = make_engine(server.url)
    try:
        result = await engine.transcribe(DecodeRequest(np.zeros(16000, np.float32), language="en"))
    finally:
        await engine.close()
    assert result.text == "" and result.duration == pytest.approx(1.0)
    assert server.seen == []


async def test_connections_are_reused(server):
    server.behave("ok", "ok", "ok")
    engine = make_engine(server.url)
    try:
        for _ in range(3):
            await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    assert len({seen.client_port for seen in server.seen}) == 1  # one keep-alive connection


async def test_wav_upload_and_hf_path_prefix(server):
    server.behave("ok")
    # A Hugging Face Inference Endpoint URL: the /api/v1 prefix is kept; a full route is trimmed.
    engine = make_engine(f"http://127.0.0.1:{server.port}/api/v1/audio/transcriptions", audio_format="wav")
    try:
        result = await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    assert result.text == server.text
    assert server.seen[0].path == "/api/v1/audio/transcriptions"
    assert b"RIFF" in server.seen[0].body and b"WAVE" in server.seen[0].body


async def test_model_asked_from_endpoint_when_unset(server):
    server.behave("ok")
    engine = RemoteEngine(server.url)
    try:
        await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    assert server.seen[0].field("model") == "fake-whisper"
    assert engine.info.model == "fake-whisper"


async def test_verbose_json_segments_and_signals(server):
    server.behave("ok")
    engine = make_engine(server.url)
    try:
        result = await engine.transcribe(DecodeRequest(AUDIO, timestamps=True))
    finally:
        await engine.close()
    assert server.seen[0].field("response_format") == "verbose_json"
    assert result.language == "en"
    assert result.segments and result.segments[0].text == server.text
    assert result.avg_logprob == pytest.approx(-0.2)


@pytest.mark.parametrize(
    "status, words",
    [
        ("401", ["401", "HF_TOKEN"]),
        ("403", ["403", "permission"]),
        ("404", ["404", "ENDPOINT_URL", "/api/v1"]),
    ],
)
async def test_client_errors_are_clear_and_not_retried(server, status, words):
    server.behave(status)
    engine = make_engine(server.url)
    try:
        with pytest.raises(EngineUnavailable) as info:
            await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    for word in words:
        assert word in str(info.value)
    assert len(server.seen) == 1


async def test_413_is_an_audio_error(server):
    server.behave("413")
    engine = make_engine(server.url)
    try:
        with pytest.raises(AudioError, match="413"):
            await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    assert len(server.seen) == 1


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "504", "hang", "close", "reset"])
async def test_transient_faults_are_retried(server, fault):
    server.behave(fault, "ok")
    engine = make_engine(server.url, timeout_s=1.0)
    try:
        result = await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    assert result.text == server.text
    assert len(server.seen) == 2


async def test_gives_up_after_retries_with_the_last_reason(server):
    server.behave("500", "500", "500")
    engine = make_engine(server.url, retries=2)
    try:
        with pytest.raises(RemoteError, match="500"):
            await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    assert len(server.seen) == 3


async def test_unreadable_answer(server):
    server.behave("garbage")
    engine = make_engine(server.url)
    try:
        with pytest.raises(RemoteError, match="unreadable"):
            await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()


async def test_connection_refused():
    engine = make_engine(f"http://127.0.0.1:{free_port()}/v1", retries=1)
    try:
        with pytest.raises(RemoteError, match="no answer"):
            await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()


async def test_stream_retries_before_first_delta(server):
    server.behave("503", "ok")
    engine = make_engine(server.url)
    try:
        deltas = [d async for d in engine.transcribe_stream(DecodeRequest(AUDIO))]
    finally:
        await engine.close()
    assert "".join(deltas) == server.text
    assert len(deltas) == 2
    assert server.seen[-1].field("stream") == "true"


async def test_stream_cut_after_first_delta_is_a_clear_error(server):
    """Deltas already handed on cannot be taken back: no silent retry, a clear error instead."""
    server.behave("stream_cut")
    engine = make_engine(server.url)
    got: list[str] = []
    try:
        with pytest.raises(RemoteError, match="midway"):
            async for delta in engine.transcribe_stream(DecodeRequest(AUDIO)):
                got.append(delta)
    finally:
        await engine.close()
    assert got == ["hello"]
    assert len(server.seen) == 1


def test_app_stream_reports_a_mid_stream_failure_as_an_error_event(server):
    """The app's own SSE on a remote engine whose stream breaks: an `error` event, not a hang."""
    import openai

    app, engine = _app_on(server.url)
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        server.behave("stream_cut")
        stream = client.audio.transcriptions.create(model="fake-whisper", file=("a.wav", _wav_bytes(AUDIO)), stream=True)
        deltas = []
        with pytest.raises(openai.APIError, match="midway"):
            for event in stream:
                deltas.append(event.delta)
        assert deltas == ["hello"]


async def test_one_hung_request_does_not_hold_up_the_others(server):
    """Sessions share the engine: a request that hangs is retried, the others finish."""
    server.behave("hang", "ok", "ok", "ok", "ok")
    engine = make_engine(server.url, timeout_s=1.5)
    try:
        results = await asyncio.gather(*(engine.transcribe(DecodeRequest(AUDIO)) for _ in range(4)))
    finally:
        await engine.close()
    assert [r.text for r in results] == [server.text] * 4
    assert len(server.seen) == 5


def test_settings_and_factory_build_a_remote_engine(server, monkeypatch):
    from engine.factory import create_engine
    from settings import Settings

    monkeypatch.setenv("ENGINE", "remote")
    monkeypatch.setenv("ENDPOINT_URL", server.url)
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setenv("REMOTE_RETRIES", "5")
    monkeypatch.setenv("REMOTE_AUDIO_FORMAT", "wav")
    engine = create_engine(Settings.from_env())
    assert isinstance(engine, RemoteEngine)
    assert engine.retries == 5 and engine.audio_format == "wav"
    assert engine.info.engine == "remote"
    assert engine.info.model == "fake-whisper"  # REMOTE_MODEL unset: asked the endpoint at start-up
    asyncio.run(engine.close())


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="ENDPOINT_URL"):
        RemoteEngine("")
    with pytest.raises(ValueError, match="http"):
        RemoteEngine("ftp://x")
    with pytest.raises(ValueError):
        RemoteEngine("http://x/v1", audio_format="mp3")
    with pytest.raises(ValueError, match="not a valid URL"):
        RemoteEngine("http://[::1/v1")
    with pytest.raises(ValueError, match="not a valid URL"):
        RemoteEngine("http://")


async def test_english_only_remote_refuses_translation_locally(server):
    server.behave("ok")
    engine = make_engine(server.url, model="whisper-tiny.en")
    try:
        with pytest.raises(ValueError, match="English-only"):
            await engine.transcribe(DecodeRequest(AUDIO, task="translate"))
    finally:
        await engine.close()
    assert server.seen == []


def _app_on(engine_url: str, **settings_kw):
    from fastapi import FastAPI

    from settings import Settings
    from web.api import include_api
    from web.sessions import StreamSlots

    settings = Settings()
    for k, v in settings_kw.items():
        setattr(settings, k, v)
    engine = make_engine(engine_url, retries=1)
    app = FastAPI()
    include_api(app, engine, settings, StreamSlots(2))
    return app, engine


def _wav_bytes(audio: np.ndarray) -> bytes:
    import io

    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, audio, 16000, format="WAV")
    return buf.getvalue()


def test_app_answers_503_not_500_when_its_remote_engine_fails(server):
    """The app on a remote engine whose endpoint refuses the token: a clear 503 for the caller."""
    import openai

    app, engine = _app_on(server.url)
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        server.behave("401")
        with pytest.raises(openai.APIStatusError) as info:
            client.audio.transcriptions.create(model="fake-whisper", file=("a.wav", _wav_bytes(AUDIO)))
        assert info.value.status_code == 503
        assert "401" in info.value.body["message"] and "HF_TOKEN" in info.value.body["message"]
        server.behave("500", "500", "500")
        with pytest.raises(openai.APIStatusError) as info:
            client.audio.transcriptions.create(model="fake-whisper", file=("a.wav", _wav_bytes(AUDIO)))
        assert info.value.status_code == 503
        server.behave("500", "ok")
        text = client.audio.transcriptions.create(model="fake-whisper", file=("a.wav", _wav_bytes(AUDIO))).text
        assert text == server.text


# -- live sessions on a remote engine whose endpoint misbehaves ---------------------------


def _two_utterances() -> np.ndarray:
    from evaluation import read_audio
    from tests.datasets import TEST_DATA

    def clip(name: str) -> np.ndarray:
        return read_audio(TEST_DATA / "clips" / f"{name}.flac")

    gap = np.zeros(int(1.5 * 16000), np.float32)
    return np.concatenate(
        [gap[:8000], clip("cmu_arctic__cmu_arctic_us_aew_a0001"), gap, clip("cmu_arctic__slt_arctic_a0009"), gap]
    )


async def _run_session(engine: RemoteEngine, audio: np.ndarray) -> list:
    from streaming.session import Session, SessionOptions

    session = Session(engine, SessionOptions(language="en"))
    events: list = []

    async def collect() -> None:
        async for ev in session.events():
            events.append(ev)

    consumer = asyncio.ensure_future(collect())
    step = 320  # 20 ms frames
    for i in range(0, len(audio), step):
        session.feed(audio[i : i + step], 16000)
        await asyncio.sleep(0.002)
    await session.finish()
    await asyncio.wait_for(consumer, 120)
    return events


async def test_sessions_lose_no_final_through_transient_faults(server):
    """Two live sessions share the engine; the endpoint hangs, drops, rate-limits and fails."""
    audio = _two_utterances()
    server.behave("hang", "500", "close", "429", "reset", "503", "502")
    engine = make_engine(server.url, timeout_s=1.5, retries=4)
    try:
        a, b = await asyncio.gather(_run_session(engine, audio), _run_session(engine, audio))
    finally:
        await engine.close()
    for events in (a, b):
        assert not [e for e in events if e.type == "error"], events
        finals = [e for e in events if e.type == "final"]
        assert len(finals) == 2, events
        assert all(f.text == server.text for f in finals)


async def test_session_reports_an_outage_and_recovers(server):
    """The endpoint is down for the first utterance: an error event, not a crash; the second is fine."""
    audio = _two_utterances()
    server.behave(*(["503"] * 40))  # long enough to outlast the first utterance's retries
    engine = make_engine(server.url, retries=1)
    try:
        from streaming.session import Session, SessionOptions

        session = Session(engine, SessionOptions(language="en"))
        events: list = []

        async def collect() -> None:
            async for ev in session.events():
                events.append(ev)

        consumer = asyncio.ensure_future(collect())
        half = len(audio) // 2
        for i in range(0, half, 320):
            session.feed(audio[i : i + 320], 16000)
            await asyncio.sleep(0.002)
        for _ in range(600):  # wait (without a timing assertion) for the outage to be reported
            if any(e.type == "error" for e in events):
                break
            await asyncio.sleep(0.05)
        server.behave()  # recovered: "ok" from now on
        for i in range(half, len(audio), 320):
            session.feed(audio[i : i + 320], 16000)
            await asyncio.sleep(0.002)
        await session.finish()
        await asyncio.wait_for(consumer, 120)
    finally:
        await engine.close()
    errors = [e for e in events if e.type == "error"]
    assert errors and "503" in errors[0].message
    finals = [e for e in events if e.type == "final"]
    assert finals and finals[-1].text == server.text
