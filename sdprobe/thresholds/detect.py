"""Sudden-collapse detection on a metric-vs-sparsity curve, with a seed-bootstrap confidence interval.

Definition (all quantities oriented so that higher is better; ``higher_is_better=False`` flips the sign):

* A single least-squares step (one change point, piecewise-constant model) splits the levels into a ``plateau``
  (mean before the step) and a ``post``-collapse level (mean after); ``drop = plateau - post``. Each level is
  weighted by the stretch of sparsity it stands for (``stepfit.level_weights``), so the fit describes the curve
  as a function of sparsity and does not move when refinement adds levels inside one bracket.
* ``dense`` is the metric at the lowest evaluated level, ``floor`` the worst meaningful value (e.g. chance
  accuracy, given by the caller) or, when not given, the ``post`` level the curve settles at. ``range = dense -
  floor``. (Not the worst value on the curve: with many noisy levels that minimum sinks with the noise.) Without
  a floor the size tests below are judged against the curve's own step, so a small but significant step counts;
  give the floor to require a loss that matters.
* The curve *declines* when that step is significant (``drop / se >= min_z``, with ``se`` from the seeds, or from
  the step's residuals for a curve without seeds) and the curve gets at least ``min_drop * range`` below ``dense``.
* A decline is **sudden** when the step itself is large, ``drop >= min_drop * range``, and narrow: the metric goes
  from ``band`` below the plateau to ``band`` above the post level (shares of ``drop``) within ``max_width`` of
  sparsity, measured between evaluated levels: from ``s_hold``, the last level still near the plateau, to
  ``s_fail``, the first already near the post level. That is an upper bound on the true width;
  :func:`~sdprobe.thresholds.refine.next_levels` tightens it where the kind depends on it. Otherwise it is
  **gradual**; a curve that does not decline is **none**.
* Sudden: ``threshold`` is the first sparsity at which the metric is below the midpoint of plateau and post
  (linearly interpolated). Gradual: the first sparsity at which it has lost ``min_drop`` of ``range`` (the bar).
  When noise makes the curve cross its bar more than once, the crossing nearest the fitted step is used, so a
  single unlucky level on the plateau does not move the threshold. ``s_lo``/``s_hi`` are the evaluated levels on
  either side: the last one where the meaning still holds (above the bar) and the first where it fails.
* The confidence interval resamples seeds with replacement (a cluster bootstrap: every level keeps the same
  resampled seeds), recomputes the curve and the threshold of the same kind, and takes percentiles
  (Efron 1979, "Bootstrap methods: another look at the jackknife", https://doi.org/10.1214/aos/1176344552).
  It covers seed noise given the evaluated levels; the grid adds at most ``s_hi - s_lo``.

Change points follow Truong, Oudre & Vayatis 2020 (https://arxiv.org/abs/1801.00718); see ``stepfit``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from sdprobe.thresholds.curve import LevelData, level_data
from sdprobe.thresholds.stepfit import crossing, first_index, last_index, level_weights, step_fit, take

log = logging.getLogger(__name__)

KINDS = ("sudden", "gradual", "none")
BOOT_CHUNK = 256  # bootstrap replicates per matrix product; bounds memory at BOOT_CHUNK x seeds floats


@dataclass(frozen=True)
class Criteria:
    """What counts as a sudden collapse (see the module docstring for the full definition)."""

    min_drop: float = 0.5  # the step must lose at least this share of the dense value's distance to the floor
    max_width: float = 0.1  # ... within at most this much sparsity (between evaluated levels)
    band: float = 0.25  # the transition runs from `band` x drop below the plateau to `band` x drop above the post level
    min_z: float = 4.0  # the step must exceed this many standard errors; keeps flat noisy curves at "none"

    def __post_init__(self):
        if not 0 < self.min_drop <= 1:
            raise ValueError(f"min_drop must be in (0, 1], got {self.min_drop}")
        if not self.max_width > 0:
            raise ValueError(f"max_width must be positive, got {self.max_width}")
        if not 0 <= self.band < 0.5:
            raise ValueError(f"band must be in [0, 0.5), got {self.band}")
        if not self.min_z >= 0:
            raise ValueError(f"min_z must be >= 0, got {self.min_z}")


@dataclass(frozen=True)
class CollapseResult:
    """How one metric behaves along the sparsity axis. Values are in the metric's own units and direction.

    Attributes:
        metric (str): the metric column.
        higher_is_better (bool): the direction used.
        collapsed (bool): True iff ``kind == "sudden"``.
        kind (str): "sudden", "gradual" or "none".
        threshold (float): the collapse (or bar-crossing) sparsity; NaN for "none".
        s_lo (float): last evaluated level before the threshold (the meaning holds); for "none" the last level.
        s_hi (float): first evaluated level at/after the threshold (the meaning fails); NaN for "none".
        drop (float): worsening from plateau to post level (>= 0 when a downward step exists).
        relative_drop (float): ``drop`` as a share of the dense value's distance to the floor.
        plateau (float): mean before the fitted step.
        post (float): mean after the fitted step.
        dense (float): value at the lowest level.
        floor (float): the floor used (given, or the post level; the lowest value when no step was fitted).
        width (float): ``s_fail - s_hold``; NaN without a step.
        s_hold (float): the last evaluated level near the plateau, before the step's midpoint (NaN without a step).
        s_fail (float): the first evaluated level near the post level, after the midpoint (NaN without a step).
        z (float): ``drop`` in standard errors.
        ci_low (float), ci_high (float): bootstrap percentile interval of ``threshold`` (NaN without seeds).
        ci (float): the interval's coverage, e.g. 0.95.
        n_boot (int): bootstrap replicates that produced a threshold (0 without seeds or for "none").
        n_levels (int): evaluated levels with values.
        n_seeds (int): distinct seeds (0 for a ready curve).
    """

    metric: str
    higher_is_better: bool
    collapsed: bool
    kind: str
    threshold: float
    s_lo: float
    s_hi: float
    drop: float
    relative_drop: float
    plateau: float
    post: float
    dense: float
    floor: float
    width: float
    s_hold: float
    s_fail: float
    z: float
    ci_low: float
    ci_high: float
    ci: float
    n_boot: int
    n_levels: int
    n_seeds: int

    def to_dict(self) -> dict:
        return asdict(self)


def _analyse(curves: np.ndarray, levels: np.ndarray, floor: float | None, crit: Criteria) -> dict[str, np.ndarray]:
    """All per-curve quantities of the definition for (B, L) oriented curves; every value is (B,)."""
    y = np.atleast_2d(curves)  # (B, L)
    dense = y[:, 0]
    lowest = np.nanmin(y, axis=1) if not np.isnan(y).all() else np.full(len(y), np.nan)
    brk, plateau, post = step_fit(y, weights=level_weights(levels))
    floor_b = np.full(len(y), floor, dtype=float) if floor is not None else np.where(np.isnan(post), lowest, post)
    span = dense - floor_b
    drop = plateau - post
    mid_x, mid_i = crossing(y, levels, (plateau + post) / 2, near=brk)
    idx = np.arange(y.shape[1])[None, :]  # (1, L)
    hold = last_index((y >= (plateau - crit.band * drop)[:, None]) & (idx < mid_i[:, None]) & (mid_i[:, None] >= 0))
    fail = first_index((y <= (post + crit.band * drop)[:, None]) & (idx >= mid_i[:, None]) & (mid_i[:, None] >= 0))
    bar_x, bar_i = crossing(y, levels, dense - crit.min_drop * span, near=brk)
    return {"dense": dense, "floor": floor_b, "span": span, "lowest": lowest, "brk": brk, "plateau": plateau,
            "post": post, "drop": drop, "mid_x": mid_x, "mid_i": mid_i, "bar_x": bar_x, "bar_i": bar_i,
            "hold_x": take(levels, hold), "fail_x": take(levels, fail),
            "width": take(levels, fail) - take(levels, hold)}


def _step_se(data: LevelData, curve: np.ndarray, brk: int, plateau: float, post: float) -> float:
    """Standard error of ``plateau - post`` (weighted means, see :func:`level_weights`): from the seeds when there
    are any, else from the step's residuals."""
    w = level_weights(data.levels)
    pre, after = w[:brk] / w[:brk].sum(), w[brk:] / w[brk:].sum()  # each segment's weights, summing to 1
    if data.se is not None and np.isfinite(data.se).all():
        se2 = data.se ** 2
        return float(math.sqrt((pre ** 2 * se2[:brk]).sum() + (after ** 2 * se2[brk:]).sum()))
    fitted = np.where(np.arange(len(curve)) < brk, plateau, post)
    dof = max(len(curve) - 2, 1)
    sigma = math.sqrt(float(((curve - fitted) ** 2).sum()) / dof)
    return sigma * math.sqrt(float((pre ** 2).sum() + (after ** 2).sum()))


