"""Collapse detection on synthetic curves whose change point is known by construction."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
import ruptures as rpt

from sdprobe.thresholds import Criteria, detect
from sdprobe.thresholds.stepfit import crossing, level_weights, step_fit

GRID = np.round(np.arange(0.0, 0.9001, 0.05), 4)  # a typical coarse sweep grid
FINE = np.round(np.arange(0.0, 0.9001, 0.01), 4)


def sigmoid(center: float, width: float, top: float = 0.95, bottom: float = 0.05):
    """Success probability falling from ``top`` to ``bottom``; it crosses their midpoint at ``center``."""
    return lambda s: bottom + (top - bottom) / (1 + np.exp((s - center) / width))


def bernoulli_table(prob, levels, n_seeds: int = 32, seed: int = 0, column: str = "acc",
                    paired: bool = True) -> pd.DataFrame:
    """One 0/1 row per (level, seed), like per-image oracle accuracy. ``paired``: each seed keeps one uniform draw
    along the sweep (its rows are correlated, as the images of one seed are); else every row draws afresh."""
    rng = np.random.default_rng(seed)
    levels = np.asarray(levels, dtype=float)
    u = rng.random(n_seeds)[None, :] if paired else rng.random((len(levels), n_seeds))  # (1 or L, S)
    values = (u < np.asarray([prob(lv) for lv in levels])[:, None]).astype(float)  # (L, S)
    return pd.DataFrame({"level": np.repeat(levels, n_seeds), "seed": np.tile(np.arange(n_seeds), len(levels)),
                         column: values.ravel()})


def gaussian_table(mean, levels, n_seeds: int = 32, noise: float = 0.1, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(lv, s, mean(lv) + noise * rng.standard_normal()) for lv in levels for s in range(n_seeds)]
    return pd.DataFrame(rows, columns=["level", "seed", "acc"])


# -- the vectorised step fit and crossings ---------------------------------------------------------------------------

def test_step_fit_matches_ruptures_exact_single_change_point():
    rng = np.random.default_rng(3)
    curves = rng.normal(size=(40, 17)) + np.where(np.arange(17) < rng.integers(2, 15, size=(40, 1)), 1.0, 0.0)
    brk, left, right = step_fit(curves, downward_only=False)
    for row, b, lm, rm in zip(curves, brk, left, right):
        expected = rpt.Dynp(model="l2", min_size=1, jump=1).fit(row).predict(n_bkps=1)[0]
        assert b == expected
        assert lm == pytest.approx(row[:b].mean()) and rm == pytest.approx(row[b:].mean())


def test_weighted_step_fit_counts_a_level_of_weight_w_as_w_copies():
    rng = np.random.default_rng(5)
    for _ in range(20):
        curve = rng.normal(size=9) + np.where(np.arange(9) < rng.integers(2, 8), 1.0, 0.0)
        weights = rng.integers(1, 5, size=9)
        expanded = np.repeat(curve, weights)
        b_exp = rpt.Dynp(model="l2", min_size=1, jump=1).fit(expanded).predict(n_bkps=1)[0]
        brk, left, right = step_fit(curve, downward_only=False, weights=weights.astype(float))
        assert np.cumsum(weights)[brk[0] - 1] == b_exp  # the same split point on the expanded curve
        assert left[0] == pytest.approx(expanded[:b_exp].mean()) and right[0] == pytest.approx(expanded[b_exp:].mean())
    with pytest.raises(ValueError, match="positive"):
        step_fit(np.array([1.0, 0.0, 0.0]), weights=np.array([1.0, 0.0, 1.0]))


def test_refining_one_step_of_a_two_step_curve_does_not_move_the_fit():
    """A curve that falls in two steps: a uniform grid and the same grid refined densely around the smaller step
    fit the same (larger) step, because each level weighs what it spans."""
    def curve(levels):
        return np.where(levels < 0.4, 1.0, np.where(levels < 0.7, 0.55, 0.0))  # 1 -> 0.55 at 0.4, 0.55 -> 0 at 0.7
    uniform = np.round(np.arange(0.0, 0.951, 0.05), 4)
    refined = np.unique(np.round(np.concatenate([uniform, np.arange(0.35, 0.45, 0.005)]), 4))
    picks = []
    for levels in (uniform, refined):
        brk, _, _ = step_fit(curve(levels), weights=level_weights(levels))
        picks.append(levels[brk[0]])
        assert step_fit(curve(levels), weights=level_weights(levels))[1][0] > 0.55  # the left side holds the plateau
    assert picks == [0.7, 0.7]
    unweighted = step_fit(curve(refined))[0][0]
    assert refined[unweighted] == 0.4  # counted level by level, the dense stretch pulls the step to itself


def test_step_fit_downward_only_ignores_a_larger_rise():
    curve = np.array([0.0, 0.0, 6.0, 6.0, 6.0, 6.0, 1.0, 1.0])  # the best split is the rise 0 -> 6
    assert step_fit(curve, downward_only=False)[0][0] == 2
    brk, left, right = step_fit(curve)  # the best split whose left mean exceeds its right mean: after index 5
    assert brk[0] == 6 and left[0] == pytest.approx(4.0) and right[0] == pytest.approx(1.0)
    assert step_fit(np.array([0.0, 1.0, 2.0]))[0][0] == -1  # strictly rising: no downward step at all


def test_crossing_interpolates_and_reports_missing():
    levels = np.array([0.0, 0.1, 0.2, 0.3])
    curves = np.array([[1.0, 0.8, 0.2, 0.0], [1.0, 1.0, 1.0, 1.0], [0.1, 0.0, 0.0, 0.0]])
    x, idx = crossing(curves, levels, np.array([0.5, 0.5, 0.5]))
    assert x[0] == pytest.approx(0.15) and idx[0] == 2  # 0.8 -> 0.2 crosses 0.5 halfway between 0.1 and 0.2
    assert math.isnan(x[1]) and idx[1] == -1
    assert x[2] == 0.0 and idx[2] == 0


def test_crossing_nearest_the_step_skips_an_isolated_dip():
    levels = np.arange(8) / 10
    curve = np.array([[1.0, 0.4, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])  # a dip at 0.1, the collapse at 0.5
    assert crossing(curve, levels, np.array([0.5]))[1][0] == 1  # the first crossing is the dip
    x, idx = crossing(curve, levels, np.array([0.5]), near=step_fit(curve)[0])
    assert idx[0] == 5 and x[0] == pytest.approx(0.45)


# -- kinds of curves ---------------------------------------------------------------------------------------------------

def test_sigmoid_on_coarse_grid_is_sudden_and_bracketed():
    truth = 0.437
    r = detect(bernoulli_table(sigmoid(truth, 0.01), GRID), x="level", y="acc")
    assert r.kind == "sudden" and r.collapsed
    assert r.s_lo == 0.40 and r.s_hi == 0.45
    assert abs(r.threshold - truth) < 0.025  # half a grid step
    assert r.plateau > 0.8 and r.post < 0.2 and r.drop == pytest.approx(r.plateau - r.post)
    assert r.n_boot == 1000 and r.n_seeds == 32 and r.n_levels == len(GRID)


def test_sigmoid_on_fine_grid_threshold_and_ci_cover_truth():
    truth = 0.437
    r = detect(bernoulli_table(sigmoid(truth, 0.01), FINE, n_seeds=64), x="level", y="acc")
    assert r.kind == "sudden"
    assert abs(r.threshold - truth) < 0.01
    assert r.ci_low <= truth <= r.ci_high
    assert r.ci_high - r.ci_low < 0.05  # informative, not the whole axis
    assert r.s_lo <= r.threshold <= r.s_hi and r.s_hi - r.s_lo == pytest.approx(0.01)


def test_bootstrap_interval_has_roughly_nominal_coverage():
    truth, n_rep = 0.5, 40
    covered = 0
    for rep in range(n_rep):
        table = gaussian_table(lambda s: 1.0 if s < truth else 0.0, FINE + 0.005, n_seeds=16, noise=1.0, seed=rep)
        r = detect(table, x="level", y="acc", n_boot=400, random_state=rep)
        assert r.kind == "sudden"
        covered += r.ci_low <= truth <= r.ci_high
    assert covered / n_rep >= 0.8  # nominal 0.95; a seed-only interval that ignored noise would rarely cover


def test_gradual_linear_decline_is_gradual_not_sudden():
    xs = GRID
    r = detect((xs, 1.0 - xs), floor=0.0)  # a ready curve, no noise: loses half at exactly 0.5
    assert r.kind == "gradual" and not r.collapsed
    assert r.threshold == pytest.approx(0.5) and r.s_lo == pytest.approx(0.5) and r.s_hi == pytest.approx(0.55)
    assert r.width > Criteria().max_width
    assert r.n_boot == 0 and math.isnan(r.ci_low)  # no seeds, no interval

    noisy = detect(bernoulli_table(lambda s: 0.95 - s, GRID, n_seeds=64), x="level", y="acc")
    assert noisy.kind == "gradual"
    assert 0.3 < noisy.threshold < 0.6


def test_flat_curves_are_none():
    flat = bernoulli_table(lambda s: 0.9, GRID, n_seeds=32, seed=1, paired=False)  # level means wander by noise
    r = detect(flat, x="level", y="acc")
    assert r.kind == "none" and not r.collapsed and math.isnan(r.threshold) and r.z < Criteria().min_z
    assert r.s_lo == GRID[-1] and math.isnan(r.s_hi)
    assert detect(flat, x="level", y="acc", floor=0.0).kind == "none"
    assert detect((GRID, np.full(len(GRID), 0.7))).kind == "none"


def test_small_step_is_not_a_collapse_relative_to_the_floor():
    step = lambda s: 0.9 if s < 0.5 else 0.75  # a real but small loss
    table = gaussian_table(step, GRID, noise=0.02)
    assert detect(table, x="level", y="acc", floor=0.0).kind == "none"  # 0.15 of a 0.9 range
    assert detect(table, x="level", y="acc").kind == "sudden"  # without a floor, judged against its own step


def test_lower_is_better_metric():
    truth = 0.6
    table = bernoulli_table(sigmoid(truth, 0.005, top=0.9, bottom=0.05), GRID, column="acc")
    table["unreadable"] = 1.0 - table["acc"]  # rises from 0.1 to 0.95
    r = detect(table, x="level", y="unreadable", higher_is_better=False)
    assert r.kind == "sudden" and r.s_lo == 0.55 and r.s_hi == 0.6
    assert r.plateau < 0.2 and r.post > 0.8 and r.drop > 0.6 and not r.higher_is_better  # in the metric's own units
    mirrored = detect(table, x="level", y="acc")
    assert r.threshold == pytest.approx(mirrored.threshold) and r.ci_low == pytest.approx(mirrored.ci_low)
    assert detect(table, x="level", y="unreadable", higher_is_better=True).kind == "none"  # improving, never failing


def test_nan_rows_and_unstated_attributes_are_ignored():
    table = bernoulli_table(sigmoid(0.3, 0.005), GRID, n_seeds=40)
    table.loc[table["seed"] % 2 == 1, "acc"] = np.nan  # half the prompts do not state this meaning
    r = detect(table, x="level", y="acc")
    assert r.kind == "sudden" and r.s_lo == 0.25 and r.s_hi == 0.3 and r.n_seeds == 20 and r.n_boot == 1000


def test_bootstrap_is_seeded_and_fast():
    table = bernoulli_table(sigmoid(0.437, 0.02), FINE, n_seeds=64)
    start = time.perf_counter()
    a = detect(table, x="level", y="acc", n_boot=1000, random_state=7)
    elapsed = time.perf_counter() - start
    b = detect(table, x="level", y="acc", n_boot=1000, random_state=7)
    c = detect(table, x="level", y="acc", n_boot=1000, random_state=8)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
    assert elapsed < 2.0  # 91 levels x 64 seeds x 1000 replicates, vectorised


def test_bad_input_errors_name_the_problem():
    table = bernoulli_table(sigmoid(0.4, 0.01), GRID)
    with pytest.raises(ValueError, match="'nope' is not in the table.*level, seed, acc"):
        detect(table, x="level", y="nope")
    with pytest.raises(ValueError, match="not numeric"):
        detect(table.assign(acc=table["acc"].map({0.0: "no", 1.0: "yes"})), x="level", y="acc")
    with pytest.raises(ValueError, match="2 level.*at least 3"):
        detect(table[table["level"] < 0.1], x="level", y="acc")
    with pytest.raises(ValueError, match="ci must be in"):
        detect(table, x="level", y="acc", ci=95)
    with pytest.raises(ValueError, match="min_drop"):
        Criteria(min_drop=0.0)
    with pytest.raises(ValueError, match="equal length"):
        detect(([0.0, 0.1, 0.2], [1.0, 0.0]))
