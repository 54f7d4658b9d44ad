"""Collapse thresholds: where along the sparsity axis each meaning breaks, suddenly or gradually, in how many steps.

The public surface:

* :func:`detect` - one metric's curve -> :class:`CollapseResult` (its largest event; ``.events`` holds them all:
  kind, threshold, bracket and interval each).
* :func:`thresholds_table` - one row per event of each metric of a table; :func:`largest` keeps the headline rows.
* :func:`run_thresholds` - the same for a sweep run directory, with each metric's declared direction, floor and
  scale; writes ``thresholds.csv``.
* :func:`next_levels` - the sparsities a sweep should evaluate next to narrow every bracket.
* :class:`Criteria` - the numbers that define an event and a sudden one.
"""

from sdprobe.thresholds.detect import KINDS, CollapseResult, Criteria, detect
from sdprobe.thresholds.refine import next_levels
from sdprobe.thresholds.run import run_quantities, run_thresholds
from sdprobe.thresholds.table import default_higher_is_better, largest, metric_columns, thresholds_table

__all__ = ["KINDS", "CollapseResult", "Criteria", "default_higher_is_better", "detect", "largest", "metric_columns",
           "next_levels", "run_quantities", "run_thresholds", "thresholds_table"]
