"""Collapse detection on a metric-vs-sparsity curve: every decline, its kind, threshold and confidence interval.

Definition (quantities oriented so that higher is better; ``higher_is_better=False`` flips the sign; a ``"log"``
scale analyses log(value), which suits unbounded metrics such as FID):

* **The scale is absolute.** ``dense`` is the metric of the dense model (level 0) and ``floor`` its worst
  meaningful value: chance accuracy for an accuracy, declared by each metric (:mod:`sdprobe.metrics`) or given by
  the user. The curve is normalised to ``u = (value - floor) / (dense - floor)``: 1 is the dense model, 0 the
  floor. Without a floor the lowest level is used, and the result says so; a truncated sweep then has a floor
  that moves with its end, so give one.
* **Events.** The curve is cut into constant segments by penalised multi-change-point segmentation, and
  consecutive downward changes that no plateau separates are merged into one event (see :mod:`.segment`). An
  event runs from its upper plateau (``plateau``) to its lower one (``post``); it counts when it removes at least
  ``min_event`` (25%) of the range ``dense - floor`` and its drop exceeds ``min_z`` standard errors. A two-step
  curve gives two events, a gradual ramp one; a curve with no event is **none**.
* **Width and kind.** An event's transition runs from 10% to 90% of its drop (``edge = 0.1``): from ``s_hold``,
  the last evaluated level before its midpoint still within 10% of the plateau, to ``s_fail``, the first after
  it within 10% of the post level. For an event from the dense value to the floor these are 10% and 90% of the
  way from dense to floor. ``width = s_fail - s_hold``, an upper bound on the true width that refinement
  (:func:`~sdprobe.thresholds.refine.next_levels`) tightens where the kind depends on it. The event is
  **sudden** when ``width <= max_width`` (0.1 sparsity), else **gradual**.
* **Threshold.** Sudden: where the curve crosses the event's midpoint (linearly interpolated). Gradual: where it
  has lost ``bar`` (half) of the absolute range, when the event spans that level; a truncated decline that has
  not got there by the sweep's end has no threshold yet (NaN, with a note), rather than one that slides with the
  end. Otherwise the event's midpoint. ``s_lo``/``s_hi`` are the evaluated levels around the threshold.
* **Confidence interval.** From replicate curves (seeds resampled, or levels redrawn from their standard errors)
  and the bracket each replicate's threshold lies in, so that the grid's uncertainty is counted (see
  :mod:`.interval`). Without either, the interval is the bracket and ``ci_method`` says so.

The curve's own result is its largest event (``largest``), with every event in ``events``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from sdprobe.thresholds.curve import LevelData, level_data
from sdprobe.thresholds.interval import bracket_interval, method, replicates
from sdprobe.thresholds.segment import (
    MIN_PLATEAU_LEVELS, MIN_SPAN, PENALTY, PLATEAU_RATIO, SPAN_SLACK, Segments, declines, is_plateau, noise_variance,
    segment,
)
from sdprobe.thresholds.crossing import crossing, first_index, last_index, level_weights

log = logging.getLogger(__name__)

KINDS = ("sudden", "gradual", "none")
FLOOR_SOURCES = ("given", "curve")
WIDTH_SLACK = 1e-9  # absorbs binary rounding of level differences (0.45 - 0.35 > 0.1 in floating point)


@dataclass(frozen=True)
class Criteria:
    """What counts as an event and as a sudden one (see the module docstring for the full definition)."""

    min_event: float = 0.25  # an event removes at least this share of the range dense - floor
    max_width: float = 0.1  # sudden: its 10%-90% transition spans at most this much sparsity (between levels)
    edge: float = 0.1  # the transition runs from `edge` to `1 - edge` of the event's drop
    bar: float = 0.5  # a gradual threshold is where the curve has lost this share of the range
    min_z: float = 4.0  # an event's drop must exceed this many standard errors; keeps flat noisy curves at "none"
    penalty: float = PENALTY  # change-point penalty factor (x noise variance x ln L)
    plateau_ratio: float = PLATEAU_RATIO  # a plateau loses at most this share of the changes on either side
    plateau_span: float = MIN_SPAN  # ... spans at least this much sparsity
    plateau_levels: int = MIN_PLATEAU_LEVELS  # ... and holds at least this many levels

    def __post_init__(self):
        for name in ("min_event", "bar"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if not self.max_width > 0:
            raise ValueError(f"max_width must be positive, got {self.max_width}")
        if not 0 < self.edge < 0.5:
            raise ValueError(f"edge must be in (0, 0.5), got {self.edge}")
        if self.plateau_levels < 2:
            raise ValueError(f"plateau_levels must be at least 2, got {self.plateau_levels}")
        for name in ("min_z", "penalty", "plateau_ratio", "plateau_span"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class CollapseResult:
    """One decline of a metric along the sparsity axis (or its absence). Values are in the metric's own units.

    Attributes:
        metric (str): the metric column.
        higher_is_better (bool): the direction used.
        scale (str): ``"linear"`` or ``"log"``.
        collapsed (bool): True iff ``kind == "sudden"``.
        kind (str): "sudden", "gradual" or "none".
        event (int): 1, 2, ... along the sparsity axis; 0 for "none".
        n_events (int): events of the curve.
        largest (bool): the event with the largest drop (the curve's headline result).
        threshold (float): sudden: midpoint crossing; gradual: the ``bar`` crossing; NaN for "none" or a
            truncated decline that has not reached its bar.
        ci_low (float), ci_high (float): the interval of ``threshold`` (see ``ci_method``).
        s_lo (float): last evaluated level before the threshold; for "none" the last level.
        s_hi (float): first evaluated level at/after the threshold (NaN for "none").
        drop (float): ``|plateau - post|``.
        relative_drop (float): the drop as a share of ``dense - floor``.
        plateau (float), post (float): the levels the curve holds before and after the event.
        dense (float): the dense model's value (level 0).
        floor (float): the floor used; ``floor_source`` says whether it was given or taken from the curve.
        width (float): ``s_fail - s_hold``; NaN without an event.
        s_hold (float), s_fail (float): the transition's evaluated edges (10% and 90% of the drop).
        truncated (bool): the event is still going at the sweep's last level.
        z (float): the drop in standard errors.
        ci (float): the interval's coverage.
        ci_method (str): "bootstrap+bracket", "normal+bracket" or "bracket" (see :mod:`.interval`).
        n_boot (int): replicates that produced a bracket.
        n_levels (int), n_seeds (int): evaluated levels; distinct seeds (0 for one row per level).
        notes (str): what the reader must know about this result ("; "-separated), e.g. a missing level 0.
        events (tuple): every event of the curve (this one included); not part of :meth:`to_dict`.
        split_candidates (tuple): for a gradual event, ``(first, last)`` levels of each inner segment wide enough to
            be a plateau, with at least ``min_event`` of the range on either side, that the levels at hand do not
            show to be one; evaluating more levels there settles whether the event is one decline or several steps (:func:`~sdprobe.thresholds.refine.next_levels`). Not part of
            :meth:`to_dict`.
    """

    metric: str
    higher_is_better: bool
    scale: str
    collapsed: bool
    kind: str
    event: int
    n_events: int
    largest: bool
    threshold: float
    ci_low: float
    ci_high: float
    s_lo: float
    s_hi: float
    drop: float
    relative_drop: float
    plateau: float
    post: float
    dense: float
    floor: float
    floor_source: str
    width: float
    s_hold: float
    s_fail: float
    truncated: bool
    z: float
    ci: float
    ci_method: str
    n_boot: int
    n_levels: int
    n_seeds: int
    notes: str
    events: tuple = field(default=(), compare=False, repr=False)
    split_candidates: tuple = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("events", "split_candidates")}

    def rows(self) -> list[dict]:
        """One dict per event (one for "none"), for a table."""
        return [e.to_dict() for e in self.events] or [self.to_dict()]

    def _repr_html_(self) -> str:
        """How it shows itself in Jupyter (:mod:`sdprobe.report.cards`)."""
        from sdprobe.report.cards import collapse_card

        return collapse_card(self)


@dataclass(frozen=True)
class _Curve:
    """The analysed curve: oriented, on the absolute scale, with its segmentation."""

    levels: np.ndarray
    o: np.ndarray  # (L,) oriented values, analysed scale
    dense: float
    floor: float
    u: np.ndarray  # (L,) normalised: 1 dense, 0 floor
    se_u: np.ndarray | None
    seg: Segments


def _segment_means(u: np.ndarray, seg: Segments, first: int, levels: np.ndarray) -> np.ndarray:
    """(B,) weighted mean of segment ``first`` of each of the (B, L) curves."""
    span = seg.span(first, first)
    w = level_weights(levels)[span]
    return (u[:, span] * w).sum(axis=1) / w.sum()


def _mean_se(curve: _Curve, first: int) -> float:
    """Standard error of a segment's weighted mean (from the levels' errors, else the residual noise)."""
    span = curve.seg.span(first, first)
    w = level_weights(curve.levels)[span]
    if curve.se_u is not None and np.isfinite(curve.se_u).all():
        var = curve.se_u[span] ** 2
    else:
        fitted = np.repeat(curve.seg.means, np.diff(curve.seg.starts))
        dof = max(len(curve.u) - len(curve.seg), 1)
        var = np.full(len(w), max(float(((curve.u - fitted) ** 2).sum()) / dof, noise_variance(curve.u, None)))
    return float(math.sqrt((w ** 2 * var).sum()) / w.sum())


def _locate(u: np.ndarray, levels: np.ndarray, win: slice, upper: np.ndarray, lower: np.ndarray,
            bar: np.ndarray, near: int, edge: float) -> dict[str, np.ndarray]:
    """Crossing of ``bar`` and the transition edges of (B, L) curves inside the event's window; every value (B,)."""
    sub, lv = u[:, win], levels[win]
    b = len(sub)
    x, i = crossing(sub, lv, bar, near=np.full(b, near - win.start))
    drop = upper - lower
    idx = np.arange(sub.shape[1])[None, :]
    found = (i >= 0)[:, None]
    hold = last_index((sub >= (upper - edge * drop)[:, None]) & (idx < i[:, None]) & found)
    fail = first_index((sub <= (lower + edge * drop)[:, None]) & (idx >= i[:, None]) & found)
    before = levels[win.start - 1] if win.start > 0 else np.nan
    s_lo = np.where(i > 0, lv[np.maximum(i - 1, 0)], np.where(i == 0, before, np.nan))
    s_hi = np.where(i >= 0, lv[np.maximum(i, 0)], np.nan)
    s_hold = np.where(hold >= 0, lv[np.maximum(hold, 0)], np.nan)
    s_fail = np.where(fail >= 0, lv[np.maximum(fail, 0)], np.nan)
    return {"x": x, "s_lo": s_lo, "s_hi": s_hi, "s_hold": s_hold, "s_fail": s_fail}


