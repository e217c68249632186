"""Issue 12: one key guards every way in, secrets stay out of logs and messages, jobs are bounded.

Each test runs the real app (`python app.py`) on loopback with API_KEY set, on a fake
OpenAI-compatible endpoint (ENGINE=remote: no vLLM needed, starts in seconds) whose URL
carries credentials, and tries every door as an outsider would: the /v1 API, the page,
Gradio's API routes and uploads (`gradio_client` on `/transcribe`), FastRTC's WebRTC
offer (Gradio's component server), the API docs, the realtime WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import numpy as np
import pytest
import soundfile as sf

from closed_app import remote_env, running_app
from misbehaving_server import MisbehavingServer

KEY = "sk-test-3f9a7c"
TOKEN = "hf_secret_token_81d2"
CREDENTIAL = "s3cretpass"
FAKE_TEXT = "hello from the fake endpoint"


@pytest.fixture(scope="module")
def fake():
    with MisbehavingServer(hang_s=60.0) as server:
        yield server


def _endpoint(fake: MisbehavingServer) -> str:
    return f"http://user:{CREDENTIAL}@127.0.0.1:{fake.port}/v1/private-path"


@pytest.fixture(scope="module")
def gradio_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("gradio")


@pytest.fixture(scope="module")
def app(fake, gradio_tmp):
    env = remote_env(_endpoint(fake), API_KEY=KEY, HF_TOKEN=TOKEN, MAX_JOBS="1", MAX_QUEUED="0", GRADIO_TEMP_DIR=str(gradio_tmp))
    with running_app(env) as running:
        yield running


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    """Two seconds of noise (sound, so not skipped as silence): the fake endpoint answers anyway."""
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    return str(path)


def _no_secret(text: str, *, path_ok: bool = False) -> None:
    """No key, token or credential; and unless `path_ok` (a log), not even the endpoint's path."""
    for secret in (KEY, TOKEN, CREDENTIAL) + (() if path_ok else ("private-path",)):
        assert secret not in text, f"{secret!r} leaked"


def _bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


# -- one key, every door --------------------------------------------------------------------


