"""The in-process vLLM engine's recent encoder outputs, for the word aligner to reuse.

Word times need the cross-attention of the decoder's alignment heads over the encoder's
output (engine/aligner.py). vLLM 0.32 returns neither, so the aligner runs transformers'
Whisper on the same weights beside it, and its encoder pass was more than half of what
word times cost (BENCHMARKS.md, Word times). The encoder output of the window vLLM just
decoded is the same computation: the registered model (engine/whisper_bucketed_model.py)
keeps each clip's output here, keyed by its input features, and the aligner, computing
the same features for the same clip, takes it instead of encoding again.

Only where it can work: vLLM's engine core in this process (the CPU runner; a GPU's
AsyncLLM runs it in another process, where the aligner simply misses and encodes), and
only once a request has asked the engine for word times (`enable`, called by the engine's
request check), so a process without word times keeps nothing.
Bounded by bytes, oldest out first.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

#: Bytes of encoder outputs kept at most (tiny's 30 s window is 2.3 MB, large-v3's 7.7 MB):
#: enough for the windows whose words are still to be aligned (a long file's batch of 8,
#: a few live streams' finals).
MAX_BYTES = 96 * 1024 * 1024


def features_key(features: Any) -> bytes:
    """A digest of one clip's input features (a torch tensor, mel bins x frames)."""
    array = features.detach().to("cpu").float().contiguous().numpy()
    return hashlib.blake2b(array.tobytes(), digest_size=16, person=str(array.shape).encode()[:16]).digest()


class EncoderOutputs:
    """Recent encoder outputs by their input features; thread-safe (vLLM's step and the
    aligner's worker thread)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.enabled = False
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[bytes, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        #: The dtype of the features vLLM hands the model (the model's: bfloat16 with
        #: `CPU_DTYPE=bfloat16` or on a GPU); the aligner's float32 features are cast to
        #: it before their key is taken, so the two meet on one key.
        self._feature_dtype: Any = None

    def enable(self) -> None:
        """Start keeping outputs (a request asked for word times)."""
        self.enabled = True

    def clear(self) -> None:
        """Drop every kept output (benches and tests compare with and without them)."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def put(self, features: Any, output: Any) -> None:
        """Keep one clip's encoder output (a copy: vLLM may reuse its buffers)."""
        if not self.enabled:
            return
        self._feature_dtype = features.dtype
        key = features_key(features)
        kept = output.detach().to("cpu").clone()
        size = kept.numel() * kept.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.numel() * old.element_size()
            self._items[key] = kept
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.numel() * dropped.element_size()

    def get(self, features: Any) -> Any | None:
        """The encoder output of a clip with these features, or None."""
        if self._feature_dtype is not None and features.dtype != self._feature_dtype:
            features = features.to(self._feature_dtype)
        key = features_key(features)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return found

    def __len__(self) -> int:
        return len(self._items)


#: The process's one store (vLLM's in-process engine core and the aligner share it).
SHARED = EncoderOutputs()
