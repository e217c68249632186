"""The app's OpenAI-compatible API, driven by the official `openai` client on loopback.

The app runs on the real in-process engine (embedded tiny.en, English-only), served by
uvicorn on 127.0.0.1. Translation on a multilingual model is covered in
test_remote_engine.py (the app on the `vllm serve` base model).
"""

from __future__ import annotations

import io
import socket
import threading

import httpx
import numpy as np
import openai
import pytest

from evaluation import wer
from tests.integration.misbehaving_server import serve_app
from tests.metrics_text import metric_labels, metric_value

MAX_WER = 0.3  # tiny.en on short clean clips; the engine tests hold the tighter bounds
API_KEY = "test-key-123"


def _settings(**kw):
    from settings import Settings

    s = Settings()
    s.max_upload_mb = 1.0
    s.api_key = ""
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def _app(engine, **kw):
    from fastapi import FastAPI

    from web.api import include_api
    from web.metered import metered
    from web.sessions import StreamSlots

    app = FastAPI()
    include_api(app, metered(engine), _settings(**kw), StreamSlots(4))  # as app.build_app does
    return app


@pytest.fixture(scope="module")
def base_url(engine):
    with serve_app(_app(engine)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=base_url + "/v1", api_key="anything", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def clip(english_clips):
    return min((c for c in english_clips if 4 <= c.duration <= 12), key=lambda c: abs(c.duration - 8))


@pytest.fixture(scope="module")
def clip_bytes(clip):
    return clip.path.read_bytes()


def _wav(audio: np.ndarray) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, audio, 16000, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def test_models_and_health(client, base_url, engine):
    ids = [m.id for m in client.models.list().data]
    assert engine.info.model in ids and "whisper-1" in ids
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    health = httpx.get(base_url + "/health").json()
    assert health["status"] == "ok" and health["engine"]["model"] == engine.info.model


def test_plain_json(client, clip, clip_bytes, engine):
    result = client.audio.transcriptions.create(model=engine.info.model, file=(clip.path.name, clip_bytes))
    assert wer([clip.text], [result.text]) <= MAX_WER, result.text
    assert result.usage is not None and result.usage.seconds >= int(clip.duration)


def test_whisper_1_alias_and_text_format(client, clip, clip_bytes):
    text = client.audio.transcriptions.create(model="whisper-1", file=(clip.path.name, clip_bytes), response_format="text")
    assert isinstance(text, str) and text.endswith("\n")
    assert wer([clip.text], [text]) <= MAX_WER


def test_verbose_json_srt_vtt(client, clip, clip_bytes):
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=(clip.path.name, clip_bytes),
        response_format="verbose_json",
        timestamp_granularities=["segment"],
        language="en",
    )
    assert verbose.language == "english"
    assert verbose.duration == pytest.approx(clip.duration, abs=0.1)
    assert verbose.segments, verbose
    ends = [s.end for s in verbose.segments]
    assert ends == sorted(ends) and ends[-1] <= clip.duration + 0.5
    assert wer([clip.text], [verbose.text]) <= MAX_WER
    srt = client.audio.transcriptions.create(model="whisper-1", file=(clip.path.name, clip_bytes), response_format="srt")
    assert srt.startswith("1\n00:00:") and " --> " in srt
    vtt = client.audio.transcriptions.create(model="whisper-1", file=(clip.path.name, clip_bytes), response_format="vtt")
    assert vtt.startswith("WEBVTT")


