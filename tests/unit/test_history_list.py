"""The History tab's list: a closed tab's live transcript is found there (it was listed
nowhere until a new tab took it over), an open tab's is not. Real SQLite file."""

from __future__ import annotations

from web.history import label, listed
from web.recorder import OpenTabs
from web.store import TranscriptStore, new_id


class _Page:
    """Stands for a page's TabState (OpenTabs keeps a weak reference to it)."""


def test_a_closed_tabs_live_transcript_is_listed_and_an_open_tabs_is_not(tmp_path) -> None:
    store = TranscriptStore.open_dir(str(tmp_path))
    browser = new_id()
    try:
        a, b = new_id(), new_id()
        store.append_final(a, browser, 0, 1, "tab a speaks", tab_id="tab-a").result()
        store.append_final(b, browser, 0, 1, "tab b spoke", tab_id="tab-b").result()
        kept = new_id()
        store.append_final(kept, browser, 0, 1, "set aside", tab_id="tab-a").result()  # tab a's new one...
        store.archive(a, browser).result()  # ...after "New transcript" set the first aside
        pages = OpenTabs()
        page_a = _Page()
        pages.opened("session-a", browser, "tab-a", page_a)  # tab a is open; tab b was closed
        infos = listed(store.list_transcripts(browser, include_current=True), pages.held(browser))
        shown = {i.id: label(i) for i in infos}
        assert b in shown and "live, tab closed" in shown[b]  # what the closed tab said
        assert a in shown and "tab closed" not in shown[a]  # set aside: an ordinary history item
        assert kept not in shown  # the open tab's own live transcript
        pages.closed("session-a")
        del page_a
        assert kept in {i.id for i in listed(store.list_transcripts(browser, include_current=True), pages.held(browser))}
    finally:
        store.close()
