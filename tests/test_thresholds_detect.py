"""Collapse detection on synthetic curves whose answer is known by construction.

The shapes (steps, ramps, truncated accelerating declines, two steps, flat noise, rising metrics, set-level
metrics) come from :mod:`sdprobe.thresholds.synthetic`. Rows are sampled as a seeded sweep samples them: one image
per seed and level, each seed keeping its draw along the sweep, unless a test says ``paired=False``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sdprobe.thresholds import Criteria, detect, thresholds_table
from sdprobe.thresholds.crossing import crossing
from sdprobe.thresholds.segment import declines, segment
from sdprobe.thresholds.synthetic import (accelerating, coverage_study, ramp, refined_table, sample_table, sigmoid,
                                          two_steps)

GRID = np.round(np.arange(0.0, 0.9501, 0.05), 4)  # a typical coarse sweep grid
FINE = np.round(np.arange(0.0, 0.9001, 0.01), 4)
RESOLUTION = 0.005
REPEATS = 20


def detect_acc(table: pd.DataFrame, **kw):
    return detect(table, x="level", y="acc", **{"floor": 0.0, "n_boot": 200, **kw})


def kinds_over_repeats(shape, levels, n: int = REPEATS, **kw) -> list:
    return [detect_acc(sample_table(shape, levels, seed=rep, **kw)) for rep in range(n)]


# -- building blocks ---------------------------------------------------------------------------------------------------

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
    x, idx = crossing(curve, levels, np.array([0.5]), near=np.array([5]))
    assert idx[0] == 5 and x[0] == pytest.approx(0.45)


def test_segmentation_finds_every_step_and_merges_a_ramp():
    levels = np.round(np.arange(0.0, 0.9501, 0.05), 4)
    steps = np.where(levels < 0.5, 1.0, np.where(levels < 0.8, 0.5, 0.0))
    seg = segment(steps, levels)
    assert seg.starts.tolist() == [0, 10, 16, 20]
    assert declines(seg) == [(0, 1), (1, 2)]  # the middle segment is a plateau: two events
    line = 1.0 - levels
    seg = segment(line, levels)
    assert len(seg) > 2 and declines(seg) == [(0, len(seg) - 1)]  # a ramp cut in pieces is still one decline


# -- kinds and thresholds ----------------------------------------------------------------------------------------------

def test_sharp_step_on_a_coarse_grid_is_sudden_and_bracketed():
    truth = 0.437
    r = detect_acc(sample_table(sigmoid(truth, 0.0), GRID))
    assert r.kind == "sudden" and r.collapsed and r.n_events == 1 and r.largest
    assert (r.s_lo, r.s_hi) == (0.40, 0.45) and r.ci_low <= truth <= r.ci_high
    assert r.plateau > 0.8 and r.post < 0.2 and r.drop == pytest.approx(r.plateau - r.post)
    assert r.ci_method == "bootstrap+bracket" and r.n_seeds == 32 and r.n_levels == len(GRID)


def test_noisy_linear_ramps_are_gradual():
    """A ramp is never a cliff, however its noise falls (the earlier detector said "sudden" in ~20% of repeats)."""
    for shape in (ramp(0.2, 0.8), ramp(0.4, 0.7), ramp(0.0, 0.95)):
        results = kinds_over_repeats(shape, GRID)
        assert all(r.kind == "gradual" for r in results)
    unpaired = kinds_over_repeats(ramp(0.4, 0.7), GRID, paired=False)  # independent noise at every level
    assert sum(r.kind == "sudden" for r in unpaired) <= 1


def test_ready_ramp_threshold_is_the_half_range_crossing():
    r = detect((GRID, 1.0 - GRID), floor=0.0)  # no noise: loses half at exactly 0.5
    assert r.kind == "gradual" and r.threshold == pytest.approx(0.5)
    assert (r.s_lo, r.s_hi) == (pytest.approx(0.5), pytest.approx(0.55)) and r.width > Criteria().max_width
    assert r.ci_method == "bracket" and (r.ci_low, r.ci_high) == (r.s_lo, r.s_hi)
    assert "the interval is the bracket" in r.notes


@pytest.mark.parametrize("resolution", [0.025, None])
def test_truncated_accelerating_decline_is_gradual_and_its_threshold_does_not_slide(resolution):
    """The SD2 study's UNet curve: holds until the mid-0.3s, then declines ever faster. Cut the sweep at several
    ends: always gradual, and the threshold moves by at most one resolution step between cuts that reach it."""
    shape = accelerating(0.35, 0.75)  # loses half the range at 0.633
    thresholds = []
    for stop in (0.65, 0.7, 0.75, 0.8, 0.9):
        if resolution is None:  # a coarse grid refined as a sweep refines it
            levels = np.round(np.arange(0.0, stop + 1e-9, 0.05), 4)
            table = refined_table(shape, levels, RESOLUTION, seed=3, floor=0.0)
        else:
            table = sample_table(shape, np.round(np.arange(0.0, stop + 1e-9, resolution), 4), seed=3)
        r = detect_acc(table)
        assert r.kind == "gradual" and r.n_events == 1, (stop, r.kind, r.n_events)
        thresholds.append(r.threshold)
    step = resolution or RESOLUTION
    assert np.nanmax(thresholds) - np.nanmin(thresholds) <= step + 1e-9, thresholds
    assert abs(np.nanmedian(thresholds) - 0.633) < 0.03


def test_truncated_decline_before_its_bar_has_no_threshold_yet():
    levels = np.round(np.arange(0.0, 0.6001, 0.025), 4)  # accelerating(0.3, 0.8) has lost 0.36 of its range at 0.6
    r = detect((levels, accelerating(0.3, 0.8)(levels)), floor=0.05)
    assert r.kind == "gradual" and r.truncated and math.isnan(r.threshold) and r.s_lo == 0.6
    assert "has not yet lost 0.5 of the range" in r.notes


def test_two_steps_are_two_events_each_with_its_own_interval():
    results = kinds_over_repeats(two_steps(0.5, 0.8), GRID)
    assert sum(r.n_events == 2 for r in results) >= REPEATS - 1
    for r in results:
        if r.n_events != 2:
            continue
        first, second = r.events
        assert first.kind == second.kind == "sudden"
        assert first.ci_low <= 0.5 <= first.ci_high and second.ci_low <= 0.8 <= second.ci_high
        assert first.ci_high < second.ci_low  # no interval spans both steps
        assert sum(e.largest for e in r.events) == 1
    ready = pd.DataFrame({"level": GRID, "acc": two_steps(0.5, 0.8)(GRID)})
    table = thresholds_table(ready, ["acc"], {"acc": True}, floors={"acc": 0.0})
    assert table["event"].tolist() == [1, 2] and table["largest"].sum() == 1


def test_flat_noisy_curves_are_none():
    for rep in range(REPEATS):
        flat = sample_table(lambda s: np.full(len(s), 0.9), GRID, seed=rep, paired=False)
        assert detect_acc(flat).kind == "none"
        r = detect_acc(flat, floor=None)  # no floor: the scale is the curve's own noise, still no event
        assert r.kind == "none" and r.floor_source == "curve" and math.isnan(r.threshold)
    assert detect((GRID, np.full(len(GRID), 0.7)), floor=0.0).kind == "none"


def test_small_step_is_not_an_event_on_the_absolute_scale():
    step = sample_table(lambda s: np.where(s < 0.5, 0.9, 0.75), GRID, n_seeds=256)  # a real but small loss
    assert detect_acc(step).kind == "none"  # 0.15 of a 0.9 range
    assert detect_acc(step, floor=None).kind == "sudden"  # judged against its own step, with a note saying so
    assert "no floor given" in detect_acc(step, floor=None).notes


def test_lower_is_better_metric_mirrors_higher_is_better():
    table = sample_table(sigmoid(0.6, 0.0, top=0.9, bottom=0.05), GRID)
    table["unreadable"] = 1.0 - table["acc"]  # rises from 0.1 to 0.95
    r = detect(table, x="level", y="unreadable", higher_is_better=False, floor=1.0)
    mirrored = detect_acc(table)
    assert r.kind == "sudden" and (r.s_lo, r.s_hi) == (0.55, 0.6)
    assert r.plateau < 0.2 and r.post > 0.8 and not r.higher_is_better  # in the metric's own units
    assert r.threshold == pytest.approx(mirrored.threshold) and r.ci_low == pytest.approx(mirrored.ci_low)


def test_a_metric_that_rises_gets_a_warning_and_a_hint(caplog):
    table = sample_table(sigmoid(0.6, 0.0, top=0.9, bottom=0.05), GRID)
    table["unreadable"] = 1.0 - table["acc"]
    with caplog.at_level("WARNING"):
        r = detect(table, x="level", y="unreadable")  # the direction was forgotten
    assert r.kind == "none" and "improves along the sweep" in r.notes and "lower" in r.notes
    assert "improves along the sweep" in caplog.text


def test_nan_rows_are_ignored():
    table = sample_table(sigmoid(0.3, 0.0), GRID, n_seeds=40)
    table.loc[table["seed"] % 2 == 1, "acc"] = np.nan  # half the prompts do not state this meaning
    r = detect_acc(table)
    assert r.kind == "sudden" and (r.s_lo, r.s_hi) == (0.25, 0.3) and r.n_seeds == 20


# -- the dense reference -----------------------------------------------------------------------------------------------

def test_windowed_sweep_is_judged_against_the_dense_model():
    shape = sigmoid(0.756, 0.0)
    full = detect_acc(sample_table(shape, GRID))
    window = np.round(np.arange(0.70, 0.9001, 0.01), 4)
    without = detect_acc(sample_table(shape, window))
    assert "no level 0" in without.notes
    with_dense = detect_acc(sample_table(shape, np.r_[0.0, window]))  # what sweeps now always evaluate
    assert with_dense.kind == full.kind == "sudden" and abs(with_dense.threshold - full.threshold) < 0.05
    given = detect_acc(sample_table(shape, window), dense=0.95)
    assert given.kind == "sudden" and "no level 0" not in given.notes


# -- intervals ---------------------------------------------------------------------------------------------------------

def test_interval_accounts_for_the_grid():
    """A true step at 0.70 on a 0.05 grid: the step may lie anywhere in its bracket, so the interval covers it
    (the earlier interval, from seed noise alone, was ~0.009 wide and covered 0.70 in 0 of 40 repeats)."""
    covered = 0
    for rep in range(REPEATS):
        r = detect_acc(sample_table(sigmoid(0.70, 0.0), GRID + 0.0, seed=rep))
        covered += r.ci_low <= 0.70 <= r.ci_high
        assert r.ci_high - r.ci_low <= 0.1 + 1e-9  # at most two brackets
    assert covered == REPEATS


def test_coverage_of_200_known_steps():
    """200 steps at random positions, sharpness, noise and grid (half refined): the 95% interval covers the truth
    at least 90% of the time and is about one bracket wide (benchmarks/threshold_coverage.py prints the figures)."""
    study = coverage_study(n_curves=200, seed=0)
    assert study["covered"].mean() >= 0.9
    assert (study["kind"] == "sudden").mean() >= 0.9
    refined, coarse = study[study["refined"]], study[~study["refined"]]
    assert refined["width"].median() <= 3 * RESOLUTION  # a refined bracket or two, not the coarse grid
    assert coarse["width"].median() <= coarse["grid"].median() + 1e-9  # one grid step


def test_interval_is_seeded():
    table = sample_table(sigmoid(0.437, 0.02), FINE, n_seeds=64)
    a, b, c = (detect_acc(table, n_boot=500, random_state=s) for s in (7, 7, 8))
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.n_boot == 500


# -- set-level metrics and log scale -----------------------------------------------------------------------------------

def fid_curve(levels, center=0.6, dense=18.0, collapsed=300.0, width=0.01):
    """FID rising from ``dense`` to ``collapsed`` (log-linearly across the transition): log-midpoint at ``center``."""
    t = 1 / (1 + np.exp(-(np.asarray(levels) - center) / width))
    return np.exp(np.log(dense) + (np.log(collapsed) - np.log(dense)) * t)


def test_set_level_metric_with_standard_errors_gets_an_interval():
    levels = np.round(np.arange(0.0, 0.9001, 0.025), 4)
    fid = fid_curve(levels)
    table = pd.DataFrame({"level": levels, "fid": fid, "fid_se": 0.05 * fid})
    r = detect(table, x="level", y="fid", higher_is_better=False, scale="log", seed_col=None)
    assert r.kind == "sudden" and r.ci_method == "normal+bracket"
    assert r.ci_low <= 0.6 <= r.ci_high and r.ci_high - r.ci_low < 0.1
    assert abs(r.threshold - 0.6) < 0.0125  # the log-midpoint, within half a grid step


def test_fid_on_a_linear_scale_lands_late_and_the_log_scale_is_right():
    levels = np.round(np.arange(0.0, 0.9001, 0.025), 4)
    table = pd.DataFrame({"level": levels, "fid": fid_curve(levels, width=0.03)})
    log_scale = detect(table, x="level", y="fid", higher_is_better=False, scale="log", seed_col=None)
    linear = detect(table, x="level", y="fid", higher_is_better=False, seed_col=None)
    assert abs(log_scale.threshold - 0.6) < 0.0125
    assert linear.threshold > log_scale.threshold + 0.0125  # the unbounded tail pulls the midpoint late


def test_one_row_per_level_without_errors_says_the_interval_is_the_bracket():
    r = detect(pd.DataFrame({"level": GRID, "acc": sigmoid(0.437, 0.0)(GRID)}), x="level", y="acc", floor=0.0)
    assert r.ci_method == "bracket" and (r.ci_low, r.ci_high) == (0.40, 0.45) and "bracket" in r.notes


def test_fid_copied_onto_image_rows_is_a_per_level_curve_not_a_zero_width_interval():
    levels = np.round(np.arange(0.0, 0.9001, 0.05), 4)
    rows = pd.DataFrame({"level": np.repeat(levels, 4), "seed": np.tile(range(4), len(levels)),
                         "fid": np.repeat(fid_curve(levels), 4)})
    r = detect(rows, x="level", y="fid", higher_is_better=False, scale="log")
    assert r.kind == "sudden" and r.ci_high - r.ci_low >= 0.05 - 1e-9  # no seed noise: at least the bracket


# -- bad input ---------------------------------------------------------------------------------------------------------

def test_bad_input_errors_name_the_problem():
    table = sample_table(sigmoid(0.4, 0.01), GRID)
    with pytest.raises(ValueError, match="'nope' is not in the table.*level, seed, acc"):
        detect(table, x="level", y="nope")
    with pytest.raises(ValueError, match="not numeric"):
        detect(table.assign(acc=table["acc"].map({0.0: "no", 1.0: "yes"})), x="level", y="acc")
    with pytest.raises(ValueError, match="2 level.*at least 3"):
        detect(table[table["level"] < 0.1], x="level", y="acc")
    with pytest.raises(ValueError, match="ci must be in"):
        detect(table, x="level", y="acc", ci=95)
    with pytest.raises(ValueError, match="min_event"):
        Criteria(min_event=0.0)
    with pytest.raises(ValueError, match="equal length"):
        detect(([0.0, 0.1, 0.2], [1.0, 0.0]))
    with pytest.raises(ValueError, match="no logarithm"):
        detect((GRID, 0.5 - GRID), scale="log")
    with pytest.raises(ValueError, match="unknown scale"):
        detect((GRID, 1.0 - GRID), scale="sqrt")
    with pytest.raises(ValueError, match="standard error column 'fid_se'"):
        detect(pd.DataFrame({"level": GRID, "fid": 1.0 + GRID, "fid_se": -1.0}), x="level", y="fid")
