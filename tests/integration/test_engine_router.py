"""The engine router (`deploy/haproxy.cfg`, real HAProxy) in front of two OpenAI-compatible
servers on loopback, with the app's RemoteEngine as its client.

The servers are `MisbehavingServer`s (they fail on cue, answer /health as told), so each
case runs in seconds; `bench cluster --short` (test_cluster_bench.py) does the same with
real engines. The RemoteEngine here has its own retries off (`retries=0`): every answer
that arrives despite a failing engine was resent by the router, not by the app.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time

import numpy as np
import pytest

from bench.cluster import Haproxy, start_haproxy
from engine.base import PRIORITY_BACKGROUND, DecodeRequest
from engine.remote import RemoteEngine
from tests.integration.misbehaving_server import MisbehavingServer, free_port

pytestmark = pytest.mark.skipif(not shutil.which("haproxy"), reason="haproxy is not installed (apt-get install haproxy; scripts/setup.sh --test)")

SECOND = (0.1 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32)


@pytest.fixture
def pool(tmp_path):
    with MisbehavingServer(text="from a") as a, MisbehavingServer(text="from b") as b:
        hap = start_haproxy([free_port(), free_port()], [a.port, b.port], tmp_path)
        try:
            hap.wait_up(["engine1", "engine2"])
            yield hap, a, b
        finally:
            hap.proc.send_signal(signal.SIGTERM)
            hap.proc.wait(timeout=10)


def router_client(hap: Haproxy, **kw) -> RemoteEngine:
    return RemoteEngine(f"http://127.0.0.1:{hap.router}/v1", model="fake-whisper", retries=0, timeout_s=10.0, **kw)


def wait_status(hap: Haproxy, server: str, prefix: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not hap.servers()[server]["status"].startswith(prefix):
        assert time.monotonic() < deadline, f"{server} is {hap.servers()[server]['status']}, not {prefix}"
        time.sleep(0.1)


async def test_a_failed_decode_is_sent_to_the_other_engine(pool):
    hap, a, _ = pool
    a.behave("reset", "503", "502", "504")  # engine1 fails four decodes in a row, engine2 none
    engine = router_client(hap)
    try:
        texts = [(await engine.transcribe(DecodeRequest(SECOND))).text for _ in range(10)]
    finally:
        await engine.close()
    assert a.script == []  # every failure happened ...
    assert all(t in ("from a", "from b") for t in texts), texts  # ... and every decode was answered
    assert int(hap.backend("engines")["wretr"]) >= 4


async def test_the_largest_piece_the_app_sends_is_retried_too(pool):
    """A 30 s window as uncompressed wav (~0.96 MB, noise: no codec makes it smaller) fits
    the router's buffer (tune.bufsize), so a reset engine's decode is resent whole."""
    hap, a, b = pool
    a.behave("reset")
    b.behave("reset")
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 30 * 16000).astype(np.float32)
    engine = router_client(hap, audio_format="wav")
    try:
        result = await engine.transcribe(DecodeRequest(noise))
    finally:
        await engine.close()
    assert result.text in ("from a", "from b")
    sizes = [len(s.body) for s in a.seen + b.seen]
    assert len(sizes) == 3 and min(sizes) > 950_000  # two resets and the answer, each the whole upload


async def test_a_dead_engine_is_taken_out_and_nothing_is_lost(pool):
    hap, a, _ = pool
    engine = router_client(hap)
    try:
        first = await asyncio.gather(*(engine.transcribe(DecodeRequest(SECOND)) for _ in range(4)))
        # engine1 dies: its port refuses connections, and the router's open keep-alive
        # connections to it are reset (as a killed process's are) rather than answered
        a.default = "reset"
        a.__exit__(None, None, None)
        during = await asyncio.gather(*(engine.transcribe(DecodeRequest(SECOND)) for _ in range(6)))
        wait_status(hap, "engine1", "DOWN")
        after = await asyncio.gather(*(engine.transcribe(DecodeRequest(SECOND)) for _ in range(6)))
    finally:
        await engine.close()
    assert {r.text for r in first} <= {"from a", "from b"}
    assert [r.text for r in during + after] == ["from b"] * 12


async def test_a_draining_engine_gets_no_new_work(pool):
    hap, a, _ = pool
    a.health_status = 503  # what the app's /health answers while it drains
    wait_status(hap, "engine1", "DOWN")
    seen_before = len(a.seen)
    engine = router_client(hap)
    try:
        results = await asyncio.gather(*(engine.transcribe(DecodeRequest(SECOND)) for _ in range(6)))
    finally:
        await engine.close()
    assert [r.text for r in results] == ["from b"] * 6 and len(a.seen) == seen_before
    a.health_status = 200  # and it comes back after two good checks
    wait_status(hap, "engine1", "UP")


async def test_finals_go_before_queued_partials_and_pieces(tmp_path, monkeypatch):
    """Engines busy (one decode at a time each: ENGINE_SLOTS=1, one engine up): the decodes
    that wait queue in the router, and a final (priority 0) that arrives behind four
    background ones (partials, file pieces: 1) goes next, as the app's header asks."""
    monkeypatch.setenv("ENGINE_SLOTS", "1")
    with MisbehavingServer(default="slow", slow_s=0.4) as a, MisbehavingServer() as b:
        b.health_status = 503
        hap = start_haproxy([free_port(), free_port()], [a.port, b.port], tmp_path)
        engine = router_client(hap)
        try:
            hap.wait_up(["engine1"])
            wait_status(hap, "engine2", "DOWN")
            assert hap.servers()["engine1"]["slim"] == "1"
            background = [asyncio.ensure_future(engine.transcribe(DecodeRequest(SECOND, priority=PRIORITY_BACKGROUND)))
                          for _ in range(4)]
            deadline = time.monotonic() + 10
            while int(hap.backend("engines")["qcur"] or 0) < 3:  # one at the engine, three waiting
                assert time.monotonic() < deadline, hap.backend("engines")
                await asyncio.sleep(0.02)
            await engine.transcribe(DecodeRequest(SECOND, prompt="the final"))
            await asyncio.gather(*background)
        finally:
            await engine.close()
            hap.proc.send_signal(signal.SIGTERM)
            hap.proc.wait(timeout=10)
    assert [s.field("prompt") for s in a.seen] == [None, "the final", None, None, None]
    assert [s.headers.get("x-rt-whisper-priority") for s in a.seen].count("1") == 4