def _bars(kind: str, upper: np.ndarray, lower: np.ndarray, truncated: bool, crit: Criteria) -> tuple[np.ndarray, str]:
    """The level whose crossing is the threshold, for each curve, and which rule chose it."""
    mid = (upper + lower) / 2
    absolute = 1.0 - crit.bar
    if kind == "sudden":
        return mid, "midpoint"
    if float(np.median(lower)) < absolute < float(np.median(upper)):
        return np.full_like(mid, absolute), "bar"
    if truncated and float(np.median(lower)) >= absolute:
        return np.full_like(mid, np.nan), "not reached"
    return mid, "midpoint"


def _split_candidate(seg: Segments, j: int, first: int, last: int, end_shift: float, crit: Criteria) -> bool:
    """Inner segment ``j`` of an event might be a plateau that more levels would show: it is wide enough, holds two
    levels or more, loses at most twice what a plateau may (so a ramp's pieces, which lose about as much inside
    as at their edges, are not candidates), and either side of it would be an event on its own."""
    around = min(abs(seg.means[j - 1] - seg.means[j]), abs(seg.means[j] - seg.means[j + 1]))
    return bool(seg.spans[j] >= crit.plateau_span - SPAN_SLACK and seg.starts[j + 1] - seg.starts[j] >= 2
                and seg.losses[j] <= 2 * crit.plateau_ratio * around
                and seg.means[first] - seg.means[j] >= crit.min_event
                and seg.means[j] - seg.means[last] + end_shift >= crit.min_event
                and not is_plateau(seg, j, crit.plateau_span, crit.plateau_ratio, crit.plateau_levels))


