import numpy as np
import pytest

from deploykit.errors import DeployKitError

from deploykit.parity import Tolerances, compare_logits


def logits(seed=0, n=6, classes=20):
    return np.random.default_rng(seed).standard_normal((n, classes)).astype(np.float32)


def test_identical_outputs_pass():
    a = logits()
    report = compare_logits(a, a.copy())
    assert report.passed and report.max_abs_error == 0 and report.top1_agreement == 1 and report.top5_agreement == 1
    assert report.min_cosine == pytest.approx(1.0)


def test_small_noise_passes_large_noise_fails():
    a = logits()
    rng = np.random.default_rng(1)
    assert compare_logits(a, a + 1e-6 * rng.standard_normal(a.shape)).passed
    report = compare_logits(a, a + 0.5 * rng.standard_normal(a.shape))
    assert not report.passed and any("relative error" in f for f in report.failures)


def test_swapped_top1_is_a_disagreement():
    a = logits()
    a[0, 3], a[0, 7] = 10.0, 9.0
    b = a.copy()
    b[0, 3], b[0, 7] = 9.0, 10.0
    report = compare_logits(a, b, Tolerances(min_cosine=0.0))
    assert report.top1_agreement == pytest.approx(5 / 6) and report.near_ties == 0
    assert "top-1 agreement 83.3% < 100.0%" in report.failures


def test_near_tie_within_tolerance_is_not_a_disagreement():
    a = logits()
    top, second = np.argsort(-a[0])[:2]
    a[0, second] = a[0, top] - 1e-7
    b = a.copy()
    b[0, second] += 2e-7  # flips the argmax by less than the allowed error
    report = compare_logits(a, b)
    assert report.passed and report.near_ties == 1 and report.top1_agreement == 1


def test_shape_mismatch_is_rejected():
    with pytest.raises(DeployKitError, match="outputs of different shapes"):
        compare_logits(logits(classes=10), logits(classes=11))
