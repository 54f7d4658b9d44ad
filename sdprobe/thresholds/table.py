"""One row of collapse results per event of each metric, and how to tell metric columns from bookkeeping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from sdprobe.runs import BOOKKEEPING
from sdprobe.thresholds.detect import Criteria, detect

LOWER_IS_BETTER = ("unreadable", "distance")  # metric columns where less is better, when nothing declares it
BOOKKEEPING_PREFIXES = ("sparsity",)  # "sparsity", "sparsity_scope", "sparsity_<component>": measured, not metrics
COLUMNS = ("metric", "event", "largest", "kind", "collapsed", "threshold", "ci_low", "ci_high", "ci_method", "s_lo",
           "s_hi", "drop", "relative_drop", "width")  # first columns; the other CollapseResult fields follow


def metric_columns(table: pd.DataFrame, exclude: Sequence[str] = BOOKKEEPING) -> list[str]:
    """Numeric columns of a sweep table that are metrics: not in ``exclude``, not ``sparsity*``, not ``*_se``.

    Example:
        >>> metric_columns(pd.DataFrame({"level": [0.0], "seed": [1], "color": [1.0], "read_color": ["red"]}))
        ['color']
    """
    return [c for c in table.columns if c not in exclude and not str(c).startswith(BOOKKEEPING_PREFIXES)
            and not str(c).endswith("_se") and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c])]


def default_higher_is_better(metrics: Sequence[str]) -> dict[str, bool]:
    """Higher is better for every metric except those in ``LOWER_IS_BETTER``."""
    return {m: m not in LOWER_IS_BETTER for m in metrics}


def thresholds_table(table: pd.DataFrame, metrics: Sequence[str], higher_is_better: Mapping[str, bool], *,
                     x: str = "level", seed_col: str | None = "seed", floors: Mapping[str, float] | None = None,
                     scales: Mapping[str, str] | None = None, denses: Mapping[str, float] | None = None,
                     criteria: Criteria | None = None, n_boot: int = 1000,
                     ci: float = 0.95, random_state: int = 0) -> pd.DataFrame:
    """Run :func:`sdprobe.thresholds.detect` on each metric of a table; one row per event (one for "none").

    Args:
        table (pandas.DataFrame): one row per image (or per level); columns ``x``, ``seed_col`` and the metrics.
        metrics (Sequence[str]): metric columns to analyse (at least one).
        higher_is_better (Mapping[str, bool]): direction of every metric in ``metrics``.
        x (str): sparsity column. Default: ``"level"``.
        seed_col (str | None): column resampled by the bootstrap. Default: ``"seed"``.
        floors (Mapping[str, float] | None): per-metric floor (chance level); metrics not in it use their lowest
            level (and the row's notes say so). Default: None.
        scales (Mapping[str, str] | None): per-metric ``"linear"`` or ``"log"``; missing: linear. Default: None.
        denses (Mapping[str, float] | None): per-metric dense value, for tables without level 0. Default: None.
        criteria (Criteria | None): collapse definition. Default: ``Criteria()``.
        n_boot (int): bootstrap replicates per metric. Default: 1000.
        ci (float): interval coverage. Default: 0.95.
        random_state (int): bootstrap seed (the same for every metric). Default: 0.

    Returns:
        pandas.DataFrame: one row per event and metric; columns ``COLUMNS`` then the other fields of
        :class:`~sdprobe.thresholds.CollapseResult`. ``largest`` marks each metric's headline event.

    Raises:
        ValueError: no metrics, a metric without a direction, or any error of :func:`detect` (naming the metric).

    Example:
        >>> thresholds_table(run.results(), ["color", "unreadable"], {"color": True, "unreadable": False})
    """
    if not metrics:
        raise ValueError("no metric columns to analyse")
    missing = [m for m in metrics if m not in higher_is_better]
    if missing:
        raise ValueError(f"no direction (higher_is_better) for metric(s) {missing}; it covers: "
                         f"{', '.join(map(str, higher_is_better)) or 'nothing'}")
    floors, scales, denses = floors or {}, scales or {}, denses or {}
    rows = []
    for m in metrics:
        try:
            r = detect(table, x=x, y=m, seed_col=seed_col, higher_is_better=bool(higher_is_better[m]),
                       floor=floors.get(m), dense=denses.get(m), scale=scales.get(m, "linear"), criteria=criteria,
                       n_boot=n_boot, ci=ci,
                       random_state=random_state)
        except ValueError as exc:
            raise ValueError(f"metric {m!r}: {exc}") from exc
        rows.extend(r.rows())
    frame = pd.DataFrame(rows)
    return frame[list(COLUMNS) + [c for c in frame.columns if c not in COLUMNS]]


def largest(thresholds: pd.DataFrame) -> pd.DataFrame:
    """Each metric's headline row (its largest event) of a thresholds table; older tables have one row each."""
    if "largest" not in thresholds.columns:
        return thresholds
    return thresholds[thresholds["largest"].astype(bool)].reset_index(drop=True)
