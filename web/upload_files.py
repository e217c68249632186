"""Who still needs a file of Gradio's upload cache: the page showing it, the job decoding it.

Gradio 5 stores an upload at `<cache>/<sha256 of its content>/<name>` (gradio/routes.py,
`upload_file`, an `os.rename` onto that path): two people who upload the same recording
get one path. Deleting it after one job decoded it failed the other person's job, and the
same person's second Transcribe, since the File box still holds the path.

So the file is removed when its last holder lets go: a tab holds the path its File box
shows (until the box changes, is cleared, or the tab closes), a job holds it while it
decodes. The last holder to let go removes the file only if it is still the very file the
latest holder found (same inode): otherwise an upload of the same content has since renamed
a new file onto the path, and that upload's tab is about to hold it. Gradio's `delete_cache` (app.py) is
the backstop for anything nobody held (files older than an hour).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class _Held:
    identity: tuple[int, int] | None  # (st_dev, st_ino) when last held
    holders: set[Hashable] = field(default_factory=set)


class UploadFiles:
    """Hold and release paths of Gradio's upload cache; a file goes with its last holder."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._by_holder: dict[Hashable, str] = {}
        self._lock = threading.Lock()

    def hold(self, path: str | None, holder: Hashable) -> None:
        """`holder` now needs `path` (None: nothing); what it held before is released."""
        path = os.path.abspath(path) if path else None
        with self._lock:
            previous = self._by_holder.get(holder)
            if previous == path:
                return
            if path is None:
                self._by_holder.pop(holder, None)
            else:
                held = self._held.setdefault(path, _Held(None))
                held.identity = _identity(path)  # the file as the latest holder found it
                held.holders.add(holder)
                self._by_holder[holder] = path
        if previous is not None:
            self._let_go(previous, holder)

    def release(self, holder: Hashable) -> None:
        """`holder` needs nothing any more (its job ended, its tab closed)."""
        with self._lock:
            path = self._by_holder.pop(holder, None)
        if path is not None:
            self._let_go(path, holder)

    def holders(self, path: str) -> int:
        with self._lock:
            held = self._held.get(os.path.abspath(path))
            return len(held.holders) if held else 0

    def _let_go(self, path: str, holder: Hashable) -> None:
        with self._lock:
            held = self._held.get(path)
            if held is None:
                return
            held.holders.discard(holder)
            if held.holders:
                return
            del self._held[path]
            if held.identity is None or _identity(path) != held.identity:
                return  # gone already, or a newer upload of the same content: not ours
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove an upload: %s", exc)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


#: The app's one instance (the page's upload tab; Gradio's API calls of it included).
UPLOADS = UploadFiles()
