"""Uploads transcribed twice, and copies of transcripts on disk, in a real headless Chromium (issue 17, cases 2 and 6).

Same recipe as test_persistence_e2e.py (loopback-only namespace, tests/e2e/e2e_server.py
with the real engine, Chromium's fake microphone), with the server's temp folders
(`TMPDIR`, and Gradio's cache `GRADIO_TEMP_DIR` inside it) owned by the test, so every
file the app writes can be counted. Pages of separate browser contexts are separate
browsers (their own id); both upload the same recording, so Gradio gives both one
content-hashed path in its cache.

Checked, in order:
- case 2: A and B upload the same file; A transcribes, then B transcribes (A's job must not
  have deleted B's file), then A presses Transcribe a second time (it works again); no
  message ever shows a server path;
- case 6: B's tab closes: its download files go; A opens its History items again and again:
  the files holding the transcript's words stay bounded (per tab and use, the latest set and
  the one before); a download clicked the moment another item opens still arrives; A deletes
  both items: no file holds the words any more; a live recording's downloads go with Clear;
- A's tab closes: Gradio's copy of the upload goes (it is kept while a page shows it).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from test_page_e2e import (  # noqa: F401 - fixtures used by name
    choose_file,
    run_in_namespace,
    INSIDE,
    _finals,
    _launch,
    _toasts,
    _wait,
    clip,
    fake_mic_wav,
    playwright_instance,
)
from test_persistence_e2e import _open, _rows, _Server, _speak_and_stop, serve

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.browser


@pytest.mark.skipif(INSIDE, reason="the wrapper itself (runs inside the namespace's pytest)")
def test_upload_and_history_files_in_browser():
    run_in_namespace(Path(__file__), "TestUploadHistory")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The e2e server with its own DATA_DIR, TMPDIR and Gradio cache (inside that TMPDIR)."""
    tmp = tmp_path_factory.mktemp("servertmp")
    for s in serve(tmp_path_factory, TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio")):
        s.tmp, s.gradio = tmp, tmp / "gradio"
        yield s


def _copies(root: Path, word: str) -> list[Path]:
    """Files under `root` (the server's TMPDIR) that hold `word`: copies of a transcript."""
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and path.stat().st_size < 1_000_000 and word.lower() in path.read_text(errors="ignore").lower():
                found.append(path)
        except OSError:  # removed while we looked
            continue
    return found


def _transcribe(page) -> None:
    page.get_by_role("tab", name="Transcribe a recording").click()
    page.click("#upload-run")


def _choose(page, path: Path) -> None:
    choose_file(page, path)


def _uploads(server: _Server) -> int:
    return _rows(server.data_dir, "SELECT count(*) FROM transcripts WHERE kind = 'upload'")[0][0]


def _no_server_path(page, server: _Server) -> None:
    shown = _toasts(page) + " " + page.inner_text("body")
    assert str(server.tmp) not in shown and "/gradio/" not in shown, f"a server path is shown: {shown[-2000:]}"


class TestUploadHistory:
    """Run by `test_upload_and_history_files_in_browser` inside the loopback namespace."""

    def test_second_click_shared_upload_and_copies_on_disk(self, server, clip, fake_mic_wav, playwright_instance):  # noqa: F811
        browser = _launch(playwright_instance, fake_mic_wav)
        try:
            ctx_a = browser.new_context(viewport={"width": 1280, "height": 900})
            ctx_b = browser.new_context(viewport={"width": 1280, "height": 900})
            a, b = _open(ctx_a, server.base), _open(ctx_b, server.base)

            # Case 2: one content-hashed path in Gradio's cache for both browsers' uploads.
            _choose(a, clip.path)
            _choose(b, clip.path)
            cached = list(server.gradio.rglob(clip.path.name))
            print(f"gradio's copies of the upload: {cached}")
            assert len(cached) == 1, cached

            _transcribe(a)
            text = _wait(lambda: a.input_value("#upload-text textarea").strip(), 240, "A's transcript")
            _wait(lambda: _uploads(server) == 1, 30, "A's transcript in the history")
            _transcribe(b)  # after A's job finished with the shared file
            _wait(lambda: _uploads(server) == 2 or "error" in _toasts(b).lower() or "not" in _toasts(b).lower(), 240, "B's job to end")
            print(f"B after A's job: toasts {_toasts(b)!r}")
            _no_server_path(b, server)
            assert _uploads(server) == 2, f"B's job failed after A's job on the same file: {_toasts(b)!r}"
            _wait(lambda: b.input_value("#upload-text textarea").strip() == text, 30, "the transcript on b's page")  # stored first, shown a moment later

            a.check("#upload-word-times input")  # the second click asks for word times (issue 18)
            _transcribe(a)  # a second click on the same upload
            _wait(lambda: _uploads(server) == 3 or _toasts(a), 240, "A's second job to end")
            print(f"A's second click: toasts {_toasts(a)!r}")
            _no_server_path(a, server)
            assert _uploads(server) == 3, f"a second Transcribe on the same upload failed: {_toasts(a)!r}"

            # Case 6: the transcript's copies on disk.
            word = max(re.findall(r"[A-Za-z]+", text), key=len)
            print(f"counting files that hold {word!r}: {[str(p) for p in _copies(server.tmp, word)]}")
            ctx_b.close()  # B's tab closes: its downloads go
            _wait(lambda: len(_copies(server.tmp, word)) <= 3, 60, "B's download files to go with its tab")

            a.get_by_role("tab", name="History").click()
            items = a.locator("#history-list label")
            _wait(lambda: items.count() == 2, 30, "A's two transcripts in the History")
            # The newest (listed first) was transcribed with word times: the History keeps them,
            # each word a span with its time and confidence on hover.
            items.nth(0).click()
            spans = a.locator("#history-words .rtw-word")
            _wait(lambda: spans.count() > 3, 30, "the word-timed transcript's words in the History")
            titles = [spans.nth(k).get_attribute("title") for k in range(3)]
            assert all(re.fullmatch(r"\d+\.\d\d–\d+\.\d\d s · p [01]\.\d\d", t or "") for t in titles), titles
            most = 0
            for i in range(8):
                items.nth(i % 2).click()
                _wait(lambda: word in a.input_value("#history-text textarea"), 30, "the opened transcript")
                _wait(lambda: a.locator("#history-download-txt").is_enabled(), 30, "its downloads")
                most = max(most, len(_copies(server.tmp, word)))
            copies = _copies(server.tmp, word)
            print(f"after 8 opens: {len(copies)} files hold the words (most {most}): {[str(p) for p in copies]}")
            # Per tab and use the latest set and the one before (a click that lands before the
            # page has the new paths still finds its file): the upload tab's 3, the History's 4 + 4.
            assert most <= 11, f"{most} copies of the transcript on disk after 8 opens"
            items.nth(0).click()  # and download at once, before the page has the new set's paths
            with a.expect_download() as download:
                a.click("#history-download-txt")
            assert word in Path(download.value.path()).read_text()

            for _ in range(2):
                items.first.click()
                _wait(lambda: word in a.input_value("#history-text textarea"), 30, "the opened transcript")
                before = items.count()
                a.click("#history-delete")
                _wait(lambda: items.count() == before - 1 or a.locator("#history-note").is_visible(), 30, "the item deleted")
            _wait(lambda: not _copies(server.tmp, word), 30, "no copy of the deleted transcripts on disk")

            # Clear: a live transcript's downloads go with it.
            a.get_by_role("tab", name="Live").click()
            spoken = _speak_and_stop(a, server, "")
            assert spoken
            live_word = max(re.findall(r"[A-Za-z]+", spoken), key=len)
            _wait(lambda: a.locator("#download-txt").is_enabled(), 30, "the live downloads")
            assert _copies(server.tmp, live_word), "the live downloads are not on disk"
            a.click("#clear")
            _wait(lambda: _finals(a) == "", 30, "the cleared transcript")
            _wait(lambda: not _copies(server.tmp, live_word), 30, "no copy of the cleared transcript on disk")

            # A's tab closes: Gradio's copy of the upload is no longer kept for it.
            ctx_a.close()
            _wait(lambda: not list(server.gradio.rglob(clip.path.name)), 60, "Gradio's copy of the upload to go")
        finally:
            browser.close()


if not INSIDE:
    del TestUploadHistory  # collected only inside the namespace (see test_upload_and_history_files_in_browser)
