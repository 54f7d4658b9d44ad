"""Adaptive refinement: which sparsities a sweep should evaluate next to pin down each metric's threshold.

Each round bisects the bracket ``(s_lo, s_hi)`` of every event of every metric that is wider than the resolution; the sweep evaluates the
proposals and asks again, until no bracket is wider than the resolution. Because ``s_lo`` and ``s_hi`` are
neighbouring evaluated levels and each new level lands strictly between them, every round narrows (or moves) the
bracket, so a step is located to ``resolution`` in about ``log2(grid step / resolution)`` evaluations per metric
instead of ``grid step / resolution``.

Whether a decline is one event or several depends on whether the stretches between its steps are plateaus; a
gradual event whose inner segments are wide enough to be plateaus but too thinly sampled to show it gets those
stretches bisected too (:func:`split_levels`), so a refined sweep sees the plateaus a uniform fine grid sees.

Whether a collapse is sudden also depends on its width, which is measured between evaluated levels (from
``s_hold``, the last level near the plateau, to ``s_fail``, the first near the post level) and so only bounded
from above. When a step is large enough to be sudden but its measured width exceeds ``max_width`` while the gap
between the levels next to ``s_hold`` and ``s_fail`` does not, the kind is not settled by the levels at hand: the
gaps just after ``s_hold`` and just before ``s_fail`` are bisected too, until the kind is settled or the gaps are
at the resolution. A uniform fine grid and a refined coarse grid then call the same kind.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from sdprobe.thresholds.detect import KINDS, WIDTH_SLACK, CollapseResult, Criteria, detect
from sdprobe.thresholds.segment import MIN_SPAN

log = logging.getLogger(__name__)

PLATEAU_SAMPLES = 4  # split_levels samples a candidate plateau at plateau_span / PLATEAU_SAMPLES at least
GRID_DECIMALS = 10  # proposals are k * resolution rounded to this many decimals, so reruns propose identical floats
MIN_GAP = 1e-4  # run directories name levels with 4 decimals; proposals closer than this to a done level are dropped


def _optional(value, metric: str):
    """A per-metric setting that a metric may lack (None)."""
    return value.get(metric) if isinstance(value, Mapping) else value


def on_grid(value: float, resolution: float) -> float:
    """``value`` rounded to the nearest multiple of ``resolution`` (the refinement grid)."""
    return round(round(value / resolution) * resolution, GRID_DECIMALS)


def bisect(s_lo: float, s_hi: float, resolution: float, points: int = 1) -> list[float]:
    """Grid levels that split ``(s_lo, s_hi)`` into ``points + 1`` parts; empty when the bracket is fine enough.

    Example:
        >>> bisect(0.40, 0.45, 0.005)
        [0.425]
    """
    if not s_hi - s_lo > resolution:
        return []
    cuts = (on_grid(s_lo + (s_hi - s_lo) * (i + 1) / (points + 1), resolution) for i in range(points))
    return sorted({c for c in cuts if s_lo < c < s_hi})


def width_levels(result: CollapseResult, done: np.ndarray, criteria: Criteria, resolution: float,
                 points: int = 1) -> list[float]:
    """Levels that tighten the measured width of an event whose kind depends on it; empty when the kind is settled.

    An event measured wider than ``max_width`` may still be narrow: its true edges lie somewhere in the gaps after
    ``s_hold`` and before ``s_fail``. If the levels bounding those gaps are within ``max_width`` of each other,
    both gaps are bisected.

    Args:
        result (CollapseResult): one event of :func:`detect` on the evaluated levels.
        done (np.ndarray): the evaluated levels, sorted.
        criteria (Criteria): the collapse definition used for ``result``.
        resolution (float): gaps at most this wide are not split.
        points (int): new levels per gap. Default: 1.

    Example:
        >>> width_levels(result, np.array([0.6, 0.65, 0.7, 0.75, 0.8, 0.85]), Criteria(), 0.005)  # hold 0.65, fail 0.8
        [0.675, 0.775]
    """
    if (result.kind != "gradual" or not result.width > criteria.max_width + WIDTH_SLACK
            or math.isnan(result.s_hold) or math.isnan(result.s_fail)):
        return []
    after = done[done > result.s_hold]
    before = done[done < result.s_fail]
    if not len(after) or not len(before):
        return []
    inner_lo, inner_hi = float(after[0]), float(before[-1])
    if inner_hi - inner_lo > criteria.max_width + WIDTH_SLACK:
        return []  # wider than max_width however the gaps resolve: gradual is settled
    return sorted(set(bisect(result.s_hold, inner_lo, resolution, points)) | set(bisect(inner_hi, result.s_fail,
                                                                                       resolution, points)))


def split_levels(result: CollapseResult, done: np.ndarray, resolution: float, points: int = 1,
                 plateau_span: float = MIN_SPAN) -> list[float]:
    """Levels that settle whether a gradual event is one decline or several steps: the gaps in and around each
    inner segment wide enough to be a plateau that the evaluated levels do not yet show to be one, until a plateau
    of ``plateau_span`` would hold ``PLATEAU_SAMPLES`` + 1 levels.

    Example:
        >>> split_levels(result, np.array([0.8, 0.81, 0.825, 0.85, 0.875]), 0.005)  # candidate 0.81..0.85
        [0.8375, 0.8625]
    """
    out: set[float] = set()
    for first, last in result.split_candidates:
        before, after = done[done < first], done[done > last]
        lo = float(before[-1]) if len(before) else first
        hi = float(after[0]) if len(after) else last
        inside = done[(done >= lo) & (done <= hi)]
        for a, b in zip(inside[:-1], inside[1:]):
            if b - a > plateau_span / PLATEAU_SAMPLES + WIDTH_SLACK:
                out.update(bisect(float(a), float(b), resolution, points))
    return sorted(out)


def next_levels(table: pd.DataFrame, y: str | Sequence[str], resolution: float = 0.005, *, x: str = "level",
                seed_col: str | None = "seed", higher_is_better: bool | Mapping[str, bool] = True,
                floor: float | Mapping[str, float] | None = None, scale: str | Mapping[str, str] = "linear",
                criteria: Criteria | None = None,
                kinds: Sequence[str] = ("sudden", "gradual"), points: int = 1, min_gap: float = MIN_GAP) -> list[float]:
    """Propose the next sparsities to evaluate so that every metric's bracket shrinks to ``resolution``.

    Args:
        table (pandas.DataFrame): the sweep's rows so far (columns ``x``, the metrics, optionally ``seed_col``).
        y (str | Sequence[str]): one metric column or several; proposals are the union over metrics.
        resolution (float): stop refining a metric once ``s_hi - s_lo <= resolution``; proposals are multiples
            of it, so a resumed run proposes the same levels. Default: 0.005.
        x (str): sparsity column. Default: ``"level"``.
        seed_col (str | None): seed column (see :func:`detect`). Default: ``"seed"``.
        higher_is_better (bool | Mapping[str, bool]): direction, for all metrics or per metric. Default: True.
        floor (float | Mapping[str, float] | None): floor(s) passed to :func:`detect` (a metric missing from a
            mapping has none). Default: None.
        scale (str | Mapping[str, str]): ``"linear"`` or ``"log"``, for all metrics or per metric (missing:
            linear). Default: ``"linear"``.
        criteria (Criteria | None): collapse definition. Default: ``Criteria()``.
        kinds (Sequence[str]): which kinds of result to refine. Default: ("sudden", "gradual"): a collapse seen
            on a coarse grid can look gradual until levels are added inside it.
        points (int): new levels per bracket and round (1 = bisection; more suits batched devices). Default: 1.
        min_gap (float): proposals closer than this to an evaluated level are dropped. Default: 1e-4.

    Returns:
        list[float]: sorted new levels, empty when every bracket is at the resolution.

    Example:
        >>> next_levels(run.results(), ["color", "unreadable"], higher_is_better={"color": True, "unreadable": False})
        [0.425, 0.675]
    """
    if not resolution >= min_gap:
        raise ValueError(f"resolution must be at least {min_gap} (levels are stored with 4 decimals), got {resolution}")
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kind(s) {bad}; valid kinds: {', '.join(KINDS)}")
    metrics = [y] if isinstance(y, str) else list(y)
    if x not in table.columns:
        raise ValueError(f"sparsity column {x!r} is not in the table; its columns are: "
                         f"{', '.join(map(str, table.columns))}")
    done = np.unique(table[x].to_numpy(dtype=float))
    proposals: set[float] = set()
    for metric in metrics:
        if metric in table.columns and table[metric].isna().all():
            log.warning("metric %r has no values yet; not refining it", metric)
            continue
        if isinstance(higher_is_better, Mapping) and metric not in higher_is_better:
            raise ValueError(f"higher_is_better has no entry for metric {metric!r}; it covers: "
                             f"{', '.join(map(str, higher_is_better))}")
        direction = bool(_optional(higher_is_better, metric))
        result = detect(table, x=x, y=metric, seed_col=seed_col, higher_is_better=direction,
                        floor=_optional(floor, metric), scale=_optional(scale, metric) or "linear",
                        criteria=criteria, n_boot=0)
        for event in result.events:
            if event.kind not in kinds or math.isnan(event.s_lo) or math.isnan(event.s_hi):
                continue
            new = bisect(event.s_lo, event.s_hi, resolution, points)
            log.debug("%s: event %d %s bracket (%.4f, %.4f) -> %s", metric, event.event, event.kind, event.s_lo,
                      event.s_hi, new)
            proposals.update(new)
            width_new = width_levels(event, done, criteria or Criteria(), resolution, points)
            if width_new:
                log.debug("%s: width %.4f unsettled between %.4f and %.4f -> %s", metric, event.width,
                          event.s_hold, event.s_fail, width_new)
            proposals.update(width_new)
            proposals.update(split_levels(event, done, resolution, points, (criteria or Criteria()).plateau_span))
    return sorted(p for p in proposals if np.abs(done - p).min() >= min_gap)