def _bootstrap_curves(data: LevelData, sign: float, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, L) oriented curves, each from seeds resampled with replacement (the same seeds at every level)."""
    n_seeds = data.n_seeds
    out = np.empty((n_boot, len(data.levels)))
    for start in range(0, n_boot, BOOT_CHUNK):
        b = min(BOOT_CHUNK, n_boot - start)
        weights = rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=b).astype(float)  # (b, S) draw counts
        sums = weights @ data.seed_sum.T  # (b, L)
        counts = weights @ data.seed_count.T  # (b, L)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + b] = sign * np.where(counts > 0, sums / counts, np.nan)
    return out


def detect(data: pd.DataFrame | tuple[Sequence[float], Sequence[float]], x: str = "sparsity", y: str = "metric", *,
           seed_col: str | None = "seed", higher_is_better: bool = True, floor: float | None = None,
           criteria: Criteria | None = None, n_boot: int = 1000, ci: float = 0.95,
           random_state: int = 0) -> CollapseResult:
    """Decide whether a metric collapses suddenly along the sparsity axis, and where.

    Args:
        data (pandas.DataFrame | tuple): one row per image (columns ``x``, ``y``, ``seed_col``), one row per level,
            or a ready curve ``(xs, ys)``.
        x (str): sparsity column. Default: ``"sparsity"`` (sweep tables call it ``"level"``).
        y (str): metric column. Default: ``"metric"``.
        seed_col (str | None): column resampled by the bootstrap. Default: ``"seed"``.
        higher_is_better (bool): direction of the metric. Default: True.
        floor (float | None): the metric's worst meaningful value (e.g. chance accuracy), in its own units.
            Default: None, the level the curve settles at after the fitted step.
        criteria (Criteria | None): thresholds of the definition. Default: ``Criteria()``.
        n_boot (int): bootstrap replicates (0 turns the interval off). Default: 1000.
        ci (float): coverage of the percentile interval, in (0, 1). Default: 0.95.
        random_state (int): seed of the bootstrap's generator. Default: 0.

    Returns:
        CollapseResult: kind, threshold, bracket and interval (see the module docstring for definitions).

    Raises:
        ValueError: missing or non-numeric columns, fewer than 3 levels, or invalid parameters.

    Example:
        >>> r = detect(([0.0, 0.1, 0.2, 0.3, 0.4], [0.9, 0.9, 0.9, 0.1, 0.1]))  # a ready curve: no interval
        >>> r.kind, r.threshold, r.s_lo, r.s_hi
        ('sudden', 0.25, 0.2, 0.3)
        >>> detect(run.results(), x="level", y="color").ci_low  # per-seed rows: a bootstrap interval
    """
    crit = criteria or Criteria()
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    if floor is not None and not math.isfinite(floor):
        raise ValueError(f"floor must be a finite number or None, got {floor}")
    data_ = level_data(data, x, y, seed_col)
    sign = 1.0 if higher_is_better else -1.0
    curve = sign * data_.mean  # (L,) higher = better
    floor_o = None if floor is None else sign * float(floor)
    a = {k: v[0] for k, v in _analyse(curve[None, :], data_.levels, floor_o, crit).items()}

    has_step = a["brk"] > 0 and a["drop"] > 0
    z = 0.0
    if has_step:
        se = _step_se(data_, curve, int(a["brk"]), a["plateau"], a["post"])
        z = float(a["drop"] / se) if se > 0 else math.inf
    declines = bool(has_step and a["span"] > 0 and z >= crit.min_z
                    and a["lowest"] <= a["dense"] - crit.min_drop * a["span"])
    sudden = bool(declines and a["drop"] >= crit.min_drop * a["span"] and a["width"] <= crit.max_width)
    kind = "sudden" if sudden else "gradual" if declines else "none"
    levels = data_.levels

    if kind == "none":
        threshold, s_lo, s_hi = math.nan, float(levels[-1]), math.nan
    else:
        key = "mid" if kind == "sudden" else "bar"
        threshold, i = float(a[f"{key}_x"]), int(a[f"{key}_i"])
        s_lo, s_hi = (float(levels[i - 1]) if i > 0 else math.nan), float(levels[i])

    ci_low = ci_high = math.nan
    n_valid = 0
    if kind != "none" and n_boot > 0 and data_.per_seed and data_.n_seeds >= 2:
        rng = np.random.default_rng(random_state)
        boot = _analyse(_bootstrap_curves(data_, sign, n_boot, rng), levels, floor_o, crit)
        thresholds = boot["mid_x" if kind == "sudden" else "bar_x"]
        n_valid = int(np.isfinite(thresholds).sum())
        if n_valid:
            ci_low, ci_high = (float(v) for v in np.nanpercentile(thresholds, [50 * (1 - ci), 50 * (1 + ci)]))
        if n_valid < n_boot:
            log.debug("%s: %d of %d bootstrap replicates gave no threshold", y, n_boot - n_valid, n_boot)
    elif kind != "none" and n_boot > 0:
        log.debug("%s: no per-seed rows, so no bootstrap interval", y)

    def units(v: float) -> float:  # back to the metric's own direction
        return float(sign * v)

    span = float(a["span"])
    return CollapseResult(
        metric=y, higher_is_better=bool(higher_is_better), collapsed=sudden, kind=kind, threshold=threshold,
        s_lo=s_lo, s_hi=s_hi, drop=float(a["drop"]) if has_step else math.nan,
        relative_drop=float(a["drop"] / span) if has_step and span > 0 else math.nan,
        plateau=units(a["plateau"]), post=units(a["post"]), dense=units(a["dense"]), floor=units(a["floor"]),
        width=float(a["width"]), s_hold=float(a["hold_x"]), s_fail=float(a["fail_x"]), z=z, ci_low=ci_low,
        ci_high=ci_high, ci=float(ci), n_boot=n_valid,
        n_levels=len(levels), n_seeds=data_.n_seeds,
    )