def _analyse_curve(data: LevelData, sign: float, dense: float | None, floor: float | None, crit: Criteria,
                   notes: list[str]) -> _Curve | None:
    o = sign * data.mean
    levels = data.levels
    if dense is None:
        dense_o = float(o[0])
        if levels[0] > 0:
            notes.append(f"no level 0: the first level ({levels[0]:g}) stands in for the dense model")
    else:
        dense_o = float(dense)
    floor_o = float(np.nanmin(o)) if floor is None else float(floor)
    span = dense_o - floor_o
    if not span > 0:
        return None
    se_u = None if data.se is None else data.se / span
    u = (o - floor_o) / span
    return _Curve(levels=levels, o=o, dense=dense_o, floor=floor_o, u=u, se_u=se_u,
                  seg=segment(u, levels, se_u, crit.penalty))


def _rising_note(data: LevelData, sign: float, dense_o: float, floor_o: float | None, crit: Criteria,
                 higher_is_better: bool, units) -> str | None:
    """A note when the metric improves markedly along the sweep: likely a wrong direction."""
    o = sign * data.mean
    tail = o[-max(len(o) // 3, 1):]
    rise = float(tail.mean() - dense_o)
    if not rise > 0:
        return None
    se = noise_variance(o, data.se) ** 0.5 * math.sqrt(1 + 1 / len(tail))
    big = rise >= crit.min_event * abs(dense_o - floor_o) if floor_o is not None else True
    if big and (se == 0 or rise / se >= crit.min_z):
        other = "lower" if higher_is_better else "higher"
        return (f"the metric improves along the sweep (dense {units(dense_o):.4g}, end {units(tail.mean()):.4g}): "
                f"if {other} is better, say so (--lower-is-better / higher_is_better)")
    return None


def detect(data: pd.DataFrame | tuple[Sequence[float], Sequence[float]], x: str = "sparsity", y: str = "metric", *,
           seed_col: str | None = "seed", higher_is_better: bool = True, floor: float | None = None,
           dense: float | None = None, scale: str = "linear", criteria: Criteria | None = None, n_boot: int = 1000,
           ci: float = 0.95, random_state: int = 0) -> CollapseResult:
    """Find every decline of a metric along the sparsity axis, with kind, threshold and interval.

    Args:
        data (pandas.DataFrame | tuple): one row per image (columns ``x``, ``y``, ``seed_col``), one row per level
            (optionally with a ``<y>_se`` column), or a ready curve ``(xs, ys)``.
        x (str): sparsity column. Default: ``"sparsity"`` (sweep tables call it ``"level"``).
        y (str): metric column. Default: ``"metric"``.
        seed_col (str | None): column resampled by the bootstrap. Default: ``"seed"``.
        higher_is_better (bool): direction of the metric. Default: True.
        floor (float | None): the metric's worst meaningful value (chance accuracy), in its own units. Default:
            None, the curve's lowest level (noted in the result).
        dense (float | None): the dense model's value, for a curve that does not start at level 0. Default:
            None, the value at the first level (noted when that level is not 0).
        scale (str): ``"linear"`` or ``"log"``. Default: ``"linear"``.
        criteria (Criteria | None): the definition's constants. Default: ``Criteria()``.
        n_boot (int): replicates for the interval (0 turns resampling off: the interval is the bracket).
            Default: 1000.
        ci (float): coverage of the interval, in (0, 1). Default: 0.95.
        random_state (int): seed of the replicates' generator. Default: 0.

    Returns:
        CollapseResult: the largest event (or "none"); ``.events`` holds every event.

    Raises:
        ValueError: missing or non-numeric columns, fewer than 3 levels, or invalid parameters.

    Example:
        >>> r = detect(([0.0, 0.1, 0.2, 0.3, 0.4], [0.9, 0.9, 0.9, 0.1, 0.1]), floor=0.1)  # a ready curve
        >>> r.kind, r.threshold, r.ci_low, r.ci_high, r.ci_method
        ('sudden', 0.25, 0.2, 0.3, 'bracket')
    """
    crit = criteria or Criteria()
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    for name, value in (("floor", floor), ("dense", dense)):
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number or None, got {value}")
        if value is not None and scale == "log" and value <= 0:
            raise ValueError(f"{name} must be positive on a log scale, got {value}")
    data_ = level_data(data, x, y, seed_col, scale)
    sign = 1.0 if higher_is_better else -1.0

    def analysed(v: float | None) -> float | None:
        return None if v is None else sign * (math.log(v) if scale == "log" else v)

    def units(v: float) -> float:
        v = sign * v
        return float(math.exp(v) if scale == "log" and math.isfinite(v) else v)

    notes: list[str] = []
    if floor is None:
        notes.append("no floor given: the lowest level is taken as the floor, so the scale is the curve's own")
    curve = _analyse_curve(data_, sign, analysed(dense), analysed(floor), crit, notes)
    dense_o = analysed(dense) if dense is not None else float(sign * data_.mean[0])
    rising = _rising_note(data_, sign, dense_o, analysed(floor), crit, higher_is_better, units)
    if rising:
        notes.append(rising)
        log.warning("%s: %s", y, rising)
    base = dict(metric=y, higher_is_better=bool(higher_is_better), scale=scale, ci=float(ci),
                ci_method=method(data_), n_levels=len(data_.levels), n_seeds=data_.n_seeds,
                floor_source="given" if floor is not None else "curve", dense=units(dense_o))
    none = CollapseResult(**base, collapsed=False, kind="none", event=0, n_events=0, largest=True,
                          threshold=math.nan, ci_low=math.nan, ci_high=math.nan, s_lo=float(data_.levels[-1]),
                          s_hi=math.nan, drop=math.nan, relative_drop=math.nan, plateau=math.nan, post=math.nan,
                          floor=units(analysed(floor) if floor is not None else float(np.nanmin(sign * data_.mean))),
                          width=math.nan, s_hold=math.nan, s_fail=math.nan, truncated=False, z=0.0, n_boot=0,
                          notes="; ".join(notes))
    if curve is None:
        if not rising:
            notes.append("the dense value is not above the floor: nothing can decline")
        return replace(none, notes="; ".join(notes))

    found, best_z = [], 0.0
    min_span = crit.plateau_span
    for first, last in declines(curve.seg, min_span, crit.plateau_ratio, crit.plateau_levels):
        upper, lower = float(curve.seg.means[first]), float(curve.seg.means[last])
        truncated = last == len(curve.seg) - 1 and (curve.seg.spans[last] < min_span - SPAN_SLACK
                                                    or curve.seg.losses[last] > crit.plateau_ratio * (upper - lower))
        end_shift = curve.seg.losses[last] / 2 if truncated else 0.0  # a decline still going: where it got to
        drop = upper - (lower - end_shift)
        se = math.hypot(_mean_se(curve, first), _mean_se(curve, last))
        z = drop / se if se > 0 else math.inf
        best_z = max(best_z, min(z, 1e12))
        if drop >= crit.min_event and z >= crit.min_z:
            found.append((first, last, drop, z, bool(truncated), float(end_shift)))
    if not found:
        return replace(none, z=best_z, notes="; ".join(notes))

    rng = np.random.default_rng(random_state)
    reps = replicates(data_, n_boot, rng)
    reps_u = None
    if reps is not None:
        o_b = sign * reps  # (B, L)
        dense_b = o_b[:, 0] if dense is None else np.full(len(o_b), curve.dense)
        floor_b = np.nanmin(o_b, axis=1) if floor is None else np.full(len(o_b), curve.floor)
        with np.errstate(invalid="ignore", divide="ignore"):
            reps_u = (o_b - floor_b[:, None]) / (dense_b - floor_b)[:, None]
    span = curve.dense - curve.floor
    events = []
    for number, (first, last, drop, z, truncated, end_shift) in enumerate(found, start=1):
        win = curve.seg.span(first, last)
        near = int(curve.seg.starts[first + 1])
        upper, lower = curve.seg.means[first:first + 1], curve.seg.means[last:last + 1] - end_shift
        at = _locate(curve.u[None, :], curve.levels, win, upper, lower, (upper + lower) / 2, near, crit.edge)
        width = float(at["s_fail"][0] - at["s_hold"][0])
        kind = "sudden" if width <= crit.max_width + WIDTH_SLACK else "gradual"
        bar, rule = _bars(kind, upper, lower, truncated, crit)
        event_notes = list(notes)
        if rule == "not reached":
            threshold, s_lo, s_hi = math.nan, float(curve.levels[-1]), math.nan
            event_notes.append(f"a gradual decline still going at the sweep's end ({curve.levels[-1]:g}) has not yet "
                               f"lost {crit.bar:g} of the range: no threshold before {curve.levels[-1]:g}")
        else:
            point = at if rule == "midpoint" else _locate(curve.u[None, :], curve.levels, win, upper, lower, bar,
                                                          near, crit.edge)
            threshold, s_lo, s_hi = float(point["x"][0]), float(point["s_lo"][0]), float(point["s_hi"][0])
        ci_low = ci_high = math.nan
        n_valid = 0
        if rule == "not reached":
            pass
        elif reps_u is None:
            ci_low, ci_high = s_lo, s_hi
            if method(data_) == "bracket":
                event_notes.append("one value per level and no standard error: the interval is the bracket")
        else:
            up_b = _segment_means(reps_u, curve.seg, first, curve.levels)
            low_b = _segment_means(reps_u, curve.seg, last, curve.levels) - end_shift
            bar_b = (up_b + low_b) / 2 if rule == "midpoint" else np.full(len(up_b), bar[0])
            with np.errstate(invalid="ignore"):
                rep = _locate(reps_u, curve.levels, win, up_b, low_b, bar_b, near, crit.edge)
            ci_low, ci_high, n_valid = bracket_interval(rep["s_lo"], rep["s_hi"], s_lo, s_hi, ci)
        candidates = () if kind == "sudden" else tuple(
            (float(curve.levels[curve.seg.starts[j]]), float(curve.levels[curve.seg.starts[j + 1] - 1]))
            for j in range(first + 1, last) if _split_candidate(curve.seg, j, first, last, end_shift, crit))
        events.append(CollapseResult(
            **base, collapsed=kind == "sudden", kind=kind, event=number, n_events=len(found), largest=False,
            threshold=threshold, ci_low=ci_low, ci_high=ci_high, s_lo=s_lo, s_hi=s_hi,
            drop=abs(units(curve.floor + upper[0] * span) - units(curve.floor + lower[0] * span)),
            relative_drop=drop, plateau=units(curve.floor + upper[0] * span),
            post=units(curve.floor + lower[0] * span), floor=units(curve.floor), width=width,
            s_hold=float(at["s_hold"][0]), s_fail=float(at["s_fail"][0]), truncated=bool(truncated), z=float(z),
            n_boot=n_valid, notes="; ".join(event_notes), split_candidates=candidates))
    top = int(np.argmax([e.relative_drop for e in events]))
    events = [replace(e, largest=i == top) for i, e in enumerate(events)]
    return replace(events[top], events=tuple(events))
