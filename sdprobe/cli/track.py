"""``sdprobe track``: send finished runs (and a report) to TensorBoard or MLflow, local files only."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import log_to_tracker, tracker_spec


def add_parser(sub) -> None:
    p = sub.add_parser("track", help="log runs to TensorBoard or MLflow (local files)",
                       description="Log finished run directories (or every run of a study folder) to a tracker: "
                                   "config, metrics per level (step = sparsity x 1000), thresholds, sample images "
                                   "and, with --report, the HTML report. Writes local files only; view them with "
                                   "`tensorboard --logdir DIR` or `mlflow ui --backend-store-uri DIR`.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run or study directories")
    p.add_argument("--to", type=tracker_spec, required=True, metavar="KIND:DIR",
                   help="tensorboard:DIR or mlflow:DIR")
    p.add_argument("--report", type=Path, default=None, help="an HTML report to attach to the last run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.errors import RunError
    from sdprobe.report import discover
    from sdprobe.report.structure import all_runs

    if args.report is not None and not args.report.is_file():
        raise RunError(f"report {args.report} does not exist; write one with `sdprobe report`")
    runs = [r.path for r in all_runs(discover(list(args.runs)))]  # RunError for a folder that holds no run
    log_to_tracker(args.to, runs, report=args.report)
    for path in runs:
        print(path)
    return 0
