"""The files this app writes for download buttons: one set per tab and use, removed with the transcript.

Where: a private folder per tab inside Gradio's own cache folder (`GRADIO_TEMP_DIR`, else
`<tmp>/gradio`). Gradio 5 copies a file an event returns into that cache (a folder named by
the file's content hash) unless it is in the cache already; ours are, so Gradio serves them
where they are and no second copy is made (gradio/blocks.py, `async_move_resource_to_block_cache`).
Gradio's `delete_cache` (set in app.py: files older than an hour) covers them too.

What is kept, and until when: each (tab, use) keeps its latest set (the live tab's
downloads, the upload tab's, the History's) and the one before it. The one before stays
because the page learns the new paths only when the event's answer arrives: a click on a
download button in between still points at the previous set, and its file must be there
(the browser test caught "Download canceled" on exactly that). Older sets go as a new one
is written; a write of no files (Clear, New) removes both. A set goes
when its tab closes (`drop`), when its transcript is deleted or cleared (`forget`), and at
the latest after Gradio's cache age. Nothing here is named by the client: a tab's folder
name is random.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from gradio.utils import get_upload_folder

log = logging.getLogger(__name__)

#: The folder inside Gradio's cache that holds every tab's folder.
FOLDER = "rtw-exports"


@dataclass
class _Set:
    transcript_id: str | None
    paths: list[str] = field(default_factory=list)


class ExportFiles:
    """Download files per (owner, use): `write` replaces, `forget` and `drop` remove.

    `owner` is whatever names one tab (Gradio's session hash, or an object's token); `use`
    names one set of buttons in it ("live", "upload", "history"). Each (owner, use) holds its
    latest set and the one before it (see the module's docstring). Safe from any thread.
    """

    def __init__(self, root: str | None = None) -> None:
        self._root = root  # None: Gradio's cache folder, read at the first write
        self._folders: dict[Hashable, str] = {}
        self._sets: dict[tuple[Hashable, str], _Set] = {}
        self._previous: dict[tuple[Hashable, str], _Set] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        if self._root is None:
            self._root = os.path.join(get_upload_folder(), FOLDER)
        return self._root

    def write(self, owner: Hashable, use: str, files: Iterable[tuple[str, str]], *, transcript_id: str | None = None) -> list[str]:
        """Write `files` ((name, text) pairs) as the owner's set for `use`; the paths, in order.

        The latest set becomes the previous one and the one before it is removed; with no
        files, both go and nothing is kept."""
        files = list(files)
        key = (owner, use)
        target = self.folder(owner, use) if files else None
        paths = [os.path.join(target, name) for name, _ in files] if target else []
        with self._lock:
            latest = self._sets.pop(key, None)
            gone = [s for s in (self._previous.pop(key, None),) if s is not None]
            if latest is not None:
                if paths:  # kept one write longer, less the files this write replaces in place
                    self._previous[key] = _Set(latest.transcript_id, [p for p in latest.paths if p not in paths])
                else:
                    gone.append(latest)
        _remove(p for s in gone for p in s.paths if p not in paths)
        if not paths:
            return []
        for path, (_, text) in zip(paths, files):
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        with self._lock:
            stale = self._sets.get(key)  # a write that raced with this one
            self._sets[key] = _Set(transcript_id, paths)
        if stale is not None:
            _remove(p for p in stale.paths if p not in paths)
        return paths

    def forget(self, transcript_id: str) -> int:
        """The transcript was deleted or cleared: remove every set of it (all tabs). How many files."""
        with self._lock:
            gone = [sets.pop(k) for sets in (self._sets, self._previous) for k in [k for k, s in sets.items() if s.transcript_id == transcript_id]]
        paths = [p for s in gone for p in s.paths]
        _remove(paths)
        return len(paths)

    def drop(self, owner: Hashable, use: str | None = None) -> None:
        """Remove the owner's set for `use`, or (None) all its sets and its folder (its tab closed)."""
        with self._lock:
            gone = [sets.pop(k) for sets in (self._sets, self._previous) for k in [k for k in sets if k[0] == owner and (use is None or k[1] == use)]]
            folder = self._folders.pop(owner, None) if use is None else None
        _remove(p for s in gone for p in s.paths)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def folder(self, owner: Hashable, use: str) -> str:
        """The folder that holds the owner's set for `use` (made if missing)."""
        with self._lock:
            target = os.path.join(self._folder(owner), use)
        os.makedirs(target, mode=0o700, exist_ok=True)
        return target

    def paths(self) -> list[str]:
        """Every file now kept (for tests and checks)."""
        with self._lock:
            return [p for sets in (self._sets, self._previous) for s in sets.values() for p in s.paths]

    def _folder(self, owner: Hashable) -> str:
        folder = self._folders.get(owner)
        if folder is None:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            folder = os.path.join(self.root, secrets.token_hex(8))
            os.makedirs(folder, mode=0o700)
            self._folders[owner] = folder
        return folder


def _remove(paths: Iterable[str]) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:  # Gradio's delete_cache was first
            pass
        except OSError as exc:
            log.warning("could not remove a download file: %s", exc)


#: The app's one instance: the live, upload and History tabs write through it, so a
#: History Delete reaches the upload tab's copies of the same transcript.
EXPORTS = ExportFiles()
