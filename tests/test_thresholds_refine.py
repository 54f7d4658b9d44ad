"""Adaptive refinement: bisection brackets converge to known steps with few evaluations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sdprobe.thresholds import Criteria, detect, next_levels
from sdprobe.thresholds.refine import bisect, on_grid, split_levels, width_levels

GRID = np.round(np.arange(0.0, 0.9001, 0.05), 4)
RESOLUTION = 0.005


def evaluate(levels, steps: dict[str, float], n_seeds: int = 24, seed: int = 0) -> pd.DataFrame:
    """A stand-in for evaluating a pipeline: per-seed 0/1 accuracy that falls from ~0.9 to ~0.1 at each step.

    Noise depends on (level, seed), so re-evaluating a level gives the same rows, as a seeded sweep does."""
    rows = []
    for lv in levels:
        rng = np.random.default_rng([seed, round(lv * 1e6)])
        u = rng.random((n_seeds, len(steps)))
        for s in range(n_seeds):
            rows.append({"level": lv, "seed": s, **{m: float(u[s, j] < (0.9 if lv < step else 0.1))
                                                      for j, (m, step) in enumerate(steps.items())}})
    return pd.DataFrame(rows)


def refine(steps: dict[str, float], **kw) -> tuple[pd.DataFrame, int, int]:
    """Run the sweep's loop: evaluate the grid, then whatever next_levels proposes, until it proposes nothing."""
    table, evaluations, rounds = evaluate(GRID, steps), len(GRID), 0
    while True:
        new = next_levels(table, list(steps), RESOLUTION, **kw)
        if not new:
            return table, evaluations, rounds
        assert not set(new) & set(table["level"])  # never re-proposes a done level
        table = pd.concat([table, evaluate(new, steps)], ignore_index=True)
        evaluations += len(new)
        rounds += 1
        assert rounds < 50, "refinement did not converge"


def test_grid_rounding_and_bisection():
    assert bisect(0.40, 0.45, RESOLUTION) == [0.425]
    assert bisect(0.40, 0.405, RESOLUTION) == []  # already at the resolution
    assert bisect(0.333, 0.3385, RESOLUTION) == [0.335]  # off-grid bracket: the grid point inside it
    assert bisect(0.40, 0.45, RESOLUTION, points=4) == [0.41, 0.42, 0.43, 0.44]
    assert on_grid(0.43500000000000005, RESOLUTION) == 0.435


def test_refinement_converges_to_the_step_with_few_evaluations():
    truth = 0.4373
    table, evaluations, rounds = refine({"color": truth})
    r = detect(table, x="level", y="color", n_boot=0)
    assert r.kind == "sudden"
    assert r.s_lo <= truth <= r.s_hi and r.s_hi - r.s_lo <= RESOLUTION + 1e-12
    uniform = len(np.arange(0.0, 0.9001, RESOLUTION))  # 181 levels for the same resolution everywhere
    assert evaluations - len(GRID) == rounds == 4  # 0.05 -> 0.025 -> 0.0125 -> 0.00625 -> 0.005 (grid-rounded)
    assert evaluations <= uniform / 7


def test_several_metrics_are_refined_together():
    steps = {"color": 0.2373, "shape": 0.6618}
    table, evaluations, rounds = refine(steps)
    for metric, truth in steps.items():
        r = detect(table, x="level", y=metric, n_boot=0)
        assert r.s_lo <= truth <= r.s_hi and r.s_hi - r.s_lo <= RESOLUTION + 1e-12
    assert rounds == 4 and evaluations - len(GRID) <= 2 * rounds  # at most one bisection per metric and round
    assert evaluations <= len(np.arange(0.0, 0.9001, RESOLUTION)) / 6


def test_proposals_are_grid_points_and_reproducible():
    table = evaluate(GRID, {"color": 0.4373, "shape": 0.6618})
    first = next_levels(table, ["color", "shape"], RESOLUTION)
    assert first == next_levels(table.sample(frac=1.0, random_state=1), ["shape", "color"], RESOLUTION)
    assert first == [0.425, 0.675]  # the midpoints of (0.40, 0.45) and (0.65, 0.70)
    assert all(p == round(round(p / RESOLUTION) * RESOLUTION, 10) for p in first)


def test_flat_and_lower_is_better_metrics():
    table = evaluate(GRID, {"color": 0.4373, "shape": 2.0})  # shape never collapses inside the grid
    assert next_levels(table, "shape", RESOLUTION) == []
    table["unreadable"] = 1.0 - table["color"]
    assert next_levels(table, ["unreadable"], RESOLUTION, higher_is_better={"unreadable": False}) == [0.425]
    assert next_levels(table, ["unreadable"], RESOLUTION, higher_is_better=True) == []  # it only gets "better"
    assert next_levels(table, ["color"], RESOLUTION, kinds=()) == []


def test_refinement_errors():
    table = evaluate(GRID, {"color": 0.4373})
    with pytest.raises(ValueError, match="no entry for metric 'color'.*shape"):
        next_levels(table, ["color"], RESOLUTION, higher_is_better={"shape": True})
    with pytest.raises(ValueError, match="resolution must be at least"):
        next_levels(table, ["color"], 1e-6)
    with pytest.raises(ValueError, match="valid kinds: sudden, gradual, none"):
        next_levels(table, ["color"], RESOLUTION, kinds=("abrupt",))
    with pytest.raises(ValueError, match="'level' is not in the table"):
        next_levels(table.rename(columns={"level": "sparsity"}), ["color"], RESOLUTION)


