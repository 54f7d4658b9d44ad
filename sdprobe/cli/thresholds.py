"""``sdprobe thresholds``: collapse thresholds of a sweep run (or of any CSV curve)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sdprobe.cli.common import positive_int

log = logging.getLogger(__name__)

RUN_X, CSV_X, CSV_Y = "level", "sparsity", "metric"  # default columns of a run table and of a plain CSV


def add_parser(sub) -> None:
    p = sub.add_parser("thresholds", help="find where each metric collapses along the sparsity axis",
                       description="Detect sudden collapses (vs gradual decline) per metric, with bootstrap intervals "
                                   "over seeds. With RUN_DIR, writes RUN_DIR/thresholds.csv; with --csv, analyses "
                                   "one column of any CSV (one row per level or per seed).")
    p.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="a sweep run directory")
    p.add_argument("--csv", type=Path, help="analyse this CSV instead of a run")
    p.add_argument("--x", help=f"sparsity column (default: {RUN_X!r} for a run, {CSV_X!r} for --csv)")
    p.add_argument("--y", default=CSV_Y, help="metric column of --csv (default: %(default)s)")
    p.add_argument("--lower-is-better", action="store_true", help="the --csv metric improves downwards")
    p.add_argument("--metrics", nargs="+",
                   help="metric columns of a run (default: every numeric non-bookkeeping column with values)")
    p.add_argument("--seed-col", default="seed", help="column resampled by the bootstrap (default: %(default)s)")
    p.add_argument("--floor", type=float, help="worst meaningful value of the --csv metric (e.g. chance accuracy); "
                                               "default: the level the curve settles at after its step")
    p.add_argument("--floors", nargs="+", default=[], metavar="METRIC=VALUE",
                   help="floors of run metrics, e.g. color=0.125 (default: config.json 'floor', else post-step level)")
    p.add_argument("--min-drop", type=float, default=0.5,
                   help="a collapse loses at least this share of the distance to the floor (default: %(default)s)")
    p.add_argument("--max-width", type=float, default=0.1,
                   help="... within at most this much sparsity (default: %(default)s)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates, 0 for none (default: %(default)s)")
    p.add_argument("--ci", type=float, default=0.95, help="interval coverage (default: %(default)s)")
    p.add_argument("--random-state", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    p.add_argument("--out", type=Path, help="write the table to this CSV too (with --csv; a run writes thresholds.csv)")
    p.add_argument("--digits", type=positive_int, default=4, help="decimals printed (default: %(default)s)")
    p.set_defaults(func=run)


def _parse_floors(items: list[str], metrics: list[str]) -> dict[str, float]:
    floors = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in metrics:
            raise ValueError(f"--floors takes METRIC=VALUE with METRIC one of {', '.join(metrics)}; got {item!r}")
        try:
            floors[name] = float(value)
        except ValueError:
            raise ValueError(f"--floors {item!r}: {value!r} is not a number") from None
    return floors


def _csv_inputs(args: argparse.Namespace):
    import pandas as pd

    if not args.csv.exists():
        raise FileNotFoundError(f"no such CSV: {args.csv}")
    try:
        table = pd.read_csv(args.csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {args.csv} as CSV: {exc}") from exc
    floors = {} if args.floor is None else {args.y: args.floor}
    return table, [args.y], {args.y: not args.lower_is_better}, floors, args.x or CSV_X, args.out


def run(args: argparse.Namespace) -> int:
    from sdprobe.io import atomic_write_text
    from sdprobe.thresholds import Criteria, thresholds_table

    if (args.run_dir is None) == (args.csv is None):
        raise ValueError("give either RUN_DIR or --csv FILE (exactly one)")
    if args.run_dir is not None and (args.lower_is_better or args.floor is not None):
        raise ValueError("--lower-is-better and --floor apply to --csv; for a run, directions come from its "
                         "config.json and floors from --floors METRIC=VALUE")
    if args.csv is not None and args.floors:
        raise ValueError("--floors applies to a run; use --floor VALUE with --csv")
    criteria = Criteria(min_drop=args.min_drop, max_width=args.max_width)
    if args.run_dir is not None:
        from sdprobe.runs import RunDir
        from sdprobe.thresholds import metric_columns, run_thresholds

        metrics = args.metrics or None
        floors = _parse_floors(args.floors, args.metrics or metric_columns(RunDir.open(args.run_dir).results()))
        result = run_thresholds(args.run_dir, metrics, floors, criteria, n_boot=args.n_boot, ci=args.ci,
                                random_state=args.random_state, seed_col=args.seed_col)
        out = None
    else:
        table, metrics, directions, floors, x, out = _csv_inputs(args)
        result = thresholds_table(table, metrics, directions, x=x, seed_col=args.seed_col, floors=floors,
                                  criteria=criteria, n_boot=args.n_boot, ci=args.ci, random_state=args.random_state)
    shown = ["metric", "kind", "threshold", "ci_low", "ci_high", "s_lo", "s_hi", "drop", "plateau", "post", "width"]
    print(result[shown].to_string(index=False, float_format=lambda v: f"{v:.{args.digits}f}"))
    if out is not None:
        atomic_write_text(out, result.to_csv(index=False))
        log.info("wrote %s", out)
    return 0