def test_word_timestamps(client, clip, clip_bytes):
    """Issue 18: the official client gets `words` (word, start, end; and our probability)
    from verbose_json with word granularity; before, the server refused `word` with 400."""
    both = client.audio.transcriptions.create(
        model="whisper-1",
        file=(clip.path.name, clip_bytes),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
    )
    assert both.segments and both.words, both
    words = both.words
    assert [w.word for w in words] == [w.word.strip() for w in words] and all(w.word for w in words)
    assert wer([" ".join(w.word for w in words)], [both.text]) == 0.0
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(0.0 <= w.start <= w.end <= clip.duration + 0.05 for w in words), words
    assert all(0.0 <= getattr(w, "probability") <= 1.0 for w in words)
    # Word alone: words and no segments, as OpenAI answers.
    only = client.audio.transcriptions.create(
        model="whisper-1", file=(clip.path.name, clip_bytes), response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert only.words and not only.segments
    assert [w.word for w in only.words] == [w.word for w in words]


def test_include_logprobs(client, clip, clip_bytes):
    """Issue 18: `include[]=logprobs` on json gives each text token's log-probability, as
    OpenAI defines it; the tokens spell the text."""
    result = client.audio.transcriptions.create(
        model="whisper-1", file=(clip.path.name, clip_bytes), response_format="json", include=["logprobs"]
    )
    assert result.logprobs, result
    assert "".join(t.token for t in result.logprobs).strip() == result.text
    assert bytes(int(b) for t in result.logprobs for b in t.bytes).decode().strip() == result.text  # the SDK types them float
    assert all(t.logprob <= 0.0 for t in result.logprobs)
    assert not client.audio.transcriptions.create(model="whisper-1", file=(clip.path.name, clip_bytes)).logprobs


def test_prompt_and_temperature_are_accepted(client, clip, clip_bytes):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=(clip.path.name, clip_bytes), prompt="Printing and the arts.", temperature=0.2
    )
    assert wer([clip.text], [result.text]) <= MAX_WER


def test_streamed(client, clip, clip_bytes):
    stream = client.audio.transcriptions.create(model="whisper-1", file=(clip.path.name, clip_bytes), stream=True)
    deltas, done = [], None
    for event in stream:
        if event.type == "transcript.text.delta":
            deltas.append(event.delta)
        elif event.type == "transcript.text.done":
            done = event.text
    assert len(deltas) > 1, "expected several deltas, got one block"
    assert done is not None and done == "".join(deltas).strip()
    assert wer([clip.text], [done]) <= MAX_WER


def test_concurrent_requests(client, english_clips):
    clips = [c for c in english_clips if 2 <= c.duration <= 8][:4]
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = client.audio.transcriptions.create(model="whisper-1", file=(clips[i].path.name, clips[i].path.read_bytes())).text
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert wer([c.text for c in clips], [results[i] for i in range(len(clips))]) <= MAX_WER


def test_translation_on_english_only_model_is_a_400(client, clip_bytes):
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.translations.create(model="whisper-1", file=("a.flac", clip_bytes))
    assert "English-only" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=("a.flac", clip_bytes), language="de")
    assert info.value.body["param"] == "language"


# -- bad requests: OpenAI-style error JSON with the right 4xx, never a 500 --------------


def _assert_error(exc: openai.APIStatusError, status: int, param: str | None = None) -> None:
    assert exc.status_code == status, exc
    body = exc.body
    assert set(body) >= {"message", "type", "param", "code"}, body
    assert body["message"]
    if param is not None:
        assert body["param"] == param


@pytest.mark.parametrize(
    "name, data, status, param",
    [
        ("not_audio.wav", b"this is not audio at all" * 40, 400, "file"),
        ("empty.wav", b"", 400, "file"),
        ("random.mp3", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), 400, "file"),
        ("big.wav", b"\0" * (1024 * 1024 + 10), 413, "file"),
    ],
)
def test_bad_uploads(client, name, data, status, param):
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=(name, data))
    _assert_error(info.value, status, param)


