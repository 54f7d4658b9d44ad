"""Collapse thresholds: where along the sparsity axis each meaning breaks, suddenly or gradually.

The public surface:

* :func:`detect` - one metric's curve -> :class:`CollapseResult` (kind, threshold, bracket, bootstrap interval).
* :func:`thresholds_table` - one row per metric of a sweep table.
* :func:`next_levels` - the sparsities a sweep should evaluate next to narrow every bracket.
* :class:`Criteria` - the numbers that define a sudden collapse.
"""

from sdprobe.thresholds.detect import KINDS, CollapseResult, Criteria, detect
from sdprobe.thresholds.refine import next_levels
from sdprobe.thresholds.run import run_thresholds
from sdprobe.thresholds.table import default_higher_is_better, metric_columns, thresholds_table

__all__ = ["KINDS", "CollapseResult", "Criteria", "default_higher_is_better", "detect", "metric_columns", "next_levels",
           "thresholds_table"]
