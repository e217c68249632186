"""The remote engine's answers to issue 12, each against a real misbehaving server on loopback.

- a 3xx is an error naming where it points, not a transcript (and is not followed);
- an upstream 400 for the request itself (a bad language) is our 400 with its reason,
  not a 503 that SDKs would retry;
- one `verbose_json` refusal changes that request only; the endpoint is taken not to
  offer it only after several refusals in a row;
- a live final waiting for the endpoint goes before the waiting pieces of a long file;
- the endpoint's credentials (in ENDPOINT_URL or the token) appear in no message, no
  engine info and no /health answer.
No vLLM here: these run in seconds.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

import numpy as np
import pytest

from engine.base import PRIORITY_BACKGROUND, DecodeRequest, UnsupportedRequest
from engine.remote import RemoteEngine, RemoteError, UpstreamRejected
from engine.remote.engine import VERBOSE_REFUSALS_TO_GIVE_UP
from tests.integration.misbehaving_server import MisbehavingServer, free_port, serve_app

SR = 16000
AUDIO = (0.1 * np.sin(np.arange(SR) * 2 * np.pi * 220 / SR)).astype(np.float32)


@pytest.fixture(scope="module")
def server():
    with MisbehavingServer() as s:
        yield s


def make_engine(url: str, **kw) -> RemoteEngine:
    kw.setdefault("retries", 2)
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("model", "fake-whisper")
    return RemoteEngine(url, **kw)


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_redirect_is_an_error_naming_where_it_points(server, stream):
    server.behave("redirect")
    engine = make_engine(server.url)
    try:
        with pytest.raises(RemoteError, match="redirect") as info:
            if stream:
                [d async for d in engine.transcribe_stream(DecodeRequest(AUDIO))]
            else:
                await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    message = str(info.value)
    assert "307" in message and "https://elsewhere.example:8443" in message and "ENDPOINT_URL" in message
    assert "Moved" not in message  # the redirect page is not a transcript
    assert info.value.status == 307
    assert len(server.seen) == 1  # neither followed nor retried


async def test_a_redirect_on_the_same_host_says_so(server):
    server.behave("moved")
    engine = make_engine(server.url)
    try:
        with pytest.raises(RemoteError, match="301.*another path on the same host"):
            await engine.transcribe(DecodeRequest(AUDIO))
    finally:
        await engine.close()
    assert [s.path for s in server.seen] == ["/v1/audio/transcriptions"]


# -- the request itself refused --------------------------------------------------------------


async def test_an_upstream_400_is_a_rejected_request_with_its_reason(server):
    server.behave("400")
    engine = make_engine(server.url)
    try:
        with pytest.raises(UpstreamRejected, match="rejected the request.*fake 400") as info:
            await engine.transcribe(DecodeRequest(AUDIO, language="xx"))
    finally:
        await engine.close()
    assert isinstance(info.value, UnsupportedRequest) and isinstance(info.value, RemoteError)
    assert len(server.seen) == 1  # not retried: the same request would be refused again


def test_app_answers_400_with_the_upstream_reason_not_503(server):
    """Through the app's API: the endpoint's 400 (e.g. an unknown language) reaches the caller as a 400."""
    import openai

    app, _ = _app_on(server.url)
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        server.behave("400")
        with pytest.raises(openai.BadRequestError) as info:
            client.audio.transcriptions.create(model="fake-whisper", file=("a.wav", _wav_bytes(AUDIO)), language="de")
        assert info.value.status_code == 400
        assert "fake 400" in info.value.body["message"]
        assert len(server.seen) == 1


# -- verbose_json fallback, per request -------------------------------------------------------


async def test_one_verbose_json_refusal_changes_that_request_only(server):
    server.behave("400", "ok", "ok")
    engine = make_engine(server.url)
    try:
        first = await engine.transcribe(DecodeRequest(AUDIO, timestamps=True))
        second = await engine.transcribe(DecodeRequest(AUDIO, timestamps=True))
    finally:
        await engine.close()
    formats = [s.field("response_format") for s in server.seen]
    assert formats == ["verbose_json", "json", "verbose_json"]
    assert first.text == server.text and first.segments and first.avg_logprob is None
    assert second.avg_logprob == pytest.approx(-0.2)  # segments and signals again


async def test_verbose_json_given_up_only_after_refusals_in_a_row(server):
    """An endpoint without verbose_json: a few refusals, then plain json without asking."""
    server.behave(*["no_verbose"] * (2 * VERBOSE_REFUSALS_TO_GIVE_UP + 2))
    engine = make_engine(server.url)
    try:
        for _ in range(VERBOSE_REFUSALS_TO_GIVE_UP + 1):
            result = await engine.transcribe(DecodeRequest(AUDIO, timestamps=True))
            assert result.text == server.text
        language = await engine.detect_language(AUDIO)
    finally:
        await engine.close()
    formats = [s.field("response_format") for s in server.seen]
    assert formats == ["verbose_json", "json"] * VERBOSE_REFUSALS_TO_GIVE_UP + ["json"]
    assert language is None  # no verbose_json, no language report: no request spent on it


async def test_a_bad_request_is_not_taken_for_a_missing_verbose_json(server):
    server.behave("400", "400", "ok")
    engine = make_engine(server.url)
    try:
        with pytest.raises(UpstreamRejected):
            await engine.transcribe(DecodeRequest(AUDIO, language="xx", timestamps=True))
        await engine.transcribe(DecodeRequest(AUDIO, timestamps=True))
    finally:
        await engine.close()
    assert [s.field("response_format") for s in server.seen] == ["verbose_json", "json", "verbose_json"]
    assert engine.verbose_json_offered


# -- priority -------------------------------------------------------------------------------


def _long_audio(pieces: int = 4, piece_s: float = 20.0) -> np.ndarray:
    """Tone bursts with a second of silence between: split into `pieces` pieces locally."""
    burst = (0.1 * np.sin(np.arange(int(piece_s * SR)) * 2 * np.pi * 220 / SR)).astype(np.float32)
    gap = np.zeros(SR, np.float32)
    return np.concatenate([x for _ in range(pieces) for x in (burst, gap)])


async def test_a_live_final_goes_before_the_waiting_pieces_of_a_long_file(server):
    """One request in flight at a time: the final that arrives while a 4-piece upload waits
    is sent right after the piece in flight, not behind the other three."""
    server.behave(*["slow"] * 5)
    engine = make_engine(server.url, concurrency=1)
    try:
        upload = asyncio.ensure_future(engine.transcribe(DecodeRequest(_long_audio(), language="en")))
        while engine.limiter.waiting < 3:  # the first piece is at the endpoint, the others wait
            await asyncio.sleep(0.01)
        final = await engine.transcribe(DecodeRequest(AUDIO, language="en", prompt="the final"))
        result = await upload
    finally:
        await engine.close()
    prompts = [s.field("prompt") for s in server.seen]
    assert prompts == [None, "the final", None, None, None]
    assert final.text == server.text and len(result.segments) == 4


async def test_pieces_of_a_long_file_carry_the_background_priority(server):
    """A long file asked at the default priority still queues behind live finals."""
    server.behave(*["slow"] * 4)
    engine = make_engine(server.url, concurrency=1)
    try:
        upload = asyncio.ensure_future(engine.transcribe(DecodeRequest(_long_audio(3), language="en")))
        while engine.limiter.waiting < 2:
            await asyncio.sleep(0.01)
        partial = asyncio.ensure_future(
            engine.transcribe(DecodeRequest(AUDIO, language="en", prompt="partial", priority=PRIORITY_BACKGROUND))
        )
        final = asyncio.ensure_future(engine.transcribe(DecodeRequest(AUDIO, language="en", prompt="final")))
        await asyncio.gather(upload, partial, final)
    finally:
        await engine.close()
    prompts = [s.field("prompt") for s in server.seen]
    assert prompts[:2] == [None, "final"]  # the final first; the rest in arrival order
    assert prompts[2:] == [None, None, "partial"]


# -- credentials ------------------------------------------------------------------------------

SECRET_PASSWORD = "pw-s3cret-in-url"
SECRET_TOKEN = "hf_t0ken_never_shown"


def _secrets_absent(text: str) -> None:
    assert SECRET_PASSWORD not in text and SECRET_TOKEN not in text, text


async def test_endpoint_credentials_never_shown(server):
    url = f"http://user:{SECRET_PASSWORD}@127.0.0.1:{server.port}/v1"
    engine = make_engine(url, token=SECRET_TOKEN, retries=0)
    shown: list[str] = [repr(asdict(engine.info))]
    try:
        for behaviour in ("401_echo", "403", "404", "500", "redirect"):
            server.behave(behaviour)
            with pytest.raises(RemoteError) as info:
                await engine.transcribe(DecodeRequest(AUDIO))
            shown.append(str(info.value))
        assert f"http://127.0.0.1:{server.port}" in shown[1]  # the host is named
        assert "***" in shown[1]  # the server's echo of the token, cut out
    finally:
        await engine.close()
    refused = make_engine(f"http://user:{SECRET_PASSWORD}@127.0.0.1:{free_port()}/v1?api_key={SECRET_TOKEN}", retries=0)
    try:
        with pytest.raises(RemoteError, match="no answer") as info:
            await refused.transcribe(DecodeRequest(AUDIO))
        shown += [str(info.value), repr(asdict(refused.info))]
    finally:
        await refused.close()
    for text in shown:
        _secrets_absent(text)


def test_health_shows_the_endpoint_host_only(server):
    import httpx

    app, _ = _app_on(f"http://user:{SECRET_PASSWORD}@127.0.0.1:{server.port}/v1", token=SECRET_TOKEN)
    with serve_app(app) as url:
        health = httpx.get(url + "/health").text
    _secrets_absent(health)
    assert f"127.0.0.1:{server.port}" in health


# -- helpers ----------------------------------------------------------------------------------


def _app_on(engine_url: str, **engine_kw):
    from fastapi import FastAPI

    from settings import Settings
    from web.api import include_api
    from web.sessions import StreamSlots

    engine = make_engine(engine_url, retries=0, **engine_kw)
    app = FastAPI()
    include_api(app, engine, Settings(), StreamSlots(2))
    return app, engine


def _wav_bytes(audio: np.ndarray) -> bytes:
    import io

    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, audio, SR, format="WAV")
    return buf.getvalue()
