"""Transcripts survive reload and restart, in a real headless Chromium over real WebRTC (issue 11 B).

Same recipe as test_page_e2e.py (loopback-only network namespace, Chromium's fake
microphone playing an eval clip, tests/e2e/e2e_server.py with the real engine), with a
DATA_DIR of the test's own. One browser context is "this browser" (its localStorage holds
its id); a second context is another browser. Each tab has its own live transcript (issue 17):
every step here is one page, so a reload is a reload of the same tab (its sessionStorage keeps
the tab's id); tests/e2e/test_tabs_e2e.py checks several tabs of one browser.

Checked, in order:
- speak, stop, reload the tab: the same transcript is shown, and Record continues it (it grows and
  still starts with the old text);
- the server is restarted on the same port with the same DATA_DIR: after a reload the
  transcript is still there;
- another browser context sees its own, empty transcript;
- New transcript sets it aside: the History tab lists it (first words), opens it (its text)
  and its txt download holds the text;
- Clear removes the live transcript for good: a reload shows nothing, the database holds
  only the set-aside transcript, and the History still has that one.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_page_e2e import (  # noqa: F401 - fixtures used by name
    run_in_namespace,
    INSIDE,
    RECORD,
    _finals,
    _free_port,
    _get_json,
    _grant_and_record,
    _launch,
    _partial,
    _status,
    _wait,
    clip,
    fake_mic_wav,
    playwright_instance,
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.browser


@pytest.mark.skipif(INSIDE, reason="the wrapper itself (runs inside the namespace's pytest)")
def test_persistence_in_browser():
    run_in_namespace(Path(__file__), "TestPersistence")


class _Server:
    """tests/e2e/e2e_server.py on a fixed port and DATA_DIR, so it can be restarted."""

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.port = _free_port()
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log_path = self.log_dir / f"server-{self.starts}.log"
        env = {
            **os.environ,
            "GRADIO_SERVER_NAME": "127.0.0.1",
            "GRADIO_SERVER_PORT": str(self.port),
            "DATA_DIR": str(self.data_dir),
            "TURN_PROVIDER": "none",
            "ENGINE": "vllm",
            "MODEL": os.environ.get("TEST_MODEL", "embedded:tiny.en"),
            "ENFORCE_EAGER": os.environ.get("ENFORCE_EAGER", "true"),
            "KV_CACHE_MB": os.environ.get("KV_CACHE_MB", "64"),
            "API_KEY": "",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "e2e" / "e2e_server.py")], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 600
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited ({self.proc.returncode}):\n{log_path.read_text()[-5000:]}")
            try:
                _get_json(self.base + "/health", timeout=2)
                return
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.proc.kill()
                    pytest.fail(f"server did not start:\n{log_path.read_text()[-5000:]}")
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            self.proc = None


def serve(tmp_path_factory, **env: str):
    """A started e2e server with its own DATA_DIR (and `env` in its environment only),
    stopped afterwards with its logs' tails printed: the body of every e2e file's fixture."""
    s = _Server(tmp_path_factory.mktemp("data"), tmp_path_factory.mktemp("logs"))
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        s.start()
    yield s
    s.stop()
    for log in sorted(s.log_dir.glob("*.log")):
        print(f"--- {log.name} (tail) ---\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory)


def _speak_and_stop(page, server: _Server, before: str, timeout: float = 180) -> str:
    """Record, wait until the transcript grew past `before` and settled, Stop; the new text."""
    _grant_and_record(page)
    _wait(lambda: "live" in _status(page), 60, "the stream to start")
    _wait(lambda: len(_finals(page)) > len(before) and not _partial(page), timeout, "new final text", interval=0.3)
    time.sleep(4.0)  # the clip's last words
    _wait(lambda: not _partial(page), 60, "the open utterance to settle")
    page.click(RECORD)
    _wait(lambda: _get_json(server.base + "/e2e/stats")["active"] == 0, 90, "the stream to end")
    _wait(lambda: "stopped" in _status(page), 60, "'stopped' in the status line")
    return _finals(page)


def _open(context, base: str):
    """A page of `context` (one browser's localStorage), loaded, its microphone not yet granted."""
    page = context.new_page()
    page.goto(base + "/", wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_selector(f'{RECORD}, button:has-text("Click to Access Microphone")', timeout=120_000)
    return page


def _reload(page) -> None:
    page.reload(wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_selector(f'{RECORD}, button:has-text("Click to Access Microphone")', timeout=120_000)


def _rows(data_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(str(data_dir / "transcripts.sqlite3")) as db:
        return db.execute(sql).fetchall()


class TestPersistence:
    """Run by `test_persistence_in_browser` inside the loopback namespace."""

    def test_reload_restart_other_browser_history_clear(self, server, clip, fake_mic_wav, playwright_instance):  # noqa: F811
        browser = _launch(playwright_instance, fake_mic_wav)
        try:
            mine = browser.new_context(viewport={"width": 1280, "height": 900})
            page = _open(mine, server.base)

            # Speak; the finals are in the database as they land.
            text = _speak_and_stop(page, server, "")
            print(f"spoken: {text!r}")
            assert text
            stored = " ".join(r[0] for r in _rows(server.data_dir, "SELECT text FROM segments ORDER BY seq"))
            assert stored.split() == text.split()

            # Reload: the same transcript, and Record continues it.
            _reload(page)
            _wait(lambda: _finals(page) == text, 60, "the transcript after the reload")
            grown = _speak_and_stop(page, server, text)
            print(f"continued: {grown!r}")
            assert grown.startswith(text) and len(grown) > len(text)
            assert len(_rows(server.data_dir, "SELECT id FROM transcripts")) == 1  # one transcript, continued

            # Restart the server (same port, same DATA_DIR): still there after a reload.
            server.stop()
            server.start()
            _reload(page)
            _wait(lambda: _finals(page) == grown, 90, "the transcript after the server restart")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "persistence-after-restart.png"), full_page=True)

            # Another browser: its own, empty transcript.
            other = browser.new_context(viewport={"width": 1280, "height": 900})
            stranger = _open(other, server.base)
            time.sleep(3.0)  # its page load has run
            assert _finals(stranger) == ""
            stranger.get_by_role("tab", name="History").click()
            _wait(lambda: stranger.locator("#history-note").is_visible(), 30, "an empty history for the other browser")
            other.close()

            # New transcript: the old one goes to the History, which lists and opens it.
            page.click("#new-transcript")
            _wait(lambda: _finals(page) == "", 30, "an empty live transcript")
            page.get_by_role("tab", name="History").click()
            first_words = " ".join(grown.split()[:3])
            item = page.locator("#history-list label").filter(has_text=first_words)
            _wait(lambda: item.count() == 1, 30, "the earlier transcript in the History list")
            print(f"history item: {item.inner_text()!r}")
            item.click()
            _wait(lambda: first_words in page.input_value("#history-text textarea"), 30, "the opened transcript")
            shown = page.input_value("#history-text textarea")
            assert all(word in shown for word in grown.split()[-3:])
            _wait(lambda: page.locator("#history-download-txt").is_enabled(), 30, "the txt download")
            with page.expect_download() as download:
                page.click("#history-download-txt")
            assert Path(download.value.path()).read_text().split() == grown.split()
            page.screenshot(path=str(ARTIFACTS / "persistence-history.png"), full_page=True)

            # Clear removes the live transcript for good (the set-aside one stays).
            page.get_by_role("tab", name="Live").click()
            fresh = _speak_and_stop(page, server, "")
            assert fresh
            assert len(_rows(server.data_dir, "SELECT id FROM transcripts")) == 2
            page.click("#clear")
            _wait(lambda: _finals(page) == "", 30, "the cleared transcript")
            _wait(lambda: len(_rows(server.data_dir, "SELECT id FROM transcripts")) == 1, 30, "the cleared transcript gone from the database")
            kept = " ".join(r[0] for r in _rows(server.data_dir, "SELECT text FROM segments ORDER BY seq"))
            assert kept.split() == grown.split()
            _reload(page)
            time.sleep(3.0)
            assert _finals(page) == ""
            page.get_by_role("tab", name="History").click()
            _wait(lambda: page.locator("#history-list label").count() == 1, 30, "the History after Clear")
        finally:
            browser.close()


if not INSIDE:
    del TestPersistence  # collected only inside the namespace (see test_persistence_in_browser)