def test_v1_needs_the_key(app):
    assert httpx.get(app.url + "/v1/models").status_code == 401
    assert httpx.get(app.url + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(app.url + "/v1/models", headers=_bearer()).status_code == 200


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_api_docs_need_the_key(app, path):
    assert httpx.get(app.url + path).status_code == 401
    assert httpx.get(app.url + path, headers=_bearer()).status_code == 200


def test_page_shows_a_login_and_its_routes_refuse_without_it(app, clip):
    page = httpx.get(app.url + "/")
    assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
    assert httpx.get(app.url + "/config").status_code == 401
    assert httpx.get(app.url + "/gradio_api/info").status_code == 401
    with open(clip, "rb") as f:
        upload = httpx.post(app.url + "/gradio_api/upload", files={"files": ("clip.wav", f, "audio/wav")})
    assert upload.status_code == 401
    join = httpx.post(app.url + "/gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "x"})
    assert join.status_code == 401


def test_webrtc_offer_needs_the_key(app):
    """FastRTC's offer reaches the server through Gradio's component server."""
    body = {"component_id": 1, "fn_name": "offer", "session_hash": "abc", "data": {"sdp": "v=0", "type": "offer", "webrtc_id": "x"}}
    refused = httpx.post(app.url + "/gradio_api/component_server", json=body)
    assert refused.status_code == 401
    with httpx.Client(base_url=app.url) as client:
        assert client.post("/login", data={"username": "anyone", "password": KEY}).status_code == 200
        assert client.post("/gradio_api/component_server", json=body).status_code != 401


def _transcribe_args(client: object, file: object) -> list[object]:
    """The upload tab's inputs: file, language, task (and this browser's id, when the page keeps one: none here)."""
    parameters = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/transcribe"]["parameters"]
    return [file, "auto", "transcribe", *[None] * (len(parameters) - 3)]


def test_gradio_client_without_the_key_is_refused_with_it_transcribes(app, clip, fake, gradio_tmp):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AuthenticationError

    before = len(fake.seen)
    with pytest.raises(AuthenticationError):
        Client(app.url, verbose=False)  # the page's config and API need the login (config: 401)
    call = httpx.post(app.url + "/gradio_api/call/transcribe", json={"data": [None, "auto", "transcribe", None]})
    assert call.status_code == 401  # what gradio_client posts, without the login cookie
    with pytest.raises(ValueError, match="Could not login"):
        Client(app.url, auth=("anyone", "wrong-key"), verbose=False)  # Gradio's login refuses a wrong password with 400
    assert len(fake.seen) == before, "a request without the key reached the engine"
    client = Client(app.url, auth=("anyone", KEY), verbose=False)
    result = client.predict(*_transcribe_args(client, handle_file(clip)), api_name="/transcribe")
    assert FAKE_TEXT in result[0]
    # Gradio's copy of the upload is deleted once decoded (it used to stay until restart).
    assert not list(gradio_tmp.rglob("clip.wav")), list(gradio_tmp.rglob("*"))


# -- nothing secret in /health, /metrics, the page, messages and logs -----------------------


def test_health_and_metrics_are_open_and_show_the_host_only(app, fake):
    health = httpx.get(app.url + "/health")
    assert health.status_code == 200
    _no_secret(health.text)
    assert f"127.0.0.1:{fake.port}" in health.text
    metrics = httpx.get(app.url + "/metrics")
    assert metrics.status_code == 200
    _no_secret(metrics.text)


def test_page_header_shows_the_host_only(app):
    with httpx.Client(base_url=app.url) as client:
        client.post("/login", data={"username": "anyone", "password": KEY})
        config = client.get("/config")
    assert config.status_code == 200
    _no_secret(config.text)


def test_upstream_error_body_is_not_passed_through(app, fake, clip):
    fake.behave("500")
    with open(clip, "rb") as f:
        r = httpx.post(
            app.url + "/v1/audio/transcriptions", headers=_bearer(), files={"file": ("clip.wav", f)}, data={"model": "whisper-1"},
            timeout=60,
        )
    assert r.status_code >= 500
    _no_secret(r.text)
    assert "fake 500" not in r.text  # the upstream's own body stays in our log


async def test_api_key_in_the_realtime_query_stays_out_of_the_log(app):
    import websockets

    url = app.url.replace("http", "ws") + f"/v1/realtime?intent=transcription&api_key={KEY}"
    async with websockets.connect(url) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert first["type"] != "error", first
    deadline = time.monotonic() + 10
    while "/v1/realtime" not in app.log() and time.monotonic() < deadline:  # uvicorn writes it after the close
        await asyncio.sleep(0.05)
    log = app.log()
    assert "/v1/realtime" in log  # the access line is there...
    _no_secret(log, path_ok=True)  # ...without the key, the token or the endpoint's credentials


# -- bounded jobs: MAX_JOBS=1, MAX_QUEUED=0 here ---------------------------------------------


def _transcribe_async(url: str, clip: str) -> httpx.Response:
    with open(clip, "rb") as f:
        return httpx.post(
            url + "/v1/audio/transcriptions", headers=_bearer(), files={"file": ("clip.wav", f)}, data={"model": "whisper-1"},
            timeout=120,
        )


async def test_a_full_queue_answers_429_and_a_gone_client_frees_its_job(app, fake, clip):
    fake.behave("hang")  # the first job never gets an answer from the endpoint
    async with httpx.AsyncClient(base_url=app.url, timeout=120) as client:
        data = open(clip, "rb").read()

        async def post() -> httpx.Response:
            return await client.post(
                "/v1/audio/transcriptions", headers=_bearer(), files={"file": ("clip.wav", data)}, data={"model": "whisper-1"}
            )

        first = asyncio.ensure_future(post())
        for _ in range(100):  # until the job is running
            if httpx.get(app.url + "/health").json()["jobs"]["running"] == 1:
                break
            await asyncio.sleep(0.1)
        busy = await post()
        assert busy.status_code == 429
        assert int(busy.headers["Retry-After"]) >= 1
        assert busy.json()["error"]["code"] == "server_busy"
        first.cancel()  # the client goes: its connection closes
        with pytest.raises(asyncio.CancelledError):
            await first
    deadline = time.monotonic() + 20
    while httpx.get(app.url + "/health").json()["jobs"]["running"] and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    jobs = httpx.get(app.url + "/health").json()["jobs"]
    assert jobs["running"] == 0 and jobs["cancelled"] >= 1, jobs
    fake.behave("ok")
    again = _transcribe_async(app.url, clip)
    assert again.status_code == 200 and FAKE_TEXT in again.json()["text"]


def test_public_page_setting_keeps_the_page_open_and_the_api_closed(fake, clip):
    env = remote_env(_endpoint(fake), API_KEY=KEY, PUBLIC_PAGE="true")
    with running_app(env) as app:
        assert httpx.get(app.url + "/config").status_code == 200
        assert httpx.get(app.url + "/v1/models").status_code == 401
        assert httpx.get(app.url + "/docs").status_code == 401


# -- memory: a long silent file -------------------------------------------------------------


def test_an_hour_of_silence_costs_one_float32_copy(app, tmp_path):
    """Issue 12: 4 hours of digital silence raised peak memory by 4.3 GB (a float64 copy and its
    square for the split, a doubling buffer); now one 16 kHz float32 copy (230 MB per hour)."""
    path = tmp_path / "silence-1h.flac"
    with sf.SoundFile(path, "w", 16000, 1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(6):
            f.write(np.zeros(16000 * 600, dtype=np.int16))
    time.sleep(1.0)
    app.reset_peak()
    before = app.rss_mb()
    with open(path, "rb") as f:
        r = httpx.post(
            app.url + "/v1/audio/transcriptions", headers=_bearer(), files={"file": ("silence.flac", f)}, data={"model": "whisper-1"},
            timeout=600,
        )
    assert r.status_code == 200 and r.json()["text"] == ""
    rise = app.peak_rss_mb() - before
    print(f"1 h of silence: peak RSS rise {rise:.0f} MB")
    assert rise < 450, f"peak RSS rose {rise:.0f} MB for one hour of audio (float32: 230 MB)"
