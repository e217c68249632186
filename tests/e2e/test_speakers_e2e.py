"""Speakers live and in the History, in a real headless Chromium over real WebRTC (issue 19, "Done when").

Same recipe as test_persistence_e2e.py (loopback-only namespace, tests/e2e/e2e_server.py
with the real engine and a DATA_DIR of the test's own), the server with LIVE_SPEAKERS=true.
Chromium's fake microphone plays a conversation built here from tests/data: the LJ Speech
reader, JFK, the reader again, 1 s of silence between them (one voice per final; the same
clips as tests/integration/test_live_speakers.py). Each final the page shows is mapped to
the clip it transcribes by its words (the labels are read from the text the page shows,
"Speaker 1: ...", not from a CSS class).

Checked, in order, on one page:
- the reader's finals show "Speaker 1", JFK's "Speaker 2", the reader's later final "Speaker 1" again;
- Rename speaker (the Live tab's control) names "Speaker 2" `<b>Jo</b>`: the panel shows
  that text, escaped (no <b> element), the other labels unchanged;
- a reload of the tab shows the same labels and name;
- New transcript sets it aside: the History's viewer shows the same lines with the labels and
  the name; its own Rename speaker names "Speaker 1" there too.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from test_page_e2e import (  # noqa: F401 - fixtures used by name
    INSIDE,
    LEAD_SILENCE_S,
    RECORD,
    TAIL_SILENCE_S,
    _finals,
    _get_json,
    _grant_and_record,
    _launch,
    _partial,
    _status,
    _wait,
    playwright_instance,
    run_in_namespace,
)
from test_persistence_e2e import _open, _reload, serve

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.browser

#: The conversation: (voice, clip name) in order, PAUSE_S of silence between them.
TURNS = (("reader", "ljspeech_coqui__LJ001-0001"), ("jfk", "openai_whisper__jfk"), ("reader", "ljspeech_coqui__LJ001-0003"))
PAUSE_S = 1.0
#: The label each voice gets: the first voice heard is Speaker 1.
EXPECTED = {"reader": "Speaker 1", "jfk": "Speaker 2"}
NAME = "<b>Jo</b>"  # HTML characters: shown as text, never as markup
HISTORY_NAME = "Ann & Bo"


@pytest.mark.skipif(INSIDE, reason="the wrapper itself (runs inside the namespace's pytest)")
def test_speakers_in_browser():
    run_in_namespace(Path(__file__), "TestSpeakers")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, LIVE_SPEAKERS="true")


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    """(the fake microphone's WAV, its length in seconds, [(voice, reference text)] per turn)."""
    import soundfile

    from evaluation import clips, read_audio
    from tests.datasets import TEST_DATA

    by_name = {c.name: c for c in clips(kind="speech", lang="en", base=TEST_DATA)}
    missing = [name for _, name in TURNS if name not in by_name]
    if missing:
        pytest.skip(f"{missing} not in tests/data")
    rate = 16000
    parts = [np.zeros(int(LEAD_SILENCE_S * rate), np.float32)]
    for i, (_, name) in enumerate(TURNS):
        parts.append(read_audio(by_name[name].path))
        parts.append(np.zeros(int((PAUSE_S if i < len(TURNS) - 1 else TAIL_SILENCE_S) * rate), np.float32))
    audio = np.concatenate(parts)
    path = tmp_path_factory.mktemp("mic") / "conversation.wav"
    soundfile.write(str(path), audio, rate, subtype="PCM_16")
    return path, len(audio) / rate, [(voice, by_name[name].text) for voice, name in TURNS]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _turns_of(texts: list[str], references: list[tuple[str, str]]) -> list[int | None]:
    """Each final's turn: the one whose reference shares the most words with it, on a tie
    the one nearest the previous final's (finals come in order; "Ask not!" shares "not"
    with the reader's first sentence too). None: no reference shares a word."""
    out: list[int | None] = []
    previous = 0
    for text in texts:
        said = set(_words(text))
        shared = [len(said & set(_words(ref))) for _, ref in references]
        best = max(range(len(shared)), key=lambda t: (shared[t], -abs(t - previous)))
        out.append(best if shared[best] else None)
        previous = best if shared[best] else previous
    return out


def _labelled(lines: list[str]) -> list[tuple[str, str]]:
    """(label or name, text) of lines shown as "Speaker 1: text" (the label's colon is the
    line's first one; the panel writes no space between the label and the text)."""
    out = []
    for line in lines:
        m = re.match(r"^(.*?):\s*(.*)$", line.strip())
        assert m, f"a final without a speaker: {line!r}"
        out.append((m.group(1), m.group(2)))
    return out


def _panel(page) -> list[tuple[str, str]]:
    return _labelled([line for line in _finals(page).splitlines() if line.strip()])


def _history(page) -> list[tuple[str, str]]:
    """The History viewer's lines, `[m:ss] Speaker: text`, without their times."""
    lines = [line for line in page.input_value("#history-text textarea").splitlines() if line.strip()]
    return _labelled([re.sub(r"^\[[\d:]+\]\s*", "", line) for line in lines])


def _shows(read, expected: list[tuple[str, str]], timeout: float, what: str) -> None:
    """Wait until `read()` gives `expected`; at the deadline fail showing what it gives."""
    try:
        _wait(lambda: read() == expected, timeout, what)
    except AssertionError:
        assert read() == expected, f"timed out after {timeout:.0f} s waiting for {what}"


def _rename(page, prefix: str, label: str, name: str) -> None:
    """Name `label` through the `{prefix}` Rename speaker control (web/speaker_names.py)."""
    pick = page.locator(f"#{prefix}-speaker-pick input")
    pick.click()
    page.get_by_role("option", name=label, exact=True).click()
    _wait(lambda: pick.input_value() == label, 10, f"{label} chosen in the {prefix} control")
    page.fill(f"#{prefix}-speaker-name textarea, #{prefix}-speaker-name input", name)
    page.click(f"#{prefix}-speaker-rename")


class TestSpeakers:
    """Run by `test_speakers_in_browser` inside the loopback namespace."""

    def test_speakers_live_renamed_reloaded_and_in_history(self, server, conversation, playwright_instance):  # noqa: F811
        wav, seconds, references = conversation
        browser = _launch(playwright_instance, wav)
        try:
            page = _open(browser.new_context(viewport={"width": 1280, "height": 900}), server.base)
            _grant_and_record(page)
            started = time.monotonic()
            _wait(lambda: "live" in _status(page), 60, "the stream to start")

            def heard_all() -> bool:
                turns = _turns_of([text for _, text in _panel(page)], references)
                return time.monotonic() - started > seconds and len(TURNS) - 1 in turns and not _partial(page)

            _wait(heard_all, 180, "the last turn's final", interval=0.5)
            page.click(RECORD)
            _wait(lambda: _get_json(server.base + "/e2e/stats")["active"] == 0, 90, "the stream to end")
            _wait(lambda: "stopped" in _status(page), 60, "'stopped' in the status line")
            shown = _panel(page)
            print("finals:\n" + "\n".join(f"  {label}: {text}" for label, text in shown))

            # Each final is one turn's: the reader is Speaker 1, before and after JFK (Speaker 2).
            turns = _turns_of([text for _, text in shown], references)
            assert None not in turns, f"a final matches no turn: {list(zip(turns, shown))}"
            assert set(turns) == set(range(len(TURNS))), f"a turn has no final: {list(zip(turns, shown))}"
            assert turns == sorted(turns), f"finals out of order: {list(zip(turns, shown))}"
            got = [(TURNS[t][0], label) for t, (label, _) in zip(turns, shown)]
            assert got == [(voice, EXPECTED[voice]) for voice, _ in got], got

            # Rename Speaker 2 through the Live tab's control: the panel shows the name as text.
            _wait(lambda: page.locator("#live-speakers").is_visible(), 30, "the Rename speaker control")
            _rename(page, "live", "Speaker 2", NAME)
            renamed = [(NAME if label == "Speaker 2" else label, text) for label, text in shown]
            _shows(lambda: _panel(page), renamed, 30, f"{NAME!r} in the panel")
            assert page.locator("#finals b").count() == 0, "the name was shown as markup"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "speakers-renamed.png"), full_page=True)

            # A reload of the tab: the same labels and name.
            _reload(page)
            _shows(lambda: _panel(page), renamed, 60, "the labels and the name after the reload")
            assert page.locator("#finals b").count() == 0
            _wait(lambda: page.locator("#live-speakers").is_visible(), 30, "the Rename speaker control after the reload")

            # New transcript: the History's viewer shows the same lines, labels and name.
            page.click("#new-transcript")
            _wait(lambda: _finals(page) == "", 30, "an empty live transcript")
            page.get_by_role("tab", name="History").click()
            item = page.locator("#history-list label")
            _wait(lambda: item.count() == 1, 30, "the transcript in the History list")
            item.click()
            _shows(lambda: _history(page), renamed, 30, "the labels and the name in the History's viewer")

            # The History's Rename speaker names Speaker 1 in the stored transcript.
            _rename(page, "history", "Speaker 1", HISTORY_NAME)
            both = [(HISTORY_NAME if label == "Speaker 1" else label, text) for label, text in renamed]
            _shows(lambda: _history(page), both, 30, f"{HISTORY_NAME!r} in the History's viewer")
            page.screenshot(path=str(ARTIFACTS / "speakers-history.png"), full_page=True)
        finally:
            browser.close()


if not INSIDE:
    del TestSpeakers  # collected only inside the namespace (see test_speakers_in_browser)
