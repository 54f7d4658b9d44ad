"""Thresholds of a sweep run directory, written to its ``thresholds.csv``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from sdprobe.io import atomic_write_text
from sdprobe.runs import THRESHOLDS, RunDir
from sdprobe.thresholds.detect import Criteria
from sdprobe.thresholds.table import default_higher_is_better, metric_columns, thresholds_table

log = logging.getLogger(__name__)
RUN_X = "level"  # the sparsity column of sweep tables


def run_thresholds(run_dir: Path, metrics: Sequence[str] | None = None, floors: Mapping[str, float] | None = None,
                   criteria: Criteria | None = None, n_boot: int = 1000, ci: float = 0.95, random_state: int = 0,
                   seed_col: str = "seed", write: bool = True) -> pd.DataFrame:
    """Detect the collapse of every metric of a sweep run and write ``thresholds.csv``.

    Args:
        run_dir (Path): a sweep run directory with at least three evaluated levels.
        metrics (Sequence[str] | None): metric columns. Default: every metric column with values.
        floors (Mapping[str, float] | None): per-metric floors; merged over the run config's ``"floor"``.
        criteria (Criteria | None): the collapse definition. Default: ``Criteria()``.
        n_boot (int): bootstrap resamples over seeds. Default: 1000.
        ci (float): confidence level. Default: 0.95.
        random_state (int): seeds the bootstrap. Default: 0.
        seed_col (str): the seed column. Default: ``"seed"``.
        write (bool): write ``RUN_DIR/thresholds.csv`` atomically. Default: True.

    Returns:
        pandas.DataFrame: one row per metric (see :func:`thresholds_table`).

    Raises:
        RunError: not a sweep run, or no level evaluated yet.
        ValueError: a metric column the run does not have.
    """
    run = RunDir.open(run_dir, kind="sweep")
    table = run.results()
    config = run.config()
    available = metric_columns(table)
    chosen = list(metrics) if metrics else [m for m in available if table[m].notna().any()]
    unknown = [m for m in chosen if m not in table.columns]
    if unknown:
        raise ValueError(f"metric column(s) {unknown} not in the run table; its metric columns are: {', '.join(available)}")
    directions = {**default_higher_is_better(chosen), **config.get("higher_is_better", {})}
    all_floors = {**config.get("floor", {}), **(floors or {})}
    result = thresholds_table(table, chosen, directions, x=RUN_X, seed_col=seed_col, floors=all_floors,
                              criteria=criteria, n_boot=n_boot, ci=ci, random_state=random_state)
    if write:
        atomic_write_text(run.path / THRESHOLDS, result.to_csv(index=False))
        log.info("wrote %s", run.path / THRESHOLDS)
    return result
