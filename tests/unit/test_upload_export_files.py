"""The files the page keeps on disk (issue 17, cases 2 and 6): Gradio's upload copies and our download sets.

Real files in a temp folder; the page's own use of both is checked in Chromium by
tests/e2e/test_upload_history_e2e.py.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from web.exports import ExportFiles
from web.upload_files import UploadFiles
from web.upload_tab import public_audio_error


def _files(root) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def _upload(folder, name="talk.wav", body=b"RIFF....") -> str:
    """An upload as Gradio's route leaves it: a new file renamed onto the content-hashed path."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (name + ".part")
    tmp.write_bytes(body)
    path = folder / name
    os.rename(tmp, path)
    return str(path)


# -- Gradio's upload copies ------------------------------------------------------------


def test_an_upload_stays_while_a_tab_shows_it_and_goes_with_its_last_holder(tmp_path):
    uploads = UploadFiles()
    path = _upload(tmp_path / "sha")
    uploads.hold(path, ("tab", "a"))
    uploads.hold(path, ("job", 1))
    uploads.release(("job", 1))  # the job decoded it: the tab still shows it (a second click works)
    assert os.path.exists(path)
    uploads.hold(path, ("job", 2))
    uploads.release(("job", 2))
    assert os.path.exists(path)
    uploads.release(("tab", "a"))  # the tab closed
    assert not os.path.exists(path)


def test_one_users_job_never_deletes_another_users_upload_of_the_same_file(tmp_path):
    uploads = UploadFiles()
    path = _upload(tmp_path / "sha")
    uploads.hold(path, ("tab", "a"))
    uploads.hold(path, ("tab", "b"))  # the same content: one path
    uploads.hold(path, ("job", "a1"))
    uploads.release(("job", "a1"))
    uploads.release(("tab", "a"))  # A leaves; B's file stays
    assert os.path.exists(path) and uploads.holders(path) == 1
    uploads.release(("tab", "b"))
    assert not os.path.exists(path)


def test_a_newer_upload_of_the_same_content_is_not_removed_by_the_older_holder(tmp_path):
    uploads = UploadFiles()
    path = _upload(tmp_path / "sha")
    uploads.hold(path, ("tab", "a"))
    _upload(tmp_path / "sha")  # B's upload lands on the same path before B's tab holds it
    uploads.release(("tab", "a"))
    assert os.path.exists(path)


def test_the_shared_upload_goes_once_both_tabs_that_uploaded_it_are_done(tmp_path):
    uploads = UploadFiles()
    path = _upload(tmp_path / "sha")
    uploads.hold(path, ("tab", "a"))
    _upload(tmp_path / "sha")  # B's upload replaces the file, then B's tab holds it
    uploads.hold(path, ("tab", "b"))
    uploads.release(("tab", "b"))
    assert os.path.exists(path)
    uploads.release(("tab", "a"))
    assert not os.path.exists(path)


def test_changing_or_clearing_the_file_box_lets_go_of_the_previous_upload(tmp_path):
    uploads = UploadFiles()
    first, second = _upload(tmp_path / "one", "a.wav"), _upload(tmp_path / "two", "b.wav")
    uploads.hold(first, ("tab", "a"))
    uploads.hold(second, ("tab", "a"))
    assert not os.path.exists(first) and os.path.exists(second)
    uploads.hold(None, ("tab", "a"))
    assert not os.path.exists(second)
    uploads.release(("tab", "a"))  # nothing held: no error


def test_audio_errors_name_the_file_never_its_server_path(tmp_path):
    path = str(tmp_path / "gradio" / "0123abcd" / "talk.mp3")
    for message in (f"audio file not found: {path}", f"cannot read audio file {path}: Permission denied"):
        shown = public_audio_error(ValueError(message), path)
        assert "talk.mp3" in shown and str(tmp_path) not in shown and "0123abcd" not in shown, shown


# -- download files ----------------------------------------------------------------------


