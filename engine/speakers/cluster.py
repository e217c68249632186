"""Grouping voice embeddings into speakers, with scikit-learn and scipy.

- Files (`cluster_windows`): agglomerative clustering (average linkage on cosine distance)
  cut at a distance threshold, so the number of speakers is found, not given; speakers
  heard for less than `min_speaker_s` join their nearest neighbour (a cough, a laugh or a
  window that straddles two voices is not a person).
- Live (`OnlineSpeakers`): each new embedding joins the nearest known speaker when close
  enough, else starts a new one; a label once given never changes.
- Names (`name_speakers`): clusters matched one-to-one to known speakers' reference
  embeddings (Hungarian assignment on cosine similarity).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering

#: Cosine distance at which two groups of 1.6 s windows count as different people
#: (chosen with `python -m bench.speakers`, BENCHMARKS.md "Speakers").
FILE_THRESHOLD = 0.40
#: A speaker heard for less than this (seconds of windows) joins its nearest neighbour.
MIN_SPEAKER_S = 3.0
#: Live: cosine similarity an utterance needs to join a known speaker.
LIVE_SIMILARITY = 0.70
#: A known speaker's reference must be at least this similar to a cluster to name it.
NAME_SIMILARITY = 0.60


def letter(index: int) -> str:
    """OpenAI's anonymous speaker labels: A, B, ... Z, then AA, AB, ..."""
    letters = string.ascii_uppercase
    return letters[index] if index < 26 else letter(index // 26 - 1) + letters[index % 26]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def cluster_windows(
    embeddings: np.ndarray, hop_s: float, threshold: float = FILE_THRESHOLD, min_speaker_s: float = MIN_SPEAKER_S
) -> np.ndarray:
    """Speaker index per window (0, 1, ... in order of first appearance)."""
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.zeros(1, dtype=int)
    labels = AgglomerativeClustering(
        n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average"
    ).fit_predict(embeddings)
    min_windows = max(1, int(round(min_speaker_s / hop_s)))
    counts = np.bincount(labels)
    big = [k for k in range(len(counts)) if counts[k] >= min_windows]
    if not big:  # nobody spoke long enough to be told apart: one speaker
        return np.zeros(n, dtype=int)
    centroids = _unit(np.stack([embeddings[labels == k].mean(axis=0) for k in big]))
    small = ~np.isin(labels, big)
    if small.any():
        nearest = np.argmax(_unit(embeddings[small]) @ centroids.T, axis=1)
        labels = labels.copy()
        labels[small] = np.asarray(big)[nearest]
    _, first = np.unique(labels, return_index=True)
    order = {label: i for i, label in enumerate(labels[np.sort(first)])}
    return np.array([order[x] for x in labels], dtype=int)


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(speakers, dim) unit-length mean embedding of each speaker index."""
    return _unit(np.stack([embeddings[labels == k].mean(axis=0) for k in range(int(labels.max()) + 1)]))


def name_speakers(
    speaker_centroids: np.ndarray,
    references: np.ndarray | None = None,
    names: list[str] | None = None,
    min_similarity: float = NAME_SIMILARITY,
) -> list[str]:
    """A label per speaker: the known name whose reference matches it (one name per
    speaker, each name once), else the next unused letter."""
    count = len(speaker_centroids)
    labels: list[str | None] = [None] * count
    if references is not None and names and count:
        similarity = _unit(speaker_centroids) @ _unit(references).T
        rows, cols = linear_sum_assignment(-similarity)
        for r, c in zip(rows, cols):
            if similarity[r, c] >= min_similarity:
                labels[r] = names[c]
    taken = set(names or [])
    letters = (x for x in (letter(i) for i in range(10_000)) if x not in taken)
    return [label if label is not None else next(letters) for label in labels]


@dataclass
class OnlineSpeakers:
    """Live labels: speaker indices given in order of first appearance, never changed."""

    similarity: float = LIVE_SIMILARITY
    _sums: list[np.ndarray] = field(default_factory=list)

    def assign(self, embedding: np.ndarray, may_create: bool = True) -> int:
        """The speaker index of one utterance's embedding: a new index for a new voice,
        unless `may_create` is False (too little audio to tell): then the nearest."""
        embedding = _unit(np.asarray(embedding, dtype=np.float32))
        if self._sums:
            scores = _unit(np.stack(self._sums)) @ embedding
            best = int(np.argmax(scores))
            if scores[best] >= self.similarity:
                self._sums[best] = self._sums[best] + embedding
                return best
            if not may_create:  # joins without moving the speaker's voice toward it
                return best
        self._sums.append(embedding.copy())
        return len(self._sums) - 1

    @property
    def count(self) -> int:
        return len(self._sums)