def ramp(lo: float, hi: float, top: float = 0.9, bottom: float = 0.1):
    """Accuracy that falls linearly from ``top`` at ``lo`` to ``bottom`` at ``hi``."""
    return lambda s: top - (top - bottom) * min(max((s - lo) / (hi - lo), 0.0), 1.0)


def test_width_refinement_settles_the_kind_the_fine_grid_sees():
    curve = ramp(0.53, 0.64)  # the transition (10% to 90% of the drop) spans 0.088 < max_width = 0.1
    table_of = lambda levels: pd.DataFrame({"level": levels, "color": [curve(s) for s in levels]})  # noqa: E731
    fine = detect(table_of(np.round(np.arange(0.0, 0.9001, RESOLUTION), 4)), x="level", y="color", seed_col=None)
    coarse = detect(table_of(GRID), x="level", y="color", seed_col=None)
    assert fine.kind == "sudden"
    assert coarse.kind == "gradual" and coarse.width > 0.1  # measured between 0.05-spaced levels: too wide

    table, rounds = table_of(GRID), 0
    while new := next_levels(table, "color", RESOLUTION, seed_col=None):
        table = pd.concat([table, table_of(new)], ignore_index=True)
        rounds += 1
        assert rounds < 50
    refined = detect(table, x="level", y="color", seed_col=None)
    assert refined.kind == "sudden"
    assert abs(refined.threshold - fine.threshold) <= RESOLUTION
    assert refined.s_hold < refined.s_fail and refined.width <= 0.1
    assert table["level"].nunique() - len(GRID) <= 16  # a few levels per gap, not a fine grid


def test_width_refinement_leaves_a_settled_gradual_decline_alone():
    curve = ramp(0.2, 0.8)  # far wider than max_width wherever its edges lie
    table = pd.DataFrame({"level": GRID, "color": [curve(s) for s in GRID]})
    r = detect(table, x="level", y="color", seed_col=None)
    assert r.kind == "gradual"
    assert width_levels(r, np.sort(GRID), Criteria(), RESOLUTION) == []


def test_split_refinement_finds_the_plateau_a_fine_grid_sees():
    """Two steps 0.07 apart: on a 0.05 grid the plateau between them holds two levels, too few to show it is flat,
    so the decline reads as one gradual event; refinement samples the candidate plateau and finds both steps."""
    curve = lambda s: 0.9 if s < 0.5 else (0.5 if s < 0.57 else 0.1)  # noqa: E731
    table_of = lambda levels: pd.DataFrame({"level": levels, "color": [curve(s) for s in levels]})  # noqa: E731
    fine = detect(table_of(np.round(np.arange(0.0, 0.9001, RESOLUTION), 4)), x="level", y="color", seed_col=None,
                  floor=0.1)
    assert [e.kind for e in fine.events] == ["sudden", "sudden"]
    coarse = detect(table_of(GRID), x="level", y="color", seed_col=None, floor=0.1)
    assert [e.kind for e in coarse.events] == ["gradual"] and coarse.split_candidates
    assert split_levels(coarse, np.sort(GRID), RESOLUTION)  # the candidate plateau gets levels
    table, rounds = table_of(GRID), 0
    while new := next_levels(table, "color", RESOLUTION, seed_col=None, floor=0.1):
        table = pd.concat([table, table_of(new)], ignore_index=True)
        rounds += 1
        assert rounds < 50
    refined = detect(table, x="level", y="color", seed_col=None, floor=0.1)
    assert [e.kind for e in refined.events] == ["sudden", "sudden"]
    assert [abs(a.threshold - b.threshold) <= RESOLUTION for a, b in zip(refined.events, fine.events)] == [True, True]
    assert table["level"].nunique() - len(GRID) <= 12


@pytest.mark.parametrize("shape, expected", [
    ((0.8, 0.87), ("sudden", 2)),  # two close steps, like the organism's color
    ("accelerating", ("gradual", 1)),  # the SD2 UNet's decline
])
def test_the_default_coarse_grid_refines_to_the_calls_of_a_finer_one(shape, expected):
    """`sdprobe sweep` starts from a 0.1 grid: refined to 0.005 it must give the calls and thresholds a 0.05 grid
    gives (benchmarks/threshold_coverage.py checks 8 shapes x 20 repeats), with fewer levels."""
    from sdprobe.sweep import SweepConfig
    from sdprobe.thresholds.synthetic import accelerating, refined_table, two_steps

    curve = accelerating(0.35, 0.75) if shape == "accelerating" else two_steps(*shape)
    assert SweepConfig().step == 0.1
    answers, levels = [], []
    for coarse in (0.05, SweepConfig().step):
        grid = np.unique(np.append(np.round(np.arange(0.0, 0.9501, coarse), 4), 0.95))
        table = refined_table(curve, grid, 0.005, 32, seed=3, floor=0.0)
        r = detect(table, x="level", y="acc", floor=0.0, n_boot=0)
        answers.append((r.kind, r.n_events, [round(e.threshold, 4) for e in r.events]))
        levels.append(table["level"].nunique())
    assert answers[0] == answers[1] and answers[0][:2] == expected
    assert levels[1] <= levels[0] - 5
