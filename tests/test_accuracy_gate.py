"""The paired accuracy gate: Newcombe's interval, exact McNemar, verdicts."""

import numpy as np
import pytest

from mdnet_keras.export import accuracy_gate as gate


def paired(n, lost, gained, both_wrong=0):
    """Correctness arrays: `lost` images only the reference gets right,
    `gained` only the candidate, `both_wrong` neither."""
    ref = np.ones(n, bool)
    cand = np.ones(n, bool)
    cand[:lost] = False
    ref[lost:lost + gained] = False
    ref[lost + gained:lost + gained + both_wrong] = False
    cand[lost + gained:lost + gained + both_wrong] = False
    return ref, cand


def test_newcombe_interval_matches_the_papers_worked_example():
    # Newcombe (1998), Stat Med 17:2635, paired example a=12, b=9, c=2,
    # d=21: method 10 gives 0.0112 to 0.2954.
    low, high = gate.paired_difference_interval(12, 9, 2, 21)
    assert low == pytest.approx(0.0112, abs=1e-4)
    assert high == pytest.approx(0.2954, abs=1e-4)


def test_exact_mcnemar_values():
    assert gate.mcnemar_exact_p(0, 5) == pytest.approx(2 / 32)
    assert gate.mcnemar_exact_p(3, 3) == 1.0
    assert gate.mcnemar_exact_p(0, 0) == 1.0
    # sum_{i<=14} C(48, i) / 2**47
    assert gate.mcnemar_exact_p(34, 14) == pytest.approx(0.005515, rel=1e-3)


def test_interval_covers_the_true_drop_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    # Cell probabilities of (both right, only float, only int8, both wrong).
    probs = np.array([0.80, 0.07, 0.03, 0.10])
    true_drop = probs[1] - probs[2]
    covered = 0
    trials = 1000
    for counts in rng.multinomial(300, probs, size=trials):
        low, high = gate.paired_difference_interval(*map(int, counts))
        covered += low <= true_drop <= high
    assert 0.93 <= covered / trials <= 0.975


def test_issue_drop_on_360_images_fails():
    # float 91.39% -> int8 85.83% on 360 images, 86.7% agreement: 34 images
    # lost, 14 gained.
    ref, cand = paired(360, 34, 14, both_wrong=17)
    assert 100 * ref.mean() == pytest.approx(91.39, abs=0.01)
    assert 100 * cand.mean() == pytest.approx(85.83, abs=0.01)
    result = gate.paired_gate(ref, cand, max_drop=1.0)
    assert result["status"] == "fail"
    assert result["drop_points"] == pytest.approx(5.556, abs=1e-3)
    low, high = result["interval_points"]
    assert 1.0 < low < 5.556 < high
    assert "fell 5.56 points" in result["reason"] and "qat_epochs" in result["reason"]


@pytest.mark.parametrize("n", [360, 10000])
def test_one_image_wobble_passes(n):
    for lost, gained in ((1, 0), (0, 1)):
        result = gate.paired_gate(*paired(n, lost, gained), max_drop=1.0)
        assert result["status"] == "pass", result


def test_one_image_of_twenty_never_fails():
    # 5 points, more than allowed, but one image proves nothing.
    assert gate.paired_gate(*paired(20, 1, 0), max_drop=1.0)["status"] == "warn"


def test_drop_too_large_but_unproven_warns():
    result = gate.paired_gate(*paired(100, 2, 0), max_drop=1.0)
    assert result["status"] == "warn" and "more images" in result["reason"]
    assert result["interval_points"][0] < 1.0 < result["drop_points"]


def test_same_drop_on_many_images_fails():
    # 2 points on 10,000 images is beyond doubt.
    assert gate.paired_gate(*paired(10000, 200, 0), max_drop=1.0)["status"] == "fail"


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same images"):
        gate.paired_gate(np.ones(5, bool), np.ones(4, bool))
    assert gate.paired_gate([], [])["status"] == "warn"
