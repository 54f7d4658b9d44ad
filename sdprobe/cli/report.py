"""``sdprobe report``: one self-contained HTML page from run and study directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import PROBABILITY, SEED, positive_int

REPORTS_DIR = Path("reports")  # default folder of reports


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="write an HTML report of runs and studies",
                       description="Read run directories (or study folders holding runs) and write one "
                                   "self-contained HTML page: curves, thresholds, sample grids, heatmaps, critical "
                                   "sets, bias and attribution. Needs no model.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="run or study directories")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help=f"HTML file to write (default: {REPORTS_DIR}/<first folder name>.html)")
    p.add_argument("--title", default=None, help="page title (default: from the folder names)")
    p.add_argument("--bootstrap", type=positive_int, default=None, metavar="N",
                   help="bootstrap resamples of confidence bands (default: 1000)")
    p.add_argument("--ci", type=PROBABILITY, default=None, help="coverage of confidence bands (default: 0.95)")
    p.add_argument("--seed", type=SEED, default=None, help="bootstrap seed (default: 0)")
    p.add_argument("--top-k", type=positive_int, default=None, help="rows of top-k tables (default: 10)")
    p.add_argument("--dpi", type=positive_int, default=None, help="figure resolution (default: 100)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.report import ReportOptions, make_report

    given = {"n_boot": args.bootstrap, "ci": args.ci, "seed": args.seed, "top_k": args.top_k, "dpi": args.dpi}
    opts = ReportOptions(**{k: v for k, v in given.items() if v is not None})
    out = args.out or REPORTS_DIR / f"{args.runs[0].resolve().name}.html"
    path = make_report(list(args.runs), out, title=args.title, opts=opts)
    print(path)
    return 0
