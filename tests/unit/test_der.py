"""evaluation/der.py: the diarization error rate the speakers bench reports."""

import pytest

from evaluation.der import der


def test_perfect_hypothesis_with_other_names_scores_zero():
    ref = [(0.0, 2.0, "alice"), (2.5, 5.0, "bob"), (5.5, 6.0, "alice")]
    hyp = [(0.0, 2.0, "B"), (2.5, 5.0, "A"), (5.5, 6.0, "B")]
    assert der(ref, hyp).der == 0.0


def test_one_label_for_two_speakers_confuses_the_shorter():
    ref = [(0.0, 6.0, "alice"), (6.0, 10.0, "bob")]
    score = der(ref, [(0.0, 10.0, "A")], collar=0.0)
    assert score.confusion == pytest.approx(0.4, abs=0.01)
    assert score.missed == 0.0 and score.false_alarm == 0.0


def test_missed_and_false_alarm_are_counted_against_reference_speech():
    ref = [(0.0, 4.0, "alice")]
    score = der(ref, [(1.0, 4.0, "A"), (6.0, 8.0, "A")], collar=0.0)
    assert score.missed == pytest.approx(0.25, abs=0.01)
    assert score.false_alarm == pytest.approx(0.5, abs=0.01)
    assert score.der == pytest.approx(0.75, abs=0.01)


def test_collar_forgives_a_boundary_off_by_less_than_it():
    ref = [(0.0, 3.0, "alice"), (3.0, 6.0, "bob")]
    hyp = [(0.0, 3.2, "A"), (3.2, 6.0, "B")]
    assert der(ref, hyp, collar=0.25).der == 0.0
    assert der(ref, hyp, collar=0.0).der > 0.0