def test_each_tab_and_use_keeps_its_latest_set_and_the_one_before(tmp_path):
    exports = ExportFiles(str(tmp_path))
    written = []
    for i in range(10):
        paths = exports.write("tab-a", "history", [(f"t{i}.txt", "hello"), (f"t{i}.srt", "hello")], transcript_id=f"id{i % 2}")
        assert all(os.path.exists(p) for p in paths)
        written.append(paths)
    # The page still points at the set before until the event's answer arrives: it is there.
    assert all(os.path.exists(p) for p in written[-2]) and not any(os.path.exists(p) for p in written[-3])
    exports.write("tab-a", "upload", [("talk.txt", "hello")], transcript_id="id0")
    exports.write("tab-b", "history", [("t.txt", "hello")], transcript_id="id1")
    assert len(_files(tmp_path)) == 6  # 2 + 2 + 1 for tab A, 1 for tab B
    assert exports.write("tab-a", "upload", []) == [] and len(_files(tmp_path)) == 5  # an empty transcript: no set
    assert exports.write("tab-a", "history", []) == [] and len(_files(tmp_path)) == 1  # neither the latest nor the one before


def test_a_set_written_again_under_the_same_names_is_not_removed_with_the_one_before(tmp_path):
    exports = ExportFiles(str(tmp_path))
    for _ in range(3):  # one History item opened again and again: same names each time
        paths = exports.write("tab-a", "history", [("talk.txt", "hello"), ("talk.srt", "hello")], transcript_id="x")
    assert all(os.path.exists(p) for p in paths) and sorted(_files(tmp_path)) == sorted(paths)
    exports.write("tab-a", "history", [("other.txt", "bye")], transcript_id="y")
    assert all(os.path.exists(p) for p in paths)  # now the one before, still there
    assert exports.forget("x") == 2 and [Path(p).name for p in _files(tmp_path)] == ["other.txt"]


def test_forget_removes_every_copy_of_the_transcript_in_every_tab(tmp_path):
    exports = ExportFiles(str(tmp_path))
    exports.write("tab-a", "history", [("x.txt", "x")], transcript_id="x")
    exports.write("tab-a", "upload", [("x2.txt", "x")], transcript_id="x")
    exports.write("tab-b", "history", [("x.txt", "x")], transcript_id="x")
    kept = exports.write("tab-b", "upload", [("y.txt", "y")], transcript_id="y")
    assert exports.forget("x") == 3
    assert _files(tmp_path) == kept


def test_a_closed_tab_leaves_no_folder(tmp_path):
    exports = ExportFiles(str(tmp_path))
    exports.write("tab-a", "history", [("x.txt", "x")], transcript_id="x")
    exports.write("tab-a", "upload", [("y.txt", "y")])
    exports.drop("tab-a", "history")
    assert len(_files(tmp_path)) == 1
    exports.drop("tab-a")
    assert list(tmp_path.iterdir()) == []


def test_the_live_tabs_set_goes_with_its_state(tmp_path):
    from web.live import TabState
    from web.page import _Downloads
    from streaming.events import TranscriptEvent

    exports = ExportFiles(str(tmp_path))
    tab = TabState()
    downloads = _Downloads(exports)
    assert downloads.write(tab) == (None, None, None)
    tab.transcript.add(TranscriptEvent(type="final", utterance_id=0, committed="hello there", tentative="", start_s=0.0, end_s=1.0, latency_s=0.1))
    first = downloads.write(tab)
    assert all(p and os.path.exists(p) for p in first)
    second = downloads.write(tab)
    assert len(_files(tmp_path)) == 3 and all(os.path.exists(p) for p in second)
    tab.transcript.clear()  # Clear: the set goes
    assert downloads.write(tab) == (None, None, None) and _files(tmp_path) == []
    tab.transcript.add(TranscriptEvent(type="final", utterance_id=1, committed="again", tentative="", start_s=0.0, end_s=1.0, latency_s=0.1))
    downloads.write(tab)
    del downloads
    gc.collect()  # Gradio dropped the closed tab's state
    assert list(tmp_path.iterdir()) == []
