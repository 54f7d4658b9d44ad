"""Thresholds of a sweep run directory, written to its ``thresholds.csv``.

Per-image metrics come from the run's image rows (``results``); per-set metrics (FID, KID) from its ``sets.csv``,
one row per level with standard errors. Each metric's direction, floor and scale come from its declaration
(:class:`sdprobe.metrics.Quantity`), overridden by the run config's ``higher_is_better`` / ``floor`` and by the
caller's floors.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from sdprobe.errors import SdprobeError
from sdprobe.io import atomic_write_text
from sdprobe.metrics.base import Quantity
from sdprobe.metrics.registry import declared_quantities
from sdprobe.runs import THRESHOLDS, RunDir
from sdprobe.thresholds.detect import Criteria
from sdprobe.thresholds.table import default_higher_is_better, metric_columns, thresholds_table

log = logging.getLogger(__name__)
RUN_X = "level"  # the sparsity column of sweep tables
SET_BOOKKEEPING = ("level", "n_images", "n_real", "kid_std")  # columns of sets.csv that are not metrics


def run_quantities(run: RunDir, floors: Mapping[str, float] | None = None) -> dict[str, Quantity]:
    """Every metric column of a run with what detection must know about it (declared, then overridden)."""
    config = run.config()
    try:
        declared = declared_quantities(list(config.get("metrics", [])), config.get("metric_options"))
    except (ValueError, SdprobeError):
        declared = {}
    table, sets = run.results(), run.sets()
    image_cols = metric_columns(table)
    set_cols = [] if sets is None else [c for c in metric_columns(sets, SET_BOOKKEEPING)]
    named = config.get("higher_is_better")
    if isinstance(named, dict) and named:  # the run names its metrics: other numeric columns are diagnostics
        image_cols = [c for c in image_cols if c in named]  # (e.g. clip-attributes' margin_<meaning>)
        set_cols = [c for c in set_cols if c in named]
    defaults = default_higher_is_better(image_cols + set_cols)
    stated = config.get("higher_is_better", {})
    all_floors = {**config.get("floor", {}), **(floors or {})}
    out = {}
    for col in image_cols + set_cols:
        q = declared.get(col, Quantity(defaults[col]))
        q = replace(q, higher_is_better=bool(stated.get(col, q.higher_is_better)),
                    floor=all_floors.get(col, q.floor), per="set" if col in set_cols else "image")
        out[col] = q
    return out


def run_tables(run: RunDir) -> dict[str, pd.DataFrame]:
    """``{"image": image rows, "set": per-level set metrics (may be empty)}``."""
    sets = run.sets()
    return {"image": run.results(), "set": sets if sets is not None else pd.DataFrame({RUN_X: []})}


def run_thresholds(run_dir: Path, metrics: Sequence[str] | None = None, floors: Mapping[str, float] | None = None,
                   criteria: Criteria | None = None, n_boot: int = 1000, ci: float = 0.95, random_state: int = 0,
                   seed_col: str = "seed", write: bool = True) -> pd.DataFrame:
    """Detect every collapse of every metric of a sweep run and write ``thresholds.csv``.

    Args:
        run_dir (Path): a sweep run directory with at least three evaluated levels.
        metrics (Sequence[str] | None): metric columns. Default: every metric column with values.
        floors (Mapping[str, float] | None): per-metric floors; merged over the declared ones and the run
            config's ``"floor"``.
        criteria (Criteria | None): the collapse definition. Default: ``Criteria()``.
        n_boot (int): bootstrap resamples. Default: 1000.
        ci (float): confidence level. Default: 0.95.
        random_state (int): seeds the bootstrap. Default: 0.
        seed_col (str): the seed column. Default: ``"seed"``.
        write (bool): write ``RUN_DIR/thresholds.csv`` atomically. Default: True.

    Returns:
        pandas.DataFrame: one row per event and metric (see :func:`thresholds_table`).

    Raises:
        RunError: not a sweep run, or no level evaluated yet.
        ValueError: a metric column the run does not have.
    """
    run = RunDir.open(run_dir, kind="sweep")
    quantities = run_quantities(run, floors)
    tables = run_tables(run)
    available = [m for m, q in quantities.items() if tables[q.per][m].notna().any()]
    chosen = list(metrics) if metrics else available
    unknown = [m for m in chosen if m not in quantities]
    if unknown:
        raise ValueError(f"metric column(s) {unknown} not in the run; its metric columns are: {', '.join(quantities)}")
    parts = []
    for per in ("image", "set"):
        names = [m for m in chosen if quantities[m].per == per]
        if not names:
            continue
        parts.append(thresholds_table(
            tables[per], names, {m: quantities[m].higher_is_better for m in names}, x=RUN_X,
            seed_col=seed_col if per == "image" else None,
            floors={m: quantities[m].floor for m in names if quantities[m].floor is not None},
            scales={m: quantities[m].scale for m in names}, criteria=criteria, n_boot=n_boot, ci=ci,
            random_state=random_state))
    result = pd.concat(parts, ignore_index=True)
    result = result.set_index("metric").loc[chosen].reset_index() if len(parts) > 1 else result
    if write:
        atomic_write_text(run.path / THRESHOLDS, result.to_csv(index=False))
        log.info("wrote %s", run.path / THRESHOLDS)
    return result
