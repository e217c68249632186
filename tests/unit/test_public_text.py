"""Issue 17, case 3: one rule for what of a failure a user may read (`engine.public`).

The API, the upload tab, the live session's error events and the page's "Could not
start the stream" all use it; these tests hold the rule itself and the page's start.
"""

from __future__ import annotations

import pytest

from engine.base import AudioError, EngineUnavailable, UnsupportedRequest
from engine.public import public_message, public_reason

URL = "https://user:s3cretpass@10.0.0.7:8443/v1/private-path?api_key=tok_9f8e"
SECRETS = ("s3cretpass", "private-path", "tok_9f8e", "hunter2")


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def test_engine_failure_shows_its_first_clause_with_the_host_only():
    exc = EngineUnavailable(f"the remote endpoint {URL} failed (500). Server said: password=hunter2")
    for text in (public_reason(exc), public_message(exc)):
        _clean(text)
        assert text == "the remote endpoint https://10.0.0.7:8443 failed (500)"


def test_what_the_user_can_fix_is_shown_whole():
    exc = UnsupportedRequest("tiny.en is English-only: language 'de' is not supported")
    assert public_message(exc) == str(exc)
    _clean(public_message(AudioError(f"could not read {URL}: not audio")))


def test_other_failures_show_their_type_only():
    assert public_message(RuntimeError(f"boom at {URL} hunter2")) == "an internal error (RuntimeError)"


def test_web_uses_the_same_rule():
    from web import errors, redact

    assert errors.public_reason is public_reason
    assert redact.redact_urls("x " + URL) == "x https://10.0.0.7:8443"


class _BrokenService:
    """A streaming service whose stream cannot start (e.g. the VAD model failed to load)."""

    multilingual = False

    def options(self, **kw):
        return None

    def open(self, options, on_event):
        raise RuntimeError(f"could not load /srv/models/private-path/vad.onnx with {URL}")


async def test_could_not_start_the_stream_keeps_no_secret():
    from web.live import LiveHandler, LiveStats, TabState

    handler = LiveHandler(_BrokenService(), stats=LiveStats())  # type: ignore[arg-type]
    tab = TabState()
    handler.set_args(["webrtc-id", tab, "auto", "transcribe"])
    with pytest.raises(RuntimeError, match="could not load"):
        await handler.start_up()
    assert tab.message is not None and tab.message.startswith("Could not start the stream")
    _clean(tab.message)
