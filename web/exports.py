"""The files this app writes for download buttons: one set per tab and use, removed with the transcript.

Where: a private folder per tab inside Gradio's own cache folder (`GRADIO_TEMP_DIR`, else
`<tmp>/gradio`). Gradio 5 copies a file an event returns into that cache (a folder named by
the file's content hash) unless it is in the cache already; ours are, so Gradio serves them
where they are and no second copy is made (gradio/blocks.py, `async_move_resource_to_block_cache`).
Gradio's `delete_cache` (set in app.py: files older than an hour) covers them too.

What is kept, and until when: each (tab, use) keeps its latest set only (the live tab's
downloads, the upload tab's, the History's), written again over the previous one. A set goes
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
    names one set of buttons in it ("live", "upload", "history"). Safe from any thread.
    """

    def __init__(self, root: str | None = None) -> None:
        self._root = root  # None: Gradio's cache folder, read at the first write
        self._folders: dict[Hashable, str] = {}
        self._sets: dict[tuple[Hashable, str], _Set] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        if self._root is None:
            self._root = os.path.join(get_upload_folder(), FOLDER)
        return self._root

    def write(self, owner: Hashable, use: str, files: Iterable[tuple[str, str]], *, transcript_id: str | None = None) -> list[str]:
        """Write `files` ((name, text) pairs) as the owner's set for `use`; the paths, in order.

        The previous set of that (owner, use) is removed first; with no files, nothing is kept."""
        files = list(files)
        with self._lock:
            old = self._sets.pop((owner, use), None)
            folder = self._folder(owner) if files else None
        if old is not None:
            _remove(old.paths)
        if folder is None:
            return []
        target = self.folder(owner, use)
        paths = []
        for name, text in files:
            path = os.path.join(target, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            paths.append(path)
        with self._lock:
            stale = self._sets.get((owner, use))  # a write that raced with this one
            self._sets[(owner, use)] = _Set(transcript_id, paths)
        if stale is not None:
            _remove(p for p in stale.paths if p not in paths)
        return paths

    def forget(self, transcript_id: str) -> int:
        """The transcript was deleted or cleared: remove every set of it (all tabs). How many files."""
        with self._lock:
            keys = [k for k, s in self._sets.items() if s.transcript_id == transcript_id]
            gone = [self._sets.pop(k) for k in keys]
        paths = [p for s in gone for p in s.paths]
        _remove(paths)
        return len(paths)

    def drop(self, owner: Hashable, use: str | None = None) -> None:
        """Remove the owner's set for `use`, or (None) all its sets and its folder (its tab closed)."""
        with self._lock:
            keys = [k for k in self._sets if k[0] == owner and (use is None or k[1] == use)]
            gone = [self._sets.pop(k) for k in keys]
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
            return [p for s in self._sets.values() for p in s.paths]

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
