"""Grouping voice embeddings into speakers, with scikit-learn and scipy.

- Files (`cluster_windows`): agglomerative clustering (average linkage on cosine distance)
  cut at a distance threshold, so the number of speakers is found, not given; speakers
  heard for less than `min_speaker_s` join their nearest neighbour (a cough, a laugh or a
  window that straddles two voices is not a person).
- Live (`StableSpeakers`): the stream's windows so far clustered again at each final, the
  final's cluster matched to the labels already shown; a label once given never changes.
  A final's windows get one label (`assign`) or one each (`assign_windows`: a voice change
  inside the utterance, runs under MIN_TURN_S absorbed).
- Names (`name_speakers`): clusters matched one-to-one to known speakers' reference
  embeddings (Hungarian assignment on cosine similarity).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering

#: Cosine distance at which two groups of 1.6 s windows count as different people
#: (chosen with `python -m bench.speakers`, BENCHMARKS.md "Speakers").
FILE_THRESHOLD = 0.40
#: A speaker heard for less than this (seconds of windows) joins its nearest neighbour.
MIN_SPEAKER_S = 3.0
#: Live (`StableSpeakers`): the same clustering, cut at this distance, over the stream's
#: windows so far, with speakers under LIVE_MIN_SPEAKER_S joined to their neighbour
#: (chosen with `python -m bench.speakers --live`, BENCHMARKS.md "Speakers").
LIVE_THRESHOLD = 0.35
LIVE_MIN_SPEAKER_S = 1.2
#: The same when a final's windows are labelled one by one (`assign_windows`: live with
#: word times): a voice needs longer to be a speaker of its own, since a few windows inside
#: another's utterance no longer join the utterance's main voice (count right 96 % vs 79 %
#: at 1.2 s, DER 3.3 %: `python -m bench.speakers --live`, BENCHMARKS.md "Speakers").
LIVE_SPLIT_MIN_SPEAKER_S = 2.0
#: A known speaker's reference must be at least this similar to a cluster to name it.
NAME_SIMILARITY = 0.60

T = TypeVar("T")
#: A run of one speaker's windows shorter than this (seconds) is not a turn of its own: it
#: takes a neighbouring run's speaker (files: between two runs of one speaker; inside a
#: live utterance: the longer neighbour).
MIN_TURN_S = 0.8


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
    min_windows = max(1, round(min_speaker_s / hop_s))
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


def absorb_short_runs(labels: np.ndarray, min_windows: int) -> np.ndarray:
    """Runs shorter than `min_windows` take the label of their longer neighbouring run,
    shortest first, until every run is long enough or one run is left."""
    labels = np.asarray(labels).copy()
    while True:
        runs = [(start, length) for start, length, _ in label_runs(labels)]
        if len(runs) < 2:
            return labels
        i = min(range(len(runs)), key=lambda k: runs[k][1])
        start, length = runs[i]
        if length >= min_windows:
            return labels
        neighbours = [k for k in (i - 1, i + 1) if 0 <= k < len(runs)]
        k = max(neighbours, key=lambda n: runs[n][1])
        labels[start : start + length] = labels[runs[k][0]]


def label_runs(labels: Sequence[T]) -> list[tuple[int, int, T]]:
    """(start index, length, label) of each run of equal labels."""
    runs: list[tuple[int, int, T]] = []
    for i, label in enumerate(labels):
        if runs and runs[-1][2] == label:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1, label)
        else:
            runs.append((i, 1, label))
    return runs


@dataclass
class StableSpeakers:
    """Live labels: speaker indices in order of first appearance, never changed once given.

    Each utterance's windows join every window heard so far (the last `max_windows`), which
    are clustered again as a file is (`cluster_windows`); the utterance takes its windows'
    cluster, and that cluster the label its earlier windows were shown with (clusters and
    labels matched one to one by shared windows, Hungarian assignment), or a new label
    when it has none. Earlier finals keep what they were shown; the clustering of all
    windows only decides the next ones, so a voice heard once more is recognised with
    all the evidence so far rather than by one running mean.
    """

    threshold: float = LIVE_THRESHOLD
    min_speaker_s: float = LIVE_MIN_SPEAKER_S
    hop_s: float = 0.4
    max_windows: int = 1000  # ~6.7 min of speech: re-clustering costs ~0.08 CPU-s a final at most
    _windows: list[np.ndarray] = field(default_factory=list)
    _shown: list[int] = field(default_factory=list)
    count: int = 0

    def assign(self, windows: np.ndarray) -> int:
        """The speaker index of one utterance (its windows' main voice), given its
        windows' embeddings (n, dim)."""
        return int(self._label(windows, split=False)[0])

    def assign_windows(self, windows: np.ndarray) -> np.ndarray:
        """A speaker index per window of one utterance: a voice change inside it is kept
        where each side lasts at least MIN_TURN_S (shorter runs join a neighbour)."""
        return self._label(windows, split=True)

    def _label(self, windows: np.ndarray, split: bool) -> np.ndarray:
        windows = np.atleast_2d(np.asarray(windows, dtype=np.float32))
        new = len(windows)
        self._windows.extend(windows)
        del self._windows[: -self.max_windows]
        labels = cluster_windows(np.stack(self._windows), self.hop_s, self.threshold, self.min_speaker_s)
        old, mine = labels[:-new], labels[-new:]
        if split:
            mine = absorb_short_runs(mine, max(1, round(MIN_TURN_S / self.hop_s)))
        else:
            mine = np.full(new, np.bincount(mine).argmax())
        shown = np.asarray(self._shown[-len(old):] if len(old) else [], dtype=int)
        matched: dict[int, int] = {}
        if self.count and len(old):
            overlap = np.zeros((int(labels.max()) + 1, self.count))
            np.add.at(overlap, (old, shown), 1)
            rows, cols = linear_sum_assignment(-overlap)
            matched = {int(r): int(c) for r, c in zip(rows, cols) if overlap[r, c] > 0}
        out = np.empty(new, dtype=int)
        for i, cluster in enumerate(mine):  # new voices numbered in order of appearance
            cluster = int(cluster)
            if cluster not in matched:
                matched[cluster] = self.count
                self.count += 1
            out[i] = matched[cluster]
        self._shown.extend(int(x) for x in out)
        del self._shown[: -self.max_windows]
        return out
