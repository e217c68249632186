"""Diarization error rate (DER): the share of reference speech time given to the wrong
speaker, missed, or labelled where nobody spoke, after the best one-to-one mapping of
hypothesis speakers to reference speakers (scipy's Hungarian assignment).

Scored on a 10 ms grid, with the usual forgiveness collar: `collar` seconds on each side
of every reference turn's edge are not scored (edges are uncertain by a few frames in
any reference). One speaker at a time (no overlap), as the bench's conversations are.
pyannote.metrics computes the same figure but brings pyannote.core and pandas along.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

STEP_S = 0.01
Turn = tuple[float, float, str]  # (start s, end s, speaker)


@dataclass(frozen=True)
class DERScore:
    der: float
    missed: float
    false_alarm: float
    confusion: float
    #: Scored reference speech (seconds).
    speech_s: float


def _grid(turns: Sequence[Turn], size: int, names: dict[str, int]) -> np.ndarray:
    """-1 where nobody speaks, else the speaker's index (a later turn wins an overlap)."""
    grid = np.full(size, -1, dtype=int)
    for start, end, speaker in turns:
        grid[max(0, round(start / STEP_S)) : max(0, round(end / STEP_S))] = names.setdefault(speaker, len(names))
    return grid


def der(reference: Sequence[Turn], hypothesis: Sequence[Turn], collar: float = 0.25) -> DERScore:
    """DER of `hypothesis` against `reference` (both lists of (start, end, speaker))."""
    end = max([e for _, e, _ in list(reference) + list(hypothesis)] + [0.0])
    size = round(end / STEP_S) + 1
    ref_names: dict[str, int] = {}
    hyp_names: dict[str, int] = {}
    ref = _grid(reference, size, ref_names)
    hyp = _grid(hypothesis, size, hyp_names)
    scored = np.ones(size, dtype=bool)
    pad = round(collar / STEP_S)
    for start, stop, _ in reference:
        for edge in (round(start / STEP_S), round(stop / STEP_S)):
            scored[max(0, edge - pad) : edge + pad] = False
    ref, hyp = ref[scored], hyp[scored]
    speech = int((ref >= 0).sum())
    missed = int(((ref >= 0) & (hyp < 0)).sum())
    false_alarm = int(((ref < 0) & (hyp >= 0)).sum())
    both = (ref >= 0) & (hyp >= 0)
    overlap = np.zeros((max(1, len(ref_names)), max(1, len(hyp_names))), dtype=int)
    np.add.at(overlap, (ref[both], hyp[both]), 1)
    rows, cols = linear_sum_assignment(-overlap)
    confusion = int(both.sum()) - int(overlap[rows, cols].sum())
    total = max(speech, 1)
    return DERScore(
        der=(missed + false_alarm + confusion) / total,
        missed=missed / total,
        false_alarm=false_alarm / total,
        confusion=confusion / total,
        speech_s=speech * STEP_S,
    )
