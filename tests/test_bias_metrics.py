"""Bias metrics on synthetic distributions with known answers, and the coverage of their intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdprobe.bias import bias_metrics, bootstrap_shares, moved_fraction, share_intervals
from sdprobe.bias.metrics import distance, uniform


def test_uniform_is_unbiased():
    m = bias_metrics(np.full(6, 50), seed=0)
    assert m["share"]["value"] == pytest.approx(1 / 6)
    assert m["mad"]["value"] == pytest.approx(0.0)
    assert m["kl"]["value"] == pytest.approx(0.0)
    assert m["kl"]["ci_low"] >= 0.0 and m["mad"]["ci_low"] >= 0.0


@pytest.mark.parametrize("k", [2, 3, 6])
def test_one_hot_has_known_values_and_degenerate_intervals(k):
    counts = np.zeros(k, dtype=int)
    counts[1] = 40
    m = bias_metrics(counts, seed=0)
    assert m["share"]["value"] == 1.0
    assert m["mad"]["value"] == pytest.approx(2 * (k - 1) / k**2)
    assert m["kl"]["value"] == pytest.approx(math.log(k))
    for r in m.values():
        assert r["ci_low"] == pytest.approx(r["value"]) and r["ci_high"] == pytest.approx(r["value"])


def test_planted_bias_values():
    counts = np.array([80, 4, 4, 4, 4, 4])  # the organism's circles: red 0.8, others 0.04
    m = bias_metrics(counts, seed=0)
    p = counts / 100
    assert m["share"]["value"] == pytest.approx(0.8)
    assert m["mad"]["value"] == pytest.approx(np.abs(p - 1 / 6).mean())
    assert m["kl"]["value"] == pytest.approx(float((p * np.log(6 * p)).sum()))
    assert m["share"]["ci_low"] < 0.8 < m["share"]["ci_high"]


def test_bootstrap_is_seeded_and_vectorised():
    a = bootstrap_shares(np.array([5, 3, 2]), n_boot=100, seed=1)
    assert a.shape == (100, 3)
    np.testing.assert_allclose(a.sum(1), 1.0)
    np.testing.assert_array_equal(a, bootstrap_shares(np.array([5, 3, 2]), n_boot=100, seed=1))


def test_share_interval_coverage():
    """95% intervals cover the true share in about 95% of repeated samples."""
    rng = np.random.default_rng(0)
    p = np.array([0.5, 0.3, 0.2])
    trials, hits = 300, 0
    for t in range(trials):
        counts = rng.multinomial(150, p)
        _, lo, hi = share_intervals(counts, n_boot=400, seed=t)
        hits += lo[0] <= p[0] <= hi[0]
    assert 0.89 <= hits / trials <= 0.99


def test_no_images_gives_nan_and_bad_input_is_rejected():
    assert math.isnan(bias_metrics(np.zeros(3, dtype=int))["kl"]["value"])
    with pytest.raises(ValueError, match="at least 2 values"):
        bias_metrics(np.array([3]))
    with pytest.raises(ValueError, match="non-negative"):
        bias_metrics(np.array([3, -1]))
    with pytest.raises(ValueError, match="confidence"):
        bias_metrics(np.array([3, 1]), confidence=1.5)


def test_moved_fraction():
    assert moved_fraction(0.8, 0.8, 1 / 6) == 0.0
    assert moved_fraction(0.8, 1 / 6, 1 / 6) == pytest.approx(1.0)
    assert moved_fraction(0.8, 0.4833333, 1 / 6) == pytest.approx(0.5, abs=1e-6)
    assert moved_fraction(0.8, 0.9, 1 / 6) < 0


def test_total_variation_counts_overshoot():
    """Swapping one majority for another is no improvement: red 0.87 -> cyan 0.94 moves TV away from uniform."""
    before = np.array([87, 3, 3, 3, 2, 2])  # red first
    swapped = np.array([1, 1, 1, 1, 2, 94])  # cyan last
    tv_before, tv_after = (bias_metrics(c, seed=0)["tv"]["value"] for c in (before, swapped))
    assert tv_before == pytest.approx(0.87 - 1 / 6) and tv_after == pytest.approx(0.94 - 1 / 6)
    assert tv_after > tv_before  # worse than doing nothing
    assert distance(before / 100, uniform(6)) == pytest.approx(tv_before)
    assert bias_metrics(np.full(6, 50), seed=0)["tv"]["value"] == pytest.approx(0.0)


def test_metrics_against_a_declared_target():
    target = np.array([0.5, 0.5, 0.0])
    m = bias_metrics(np.array([50, 50, 0]), seed=0, target=target)
    assert m["tv"]["value"] == pytest.approx(0.0) and m["kl"]["value"] == pytest.approx(0.0)
    off = bias_metrics(np.array([50, 0, 50]), seed=0, target=target)
    assert off["tv"]["value"] == pytest.approx(0.5) and off["kl"]["value"] > 1.0  # floored target share: finite
    assert math.isfinite(off["kl"]["value"])
    with pytest.raises(ValueError, match="one share per value"):
        bias_metrics(np.array([1, 2, 3]), target=np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="unknown distance"):
        distance([0.5, 0.5], [0.5, 0.5], "l2")
