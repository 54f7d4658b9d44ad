"""One row of collapse results per metric, and how to tell metric columns from bookkeeping in a sweep table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from sdprobe.runs import BOOKKEEPING
from sdprobe.thresholds.detect import Criteria, detect

LOWER_IS_BETTER = ("unreadable", "distance")  # metric columns where less is better, when a run does not say
BOOKKEEPING_PREFIXES = ("sparsity",)  # "sparsity", "sparsity_scope", "sparsity_<component>": measured, not metrics
COLUMNS = ("metric", "kind", "collapsed", "threshold", "ci_low", "ci_high", "s_lo", "s_hi", "drop")  # first columns


def metric_columns(table: pd.DataFrame, exclude: Sequence[str] = BOOKKEEPING) -> list[str]:
    """Numeric columns of a sweep table that are metrics: not in ``exclude`` and not ``sparsity*``.

    Example:
        >>> metric_columns(pd.DataFrame({"level": [0.0], "seed": [1], "color": [1.0], "read_color": ["red"]}))
        ['color']
    """
    return [c for c in table.columns if c not in exclude and not str(c).startswith(BOOKKEEPING_PREFIXES)
            and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]


def default_higher_is_better(metrics: Sequence[str]) -> dict[str, bool]:
    """Higher is better for every metric except those in ``LOWER_IS_BETTER``."""
    return {m: m not in LOWER_IS_BETTER for m in metrics}


def thresholds_table(table: pd.DataFrame, metrics: Sequence[str], higher_is_better: Mapping[str, bool], *,
                     x: str = "level", seed_col: str | None = "seed", floors: Mapping[str, float] | None = None,
                     criteria: Criteria | None = None, n_boot: int = 1000, ci: float = 0.95,
                     random_state: int = 0) -> pd.DataFrame:
    """Run :func:`sdprobe.thresholds.detect` on each metric of a sweep table.

    Args:
        table (pandas.DataFrame): one row per image (or per level); columns ``x``, ``seed_col`` and the metrics.
        metrics (Sequence[str]): metric columns to analyse (at least one).
        higher_is_better (Mapping[str, bool]): direction of every metric in ``metrics``.
        x (str): sparsity column. Default: ``"level"``.
        seed_col (str | None): column resampled by the bootstrap. Default: ``"seed"``.
        floors (Mapping[str, float] | None): per-metric floor (chance level); metrics not in it use the level
            their curve settles at after its step. Default: None.
        criteria (Criteria | None): collapse definition. Default: ``Criteria()``.
        n_boot (int): bootstrap replicates per metric. Default: 1000.
        ci (float): interval coverage. Default: 0.95.
        random_state (int): bootstrap seed (the same for every metric). Default: 0.

    Returns:
        pandas.DataFrame: one row per metric; columns ``metric, kind, collapsed, threshold, ci_low, ci_high,
        s_lo, s_hi, drop`` then the other fields of :class:`~sdprobe.thresholds.CollapseResult`.

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
    floors = floors or {}
    rows = []
    for m in metrics:
        try:
            r = detect(table, x=x, y=m, seed_col=seed_col, higher_is_better=bool(higher_is_better[m]),
                       floor=floors.get(m), criteria=criteria, n_boot=n_boot, ci=ci, random_state=random_state)
        except ValueError as exc:
            raise ValueError(f"metric {m!r}: {exc}") from exc
        rows.append(r.to_dict())
    frame = pd.DataFrame(rows)
    return frame[list(COLUMNS) + [c for c in frame.columns if c not in COLUMNS]]