def test_over_the_size_limit_without_content_length(base_url):
    """A chunked upload over MAX_UPLOAD_MB is cut off while it arrives: 413."""

    def body():
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--xyz--\r\n"

    r = httpx.post(
        base_url + "/v1/audio/transcriptions",
        content=body(),
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        timeout=60,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"


@pytest.mark.parametrize(
    "kwargs, status, param",
    [
        ({"response_format": "xml"}, 400, "response_format"),
        ({"temperature": 3}, 400, "temperature"),
        ({"timestamp_granularities": ["sentence"], "response_format": "verbose_json"}, 400, "timestamp_granularities"),
        ({"timestamp_granularities": ["word"], "response_format": "json"}, 400, "timestamp_granularities"),  # as OpenAI
        ({"include": ["logprobs"], "response_format": "verbose_json"}, 400, "include"),  # as OpenAI
        ({"model": "gpt-4o-transcribe"}, 404, "model"),
        ({"language": "english!"}, 400, "language"),
        # Issue 17, case 7: before, any length was tokenized on the event loop (live streams stalled).
        ({"prompt": "names " * 20_000}, 400, "prompt"),
    ],
)
def test_wrong_fields(client, clip_bytes, kwargs, status, param):
    kwargs = {"model": "whisper-1", **kwargs}
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(file=("a.flac", clip_bytes), **kwargs)
    _assert_error(info.value, status, param)


@pytest.mark.parametrize(
    "request_kwargs, param",
    [
        ({"data": {"model": "whisper-1"}, "files": {"other": ("a.wav", b"x")}}, "file"),  # no file
        ({"files": {"file": ("a.flac", b"RIFF")}}, "model"),  # no model
        ({"data": {"model": "whisper-1", "file": "not a file"}, "files": {"x": ("a", b"y")}}, "file"),
        ({"data": {"model": "whisper-1"}}, "file"),  # urlencoded, not multipart
        ({"json": {"model": "whisper-1"}}, "file"),
        ({"data": {"model": "whisper-1", "stream": "maybe"}, "files": {"file": ("a.flac", b"x")}}, "stream"),
    ],
)
def test_missing_or_malformed_fields(base_url, request_kwargs, param):
    r = httpx.post(base_url + "/v1/audio/transcriptions", timeout=60, **request_kwargs)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_unknown_route_and_method_are_openai_errors(base_url):
    r = httpx.get(base_url + "/v1/audio/transcriptions")
    assert r.status_code == 405 and "error" in r.json()
    r = httpx.get(base_url + "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_api_key(engine, clip_bytes):
    with serve_app(_app(engine, api_key=API_KEY)) as url:
        good = openai.OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
        bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        assert good.models.list().data
        assert good.audio.transcriptions.create(model="whisper-1", file=("a.flac", clip_bytes)).text
        with pytest.raises(openai.AuthenticationError) as info:
            bad.audio.transcriptions.create(model="whisper-1", file=("a.flac", clip_bytes))
        _assert_error(info.value, 401)
        assert info.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        r = httpx.get(url + "/v1/models")  # no header at all
        assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
        # /health and /metrics stay open for probes
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/metrics").status_code == 200


def test_metrics(base_url, client, clip_bytes):
    before = metric_value(httpx.get(base_url + "/metrics").text, "rtw_audio_seconds_total", kind="transcribe") or 0.0
    client.audio.transcriptions.create(model="whisper-1", file=("a.flac", clip_bytes))
    text = httpx.get(base_url + "/metrics").text
    for name in ("rtw_active_sessions", "rtw_decodes_in_flight", "rtw_decode_seconds_bucket", "rtw_api_requests_total"):
        assert metric_value(text, name) is not None, name
    assert metric_value(text, "rtw_input_audio_seconds_total", source="api")
    assert metric_value(text, "rtw_audio_seconds_total", kind="transcribe") > before
    # Every series names its replica (REPLICA; the host name by default).
    assert {labels.get("replica") for labels in metric_labels(text, "rtw_decode_seconds_bucket")} == {socket.gethostname()}


def test_app_build_mounts_the_api(engine):
    """app.build_app (the page's server) serves the same API. An `app` that cannot be
    imported fails here: it is the one test that wires the whole app together."""
    from app import build_app

    app = build_app(engine, _settings())
    with serve_app(app) as url:
        r = httpx.get(url + "/v1/models", timeout=30)
        assert r.status_code == 200 and r.json()["data"]
        assert httpx.get(url + "/health", timeout=30).status_code == 200
