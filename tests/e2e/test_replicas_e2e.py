"""A browser's transcript continues on another app replica after its own dies (issue 22), in a
real headless Chromium over real WebRTC.

Same recipe as test_persistence_e2e.py (loopback-only network namespace, Chromium's fake
microphone, tests/e2e/e2e_server.py with the real engine), with a PostgreSQL server of the
test's own (tests/integration/pg_server.py) as DATABASE_URL and one BROWSER_SECRET for both
replicas. The two replicas are two processes with their own DATA_DIR; the second is started
on the first one's port after the first is killed, which is what a proxy in front of them
does for the browser (one origin, so the browser's localStorage id comes along).

Checked: speak on replica A, its finals are in PostgreSQL; A is killed (SIGKILL, no drain);
replica B comes up; a reload shows the whole transcript, and Record on B continues it (it
grows and still starts with the old text), stored in the same transcript.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_page_e2e import (  # noqa: F401 - fixtures used by name
    INSIDE,
    _finals,
    _launch,
    _namespace_prefix,
    _wait,
    clip,
    fake_mic_wav,
    playwright_instance,
    run_in_namespace,
)
from test_persistence_e2e import _open, _reload, _Server, _speak_and_stop

from tests.integration import pg_server

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SECRET = "one-browser-key-for-every-replica"

pytestmark = pytest.mark.browser


@pytest.mark.skipif(INSIDE, reason="the wrapper itself (runs inside the namespace's pytest)")
def test_replica_failover_in_browser():
    if pg_server.missing_reason():
        pytest.skip(pg_server.missing_reason())
    prefix = _namespace_prefix() or []
    if os.geteuid() != 0 and "-rn" in prefix:  # inside, root would be a mapped one
        pytest.skip("the browser tests' namespace is a user namespace here: initdb refuses its root, and no other user exists there")
    run_in_namespace(Path(__file__), "TestReplicas")


def _texts(url: str) -> list[str]:
    """Every final in the shared database, per transcript in order (asked with psycopg)."""
    import psycopg

    with psycopg.connect(url) as db:
        return [r[0] for r in db.execute("SELECT text FROM segments ORDER BY transcript_id, seq").fetchall()]


def _transcripts(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as db:
        return db.execute("SELECT COUNT(*) FROM transcripts").fetchone()[0]


class TestReplicas:
    """Run by `test_replica_failover_in_browser` inside the loopback namespace."""

    def test_a_reload_after_the_replica_died_continues_on_another(self, tmp_path, clip, fake_mic_wav, playwright_instance):  # noqa: F811
        reason = pg_server.missing_reason()
        if reason:
            pytest.skip(reason)
        pg = pg_server.start()
        replicas: list[_Server] = []
        try:
            url = pg.createdb("rtw_replicas")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("DATABASE_URL", url)
                mp.setenv("BROWSER_SECRET", SECRET)
                a = _Server(tmp_path / "data-a", tmp_path / "logs-a")
                b = _Server(tmp_path / "data-b", tmp_path / "logs-b")
                b.port, b.base = a.port, a.base  # one origin, as behind the proxy
                for s in (a, b):
                    s.log_dir.mkdir()
                replicas += [a, b]
                mp.setenv("REPLICA", "a")
                a.start()

                browser = _launch(playwright_instance, fake_mic_wav)
                try:
                    page = _open(browser.new_context(viewport={"width": 1280, "height": 900}), a.base)
                    text = _speak_and_stop(page, a, "")
                    print(f"spoken on replica a: {text!r}")
                    assert text and " ".join(_texts(url)).split() == text.split()

                    a.proc.kill()  # the replica dies: no drain, no goodbye
                    a.proc.wait(30)
                    a.log.close()
                    a.proc = None
                    mp.setenv("REPLICA", "b")
                    b.start()
                    _reload(page)
                    _wait(lambda: _finals(page) == text, 90, "the transcript on replica b after the reload")
                    grown = _speak_and_stop(page, b, text)
                    print(f"continued on replica b: {grown!r}")
                    assert grown.startswith(text) and len(grown) > len(text)
                    assert _transcripts(url) == 1  # one transcript, continued
                    assert " ".join(_texts(url)).split() == grown.split()
                    ARTIFACTS.mkdir(exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / "replica-failover.png"), full_page=True)
                finally:
                    browser.close()
        finally:
            for s in replicas:
                s.stop()
                for log in sorted(s.log_dir.glob("*.log")):
                    print(f"--- {s.log_dir.name}/{log.name} (tail) ---\n{log.read_text()[-3000:]}")
            pg.stop()


if not INSIDE:
    del TestReplicas  # collected only inside the namespace (see test_replica_failover_in_browser)
