"""``sdprobe thresholds``: collapse thresholds of a sweep run (or of any CSV curve)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sdprobe import checks
from sdprobe.cli.common import FINITE, NON_NEGATIVE_INT, POSITIVE, PROBABILITY, SEED, positive_int

log = logging.getLogger(__name__)

RUN_X, CSV_X, CSV_Y = "level", "sparsity", "metric"  # default columns of a run table and of a plain CSV


def add_parser(sub) -> None:
    p = sub.add_parser("thresholds", help="find where each metric collapses along the sparsity axis",
                       description="Find every decline of each metric (one row per event: a step, or a continuous "
                                   "decline), call it sudden or gradual on the absolute scale dense -> floor, and "
                                   "give each threshold an interval that counts seed noise and the grid. With "
                                   "RUN_DIR, writes RUN_DIR/thresholds.csv (directions, floors and scales come from "
                                   "the metrics' declarations); with --csv, analyses one column of any CSV (one row "
                                   "per level, optionally with a <metric>_se column, or one row per seed).")
    p.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="a sweep run directory")
    p.add_argument("--csv", type=Path, help="analyse this CSV instead of a run")
    p.add_argument("--x", help=f"sparsity column (default: {RUN_X!r} for a run, {CSV_X!r} for --csv)")
    p.add_argument("--y", default=CSV_Y, help="metric column of --csv (default: %(default)s)")
    p.add_argument("--lower-is-better", action="store_true", help="the --csv metric improves downwards")
    p.add_argument("--log", action="store_true", help="analyse the --csv metric as log(value) (unbounded metrics "
                                                     "such as FID)")
    p.add_argument("--dense", type=FINITE, help="the dense model's value of the --csv metric, when the curve does not "
                                               "start at level 0 (default: the first level, with a note)")
    p.add_argument("--metrics", nargs="+",
                   help="metric columns of a run (default: every numeric non-bookkeeping column with values)")
    p.add_argument("--seed-col", default="seed", help="column resampled by the bootstrap (default: %(default)s)")
    p.add_argument("--floor", type=FINITE, help="worst meaningful value of the --csv metric (e.g. chance accuracy); "
                                               "default: the curve's lowest level (noted: the scale is then relative)")
    p.add_argument("--floors", nargs="+", default=[], metavar="METRIC=VALUE",
                   help="floors of run metrics, e.g. clip_score=0.15 (default: the metric's declared floor)")
    p.add_argument("--min-event", type=PROBABILITY, default=0.25,
                   help="an event removes at least this share of the range dense -> floor (default: %(default)s)")
    p.add_argument("--max-width", type=POSITIVE, default=0.1,
                   help="sudden: its 10%%-90%% transition spans at most this much sparsity (default: %(default)s)")
    p.add_argument("--bootstrap", type=NON_NEGATIVE_INT, dest="n_boot", default=1000, help="bootstrap replicates, 0 for none (default: %(default)s)")
    p.add_argument("--ci", type=PROBABILITY, default=0.95, help="interval coverage (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=0, dest="random_state", help="bootstrap seed (default: %(default)s)")
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
            floors[name] = checks.finite(f"--floors {name}", float(value))
        except ValueError:
            raise ValueError(f"--floors {item!r}: {value!r} is not a finite number") from None
    return floors


def _csv_inputs(args: argparse.Namespace):
    import pandas as pd

    if not args.csv.exists():
        raise FileNotFoundError(f"no such CSV: {args.csv}")
    try:
        table = pd.read_csv(args.csv)
    except UnicodeDecodeError:
        raise ValueError(f"--csv {args.csv} is not UTF-8 text; save it as UTF-8 CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"cannot read {args.csv} as CSV: {exc}") from exc
    floors = {} if args.floor is None else {args.y: args.floor}
    return table, [args.y], {args.y: not args.lower_is_better}, floors, args.x or CSV_X, args.out


def _show(result) -> str:
    """The table as printed, then every note once (they explain NaN intervals, missing floors, directions)."""
    notes = []
    for text in result["notes"].fillna(""):
        notes.extend(n for n in str(text).split("; ") if n and n not in notes)
    return "\n".join(f"note: {n}" for n in notes)


def run(args: argparse.Namespace) -> int:
    from sdprobe.io import atomic_write_text
    from sdprobe.thresholds import Criteria, thresholds_table

    if (args.run_dir is None) == (args.csv is None):
        raise ValueError("give either RUN_DIR or --csv FILE (exactly one)")
    if args.run_dir is not None and (args.lower_is_better or args.floor is not None or args.log
                                     or args.dense is not None):
        raise ValueError("--lower-is-better, --floor, --log and --dense apply to --csv; for a run, directions and "
                         "scales come from its metrics' declarations and floors from --floors METRIC=VALUE")
    if args.csv is not None and args.floors:
        raise ValueError("--floors applies to a run; use --floor VALUE with --csv")
    criteria = Criteria(min_event=args.min_event, max_width=args.max_width)
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
                                  scales={args.y: "log" if args.log else "linear"},
                                  denses={} if args.dense is None else {args.y: args.dense}, criteria=criteria,
                                  n_boot=args.n_boot, ci=args.ci, random_state=args.random_state)
    shown = ["metric", "event", "kind", "threshold", "ci_low", "ci_high", "ci_method", "s_lo", "s_hi", "relative_drop",
             "width", "largest"]
    print(result[shown].to_string(index=False, float_format=lambda v: f"{v:.{args.digits}f}"))
    notes = _show(result)
    if notes:
        print(notes)
    if out is not None:
        atomic_write_text(out, result.to_csv(index=False))
        log.info("wrote %s", out)
    return 0
