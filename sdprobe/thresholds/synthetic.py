"""Synthetic curves whose answer is known, for testing and benchmarking collapse detection.

Each shape is a function ``p(s)`` of sparsity, the expected metric (a success probability for accuracies). A
table samples it like a sweep does: one 0/1 row per image, one image per seed and level, each seed keeping one
uniform draw along the sweep (the images of one seed are correlated across levels, as a seeded sweep's are).

:func:`coverage_study` draws many curves with a known step at random positions, with random noise and grids,
runs detection (optionally with the sweep's refinement) and reports how often the interval covers the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from sdprobe.thresholds.detect import detect
from sdprobe.thresholds.refine import next_levels

Shape = Callable[[np.ndarray], np.ndarray]
MAX_ROUNDS = 20  # refinement rounds a synthetic sweep may take


def sigmoid(center: float, width: float, top: float = 0.95, bottom: float = 0.05) -> Shape:
    """Falls from ``top`` to ``bottom``, crossing their midpoint at ``center``; ``width`` 0 is a sharp step
    (``top`` below ``center``, ``bottom`` from it on)."""
    if width == 0:
        return lambda s: np.where(np.asarray(s) < center, top, bottom)
    return lambda s: bottom + (top - bottom) / (1 + np.exp((np.asarray(s) - center) / width))


def ramp(start: float, stop: float, top: float = 0.95, bottom: float = 0.05) -> Shape:
    """Falls linearly from ``top`` at ``start`` to ``bottom`` at ``stop``."""
    return lambda s: top - (top - bottom) * np.clip((np.asarray(s) - start) / (stop - start), 0.0, 1.0)


def accelerating(start: float, stop: float, top: float = 0.95, bottom: float = 0.05, power: float = 2.0) -> Shape:
    """Holds until ``start``, then declines ever faster, ``top - (top - bottom) ((s - start) / (stop - start))^power``,
    reaching ``bottom`` at ``stop``: how the SD2 study describes UNet magnitude pruning (gradual, from the mid-0.3s)."""
    return lambda s: top - (top - bottom) * np.clip((np.asarray(s) - start) / (stop - start), 0.0, 1.0) ** power


def two_steps(first: float, second: float, top: float = 0.95, middle: float = 0.5, bottom: float = 0.05) -> Shape:
    """Two sharp steps: ``top`` -> ``middle`` at ``first``, ``middle`` -> ``bottom`` at ``second``."""
    return lambda s: np.where(np.asarray(s) < first, top, np.where(np.asarray(s) < second, middle, bottom))


def sample_table(shape: Shape, levels: Sequence[float], n_seeds: int = 32, seed: int = 0, column: str = "acc",
                 paired: bool = True) -> pd.DataFrame:
    """One 0/1 row per (level, seed) with success probability ``shape(level)``.

    Args:
        shape (Shape): the expected curve, values in [0, 1].
        levels (Sequence[float]): the sparsities evaluated.
        n_seeds (int): images per level. Default: 32.
        seed (int): seeds the draws; a level's rows depend only on (seed, level), so re-evaluating a level gives
            the same rows, as a seeded sweep does. Default: 0.
        column (str): the metric column. Default: ``"acc"``.
        paired (bool): each seed keeps one uniform draw along the sweep; else every row draws afresh.
            Default: True.

    Returns:
        pandas.DataFrame: columns ``level``, ``seed``, ``column``.
    """
    levels = np.asarray(levels, dtype=float)
    if paired:
        u = np.random.default_rng(seed).random(n_seeds)[None, :].repeat(len(levels), 0)  # (L, S)
    else:
        u = np.stack([np.random.default_rng([seed, round(lv * 1e6)]).random(n_seeds) for lv in levels])  # (L, S)
    values = (u < shape(levels)[:, None]).astype(float)  # (L, S)
    return pd.DataFrame({"level": np.repeat(levels, n_seeds), "seed": np.tile(np.arange(n_seeds), len(levels)),
                         column: values.ravel()})


def refined_table(shape: Shape, grid: Sequence[float], resolution: float, n_seeds: int = 32, seed: int = 0,
                  floor: float | None = None) -> pd.DataFrame:
    """A sweep's table: the grid, then the levels refinement proposes until it proposes none."""
    table = sample_table(shape, grid, n_seeds, seed)
    for _ in range(MAX_ROUNDS):
        new = next_levels(table, "acc", resolution, floor=floor)
        if not new:
            break
        table = pd.concat([table, sample_table(shape, new, n_seeds, seed)], ignore_index=True)
    return table


def coverage_study(n_curves: int = 200, seed: int = 0, ci: float = 0.95, n_boot: int = 500,
                   refine_share: float = 0.5, resolution: float = 0.005) -> pd.DataFrame:
    """Detect ``n_curves`` known steps and record whether each interval covers the truth.

    Each curve: a step at a uniform position in [0.3, 0.85], sharp or a sigmoid up to 0.01 wide; plateau
    0.80-0.95 and post level 0.05-0.30 (accuracy-like, floor 0); 16, 32 or 64 seeds; a uniform grid of step 0.02
    or 0.05 with a random offset, refined to ``resolution`` for a ``refine_share`` of the curves.

    Returns:
        pandas.DataFrame: one row per curve: the truth, the design, the detected kind, threshold and interval,
        ``covered`` and ``width``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_curves):
        truth = float(rng.uniform(0.3, 0.85))
        width = float(rng.choice([0.0, rng.uniform(0.001, 0.01)]))
        top, bottom = float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.05, 0.3))
        n_seeds = int(rng.choice([16, 32, 64]))
        step = float(rng.choice([0.02, 0.05]))
        grid = np.round(np.r_[0.0, np.arange(rng.uniform(0, step), 0.95, step)], 4)
        refine = bool(rng.random() < refine_share)
        shape = sigmoid(truth, width, top, bottom)
        table = (refined_table(shape, grid, resolution, n_seeds, seed=i, floor=0.0) if refine
                 else sample_table(shape, grid, n_seeds, seed=i))
        r = detect(table, x="level", y="acc", floor=0.0, n_boot=n_boot, ci=ci, random_state=i)
        rows.append({"truth": truth, "transition": width, "n_seeds": n_seeds, "grid": step, "refined": refine,
                     "kind": r.kind, "threshold": r.threshold, "ci_low": r.ci_low, "ci_high": r.ci_high,
                     "covered": bool(r.ci_low <= truth <= r.ci_high), "width": r.ci_high - r.ci_low,
                     "n_events": r.n_events})
    return pd.DataFrame(rows)
