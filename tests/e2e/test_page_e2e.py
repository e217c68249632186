"""The page in a real headless Chromium over real WebRTC, with the real engine.

The browser's fake microphone plays an English clip of `tests/data` (padded with
1.5 s of silence: the first moments are lost before audio flows). Server and browser run
together in a network namespace with loopback only (`unshare -n`, or `unshare -rn` as
a normal user), so nothing leaves the machine and WebRTC connects on 127.0.0.1; the
server is `tests/e2e/e2e_server.py` (the app, with ICE on loopback and a stats route).

`test_page_in_browser` is the entry point: it re-runs this file's `TestBrowser` tests
inside the namespace (where `RTW_E2E_INSIDE=1`) and reports their outcome. Where no
namespace can be made (no user namespaces in a container), they run in place.

Checked:
- partial text shows during speech, before any final; then the final text's WER against
  the reference is at most the engine's own offline WER on the clip (the API's
  /v1/audio/transcriptions, same engine) + 0.1;
- a second page at the same time gets its own transcript (each page has the clip once;
  clearing one leaves the other);
- a third stream beyond MAX_STREAMS=2 is refused with a clear message;
- stop ends the stream: no audio frame reaches the server afterwards, the slot is freed;
- record again after a stop, and after a dropped connection (closed from the server's
  side, `POST /e2e/drop`), continues the same transcript without reloading;
- a refused microphone shows a clear message; an uploaded non-audio file gets a clear
  error;
- a screenshot is saved to test-artifacts/page-e2e.png.
No assertion depends on timing beyond generous timeouts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
INSIDE = os.environ.get("RTW_E2E_INSIDE") == "1"
CLIP_NAME = "ljspeech_coqui__LJ001-0001"
LEAD_SILENCE_S = 1.5
TAIL_SILENCE_S = 2.5
RECORD = 'button[aria-label="start stream"]'

pytestmark = pytest.mark.browser


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _namespace_prefix() -> list[str] | None:
    """A command prefix that runs in a fresh network namespace, or None."""
    if not shutil.which("unshare"):
        return None
    for flags in (["-n"], ["-rn"]):
        try:
            ok = subprocess.run(["unshare", *flags, "true"], capture_output=True, timeout=10).returncode == 0
        except Exception:
            ok = False
        if ok:
            return ["unshare", *flags]
    return None


# -- outside: run the browser tests in a loopback-only namespace -------------------------


@pytest.mark.skipif(INSIDE, reason="the wrapper itself (runs inside the namespace's pytest)")
def test_page_in_browser():
    run_in_namespace(Path(__file__), "TestBrowser")


def run_in_namespace(test_file: Path, selector: str, *, exitfirst: bool = True) -> None:
    """Run `test_file`'s browser tests (`-k selector`) in a loopback-only network namespace
    (WebRTC on loopback, nothing else reachable), and fail with their output if they fail.
    Every e2e file's outside test is this one call."""
    if chromium_path() is None:
        pytest.skip("chromium is not installed (test.sh installs Debian's chromium)")
    prefix = _namespace_prefix()
    env = {**os.environ, "RTW_E2E_INSIDE": "1"}
    pytest_cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *(["-x"] if exitfirst else []), "-rA", str(test_file), "-k", selector]
    if prefix is None:
        cmd = pytest_cmd
    else:
        quoted = " ".join(_shell_quote(a) for a in pytest_cmd)
        cmd = [*prefix, "bash", "-c", f"ip link set lo up && exec {quoted}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    output = proc.stdout + proc.stderr
    print(output[-20000:])
    assert proc.returncode == 0, f"browser tests failed (see output above):\n{output[-6000:]}"
    assert " passed" in output, f"no browser test ran:\n{output[-3000:]}"


def _shell_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


# -- inside ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def clip():
    from evaluation import clips

    from tests.datasets import TEST_DATA

    found = [c for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name == CLIP_NAME]
    if not found:
        pytest.skip(f"{CLIP_NAME} is not in the eval set")
    return found[0]


@pytest.fixture(scope="module")
def fake_mic_wav(clip, tmp_path_factory) -> Path:
    """The clip as 16-bit PCM WAV with silence before and after (Chromium's fake mic)."""
    import soundfile

    audio, rate = soundfile.read(str(clip.path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    padded = np.concatenate(
        [np.zeros(int(LEAD_SILENCE_S * rate), np.float32), audio, np.zeros(int(TAIL_SILENCE_S * rate), np.float32)]
    )
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    soundfile.write(str(path), padded, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """tests/e2e/e2e_server.py with the real engine (ENFORCE_EAGER for a quick start) on loopback."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "MAX_STREAMS": "2",
        "TURN_PROVIDER": "none",
        "ENGINE": "vllm",
        "MODEL": os.environ.get("TEST_MODEL", "embedded:tiny.en"),
        "ENFORCE_EAGER": os.environ.get("ENFORCE_EAGER", "true"),
        "API_KEY": "",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "LIVE_WORD_TIMES": "true",  # finals show each word's time on hover (issue 18)
    }
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "e2e" / "e2e_server.py")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"server exited ({proc.returncode}):\n{log_path.read_text()[-5000:]}")
        try:
            _get_json(base + "/health", timeout=2)
            break
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"server did not start:\n{log_path.read_text()[-5000:]}")
            time.sleep(0.5)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    print(f"--- server log (tail) ---\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _launch(p, wav: Path | None, *, grant_mic: bool = True):
    args = [
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--allow-loopback-in-peer-connection",
        "--disable-dev-shm-usage",
    ]
    if grant_mic:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
        if wav is not None:
            args.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
    else:
        args += ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]
    return p.chromium.launch(executable_path=chromium_path(), headless=True, args=args)


ACCESS = 'button:has-text("Click to Access Microphone")'


def _open(browser, base: str, *, record_button: bool = True):
    """Load the page; grant the microphone (the widget's first button), wait for Record."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(base + "/", wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_selector(f"{ACCESS}, {RECORD}", timeout=120_000)
    if record_button:
        if page.locator(ACCESS).count():
            page.click(ACCESS)
        page.wait_for_selector(RECORD, timeout=60_000)
    return page


def _grant_and_record(page) -> None:
    if page.locator(ACCESS).count():
        page.click(ACCESS)
    page.click(RECORD, timeout=60_000)


PLACEHOLDER = "The transcript appears here"


def _finals(page) -> str:
    text = page.inner_text("#finals .rtw-transcript").strip()
    return "" if PLACEHOLDER in text else text


def _partial(page) -> str:
    text = page.inner_text("#partial .rtw-partial").strip()
    return "" if text.startswith("Listening") else text


def _status(page) -> str:
    return page.inner_text("#status .rtw-status")


def _toasts(page) -> str:
    return " ".join(page.locator(".toast-body, .toast-wrap, [data-testid='toast-body']").all_inner_texts())


def choose_file(page, path) -> None:
    """Open the upload tab and choose `path`; return once Gradio has finished uploading it
    (its name in the box, no upload in progress). A fixed wait was not enough on a busy
    machine: Transcribe then only says "Waiting for file(s) to finish uploading"."""
    name = Path(path).stem  # Gradio shows the stem and the extension in separate elements
    page.get_by_role("tab", name="Transcribe a recording").click()
    page.locator("#upload-file input[type=file]").set_input_files(str(path))

    def uploaded() -> bool:
        text = page.locator("#upload-file").inner_text()
        return name in text and "uploading" not in text.lower()

    _wait(uploaded, 60, f"{name} to finish uploading")


#: Gradio's toast when an event's input still uploads ("... please retry").
GRADIO_UPLOAD_PENDING = "Waiting for file(s) to finish uploading"


def _upload(page, path) -> None:
    """Open the upload tab, choose `path`, press Transcribe. Gradio refuses the click with
    GRADIO_UPLOAD_PENDING while its File box still counts the upload as running (seen here
    after the file's name was shown); it asks to retry, and so does this, up to 30 s."""
    choose_file(page, path)
    deadline = time.monotonic() + 30
    while True:
        page.click("#upload-run")
        page.wait_for_timeout(1000)
        if GRADIO_UPLOAD_PENDING not in _toasts(page) or time.monotonic() > deadline:
            return
        for close in page.locator(".toast-close").all():
            close.click()
        _wait(lambda: GRADIO_UPLOAD_PENDING not in _toasts(page), 15, "Gradio's upload toast to close")


def _wait(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _offline_text(base: str, clip) -> str:
    """The engine's own offline transcript of the clip, through the app's API."""
    import httpx

    model = _get_json(base + "/health")["engine"]["model"]
    with open(clip.path, "rb") as f:
        r = httpx.post(
            base + "/v1/audio/transcriptions",
            files={"file": (clip.path.name, f, "audio/flac")},
            data={"model": model},
            timeout=300,
        )
    r.raise_for_status()
    return r.json()["text"]


class TestBrowser:
    """Run by `test_page_in_browser` inside the loopback namespace (not collected outside)."""

    def test_live_two_pages_stop_restart(self, server, clip, fake_mic_wav, playwright_instance):
        from evaluation import wer

        p = playwright_instance
        offline = _offline_text(server, clip)
        offline_wer = wer([clip.text], [offline])
        print(f"offline: {offline!r} (WER {offline_wer:.3f})")

        browser_a = _launch(p, fake_mic_wav)
        browser_b = _launch(p, fake_mic_wav)
        try:
            # Chromium's fake microphone starts playing the file when the page gets the
            # microphone, so each page is granted it right before Record.
            a = _open(browser_a, server, record_button=False)
            b = _open(browser_b, server, record_button=False)
            assert "Model" in _status(a)
            frames_before = _get_json(server + "/e2e/stats")["frames"]
            for page in (a, b):
                _grant_and_record(page)

            # Partial text during speech, before any final.
            saw_partial_first = {"a": False, "b": False}
            started = time.monotonic()
            speech_end = started + LEAD_SILENCE_S + clip.duration + 2.0
            timeline: dict[str, list[str]] = {"a": [], "b": []}

            def finals_settled() -> bool:
                for name, page in (("a", a), ("b", b)):
                    partial, finals = _partial(page), _finals(page)
                    if partial and not finals:
                        saw_partial_first[name] = True
                    seen = f"{time.monotonic() - started:5.1f}s partial={partial!r} finals={finals!r}"
                    if not timeline[name] or timeline[name][-1][6:] != seen[6:]:
                        timeline[name].append(seen)
                return time.monotonic() > speech_end and bool(_finals(a)) and bool(_finals(b)) and not _partial(a) and not _partial(b)

            _wait(finals_settled, 240, "final text on both pages", interval=0.2)
            seen = "\n".join(f"page {n.upper()}:\n  " + "\n  ".join(lines) for n, lines in timeline.items())
            print(seen)
            assert saw_partial_first["a"], f"page A showed no partial text before its first final:\n{seen}"
            assert saw_partial_first["b"], f"page B showed no partial text before its first final:\n{seen}"
            assert _get_json(server + "/e2e/stats")["frames"] > frames_before

            assert "live" in _status(a) and "live" in _status(b)
            ARTIFACTS.mkdir(exist_ok=True)
            a.screenshot(path=str(ARTIFACTS / "page-e2e.png"), full_page=True)

            # A third stream is over MAX_STREAMS=2: refused, with a clear message. (Its own
            # browser: pages of one Chromium share the fake microphone, and closing one
            # disturbs the other's capture.)
            browser_c = _launch(p, None)
            c = _open(browser_c, server)
            c.click(RECORD)
            _wait(lambda: "full" in (_status(c) + _toasts(c)).lower(), 60, "the 'app is full' message")
            assert _finals(c) == ""
            c.screenshot(path=str(ARTIFACTS / "page-e2e-full.png"))
            browser_c.close()

            # Stop: the last words are settled, the server gets no more audio, the slot is free.
            a.click(RECORD)
            b.click(RECORD)
            _wait(lambda: _get_json(server + "/e2e/stats")["active"] == 0, 90, "both streams to end")
            _wait(lambda: "stopped" in _status(a) and "stopped" in _status(b), 60, "'stopped' in the status line")
            frames_after_stop = _get_json(server + "/e2e/stats")["frames"]
            time.sleep(3.0)
            stats = _get_json(server + "/e2e/stats")
            assert stats["frames"] == frames_after_stop, "audio kept arriving after stop"
            assert stats["slots_active"] == 0

            text_a, text_b = _finals(a), _finals(b)
            wer_a, wer_b = wer([clip.text], [text_a]), wer([clip.text], [text_b])
            print(f"page A: {text_a!r} (WER {wer_a:.3f}); page B: {text_b!r} (WER {wer_b:.3f})")
            # Each page has the clip once: a shared transcript would hold it twice.
            assert wer_a <= offline_wer + 0.1, f"page A WER {wer_a:.3f} > offline {offline_wer:.3f} + 0.1"
            assert wer_b <= offline_wer + 0.1, f"page B WER {wer_b:.3f} > offline {offline_wer:.3f} + 0.1"

            # Downloads exist once there is a transcript.
            assert a.locator("#download-txt").is_enabled()

            # Every word of the finals has its time (and confidence) on hover, in order.
            spans = a.locator("#finals .rtw-word")
            assert [w.strip() for w in spans.all_inner_texts()] == text_a.split()
            titles = [spans.nth(i).get_attribute("title") for i in range(spans.count())]
            times = [re.fullmatch(r"(\d+\.\d\d)–(\d+\.\d\d) s · p [01]\.\d\d", t or "") for t in titles]
            assert all(times), titles
            edges = [float(x) for m in times for x in m.groups()]
            assert edges == sorted(edges) and edges[0] >= 0.0, titles

            # Independent: clearing B leaves A alone.
            b.click("#clear")
            _wait(lambda: _finals(b) == "", 30, "page B cleared")
            time.sleep(1.0)
            assert _finals(a) == text_a

            # Record again without reloading: the transcript so far is kept and grows.
            a.click(RECORD)
            _wait(lambda: "live" in _status(a), 60, "page A live again")
            _wait(lambda: len(_finals(a)) > len(text_a) or _partial(a), 120, "new text after the restart")
            assert _finals(a).startswith(text_a[:40])

            # The connection drops (closed from the server's side): the page says so, keeps
            # the transcript, and Record starts a new stream without a reload.
            dropped = json.loads(urllib.request.urlopen(urllib.request.Request(server + "/e2e/drop", method="POST"), timeout=30).read())
            assert dropped["closed"] >= 1
            _wait(lambda: "dropped" in _status(a), 90, "the 'connection dropped' message")
            _wait(lambda: a.inner_text(RECORD).strip().startswith("Record"), 90, "the Record button after the drop")
            assert _finals(a).startswith(text_a[:40])
            a.click(RECORD)
            _wait(lambda: "live" in _status(a) and "dropped" not in _status(a), 60, "page A live after the drop")
            a.click(RECORD)
            _wait(lambda: _get_json(server + "/e2e/stats")["active"] == 0, 90, "the restarted stream to end")
            _wait(lambda: "stopped" in _status(a), 60, "'stopped' after the restart")
            assert _finals(a).startswith(text_a[:40])
            a.screenshot(path=str(ARTIFACTS / "page-e2e-restart.png"), full_page=True)
        finally:
            browser_a.close()
            browser_b.close()

    def test_refused_microphone_shows_message(self, server, playwright_instance):
        browser = _launch(playwright_instance, None, grant_mic=False)
        try:
            page = _open(browser, server, record_button=False)
            page.click(ACCESS if page.locator(ACCESS).count() else RECORD)
            message = _wait(lambda: _toasts(page), 30, "an error message")
            print(f"refused microphone: {message!r}")
            assert "microphone" in message.lower() or "allow" in message.lower()
            page.screenshot(path=str(ARTIFACTS / "page-e2e-mic-refused.png"))
        finally:
            browser.close()

    def test_non_audio_upload_gets_clear_error(self, server, playwright_instance, tmp_path):
        notes = tmp_path / "notes.txt"
        notes.write_text("This is a shopping list, not a recording.\n" * 20)
        browser = _launch(playwright_instance, None)
        try:
            page = _open(browser, server)
            _upload(page, notes)
            message = _wait(lambda: _toasts(page), 60, "an error message")
            print(f"non-audio upload: {message!r}")
            # The audio loader's own words ("notes.txt has no audio stream" / "... is not a
            # readable audio file"), naming the file: no traceback, no generic failure.
            assert "notes.txt" in message and "audio" in message.lower(), message
            assert "Traceback" not in message
            page.screenshot(path=str(ARTIFACTS / "page-e2e-bad-upload.png"))
        finally:
            browser.close()

    def test_upload_tab_transcribes_a_recording(self, server, clip, playwright_instance):
        from evaluation import wer

        browser = _launch(playwright_instance, None)
        try:
            page = _open(browser, server, record_button=False)
            _upload(page, clip.path)
            text = _wait(lambda: page.input_value("#upload-text textarea").strip(), 180, "the recording's transcript")
            print(f"upload: {text!r}")
            assert wer([clip.text], [text]) <= 0.2
            _wait(lambda: page.locator("#upload-download-srt").is_enabled(), 30, "the srt download")
            assert "-->" in page.input_value("#upload-srt textarea")
        finally:
            browser.close()

    def test_upload_tab_long_recording_shows_progress(self, server, playwright_instance):
        """A 3.9-minute file: the long-form path, a progress text while it runs, every stretch kept."""
        from evaluation import longform_files, wer

        from tests.datasets import require_eval_set

        long_file = next(f for f in longform_files(require_eval_set()) if f.path.name.startswith("ljspeech"))
        browser = _launch(playwright_instance, None)
        try:
            page = _open(browser, server, record_button=False)
            _upload(page, long_file.path)
            seen_progress: list[str] = []

            def done() -> str:
                body = page.inner_text("body")
                seen_progress.extend(line for line in body.splitlines() if "transcribing" in line)
                return page.input_value("#upload-text textarea").strip()

            text = _wait(done, 300, "the long recording's transcript")
            print(f"long upload progress lines: {sorted(set(seen_progress))[:5]}")
            assert seen_progress, "no progress text was shown while the long file was transcribed"
            assert wer([long_file.text], [text]) <= 0.12
            srt = page.input_value("#upload-srt textarea")
            assert srt.count("-->") >= 8  # segment times across the whole file, not one block
        finally:
            browser.close()


if not INSIDE:
    del TestBrowser  # collected only inside the namespace (see test_page_in_browser)
