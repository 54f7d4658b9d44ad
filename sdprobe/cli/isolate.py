"""``sdprobe isolate``: critical weight sets of a sweep run's sudden collapses, tested against random controls."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import positive_int

ALL = "all"


def _levels(text: str) -> tuple[str, ...]:
    from sdprobe.isolate import LEVELS

    levels = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise argparse.ArgumentTypeError(f"unknown level(s) {bad or text!r}; valid: {', '.join(LEVELS)} "
                                         "(comma-separated, coarse to fine)")
    return levels


def add_parser(sub) -> None:
    from sdprobe.isolate.run import PRIORS
    from sdprobe.world import MEANINGS

    p = sub.add_parser("isolate", help="find the few weights whose removal breaks a meaning",
                       description="For a meaning that collapses suddenly between two sweep levels, search the "
                                   "weights pruned in between for a small set whose removal breaks the meaning and "
                                   "whose restoration brings it back; compare it with random sets of the same size "
                                   "and per-tensor layout. Writes RUN_DIR/critical/<meaning>/. Every evaluation is "
                                   "logged, so the same command resumes an interrupted search.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a sweep run directory with thresholds.csv")
    p.add_argument("--meaning", required=True, choices=(*MEANINGS, ALL),
                   help="which meaning; 'all' = every meaning that collapses suddenly")
    p.add_argument("--controls", type=positive_int, default=50,
                   help="random control sets, at least 20 (default: %(default)s)")
    p.add_argument("--bar", type=float, default=None,
                   help="accuracy below which the meaning counts as broken (default: halfway between the accuracy "
                        "just before and just after the collapse)")
    p.add_argument("--seed", type=int, default=0, help="seed of the control sets (default: %(default)s)")
    p.add_argument("--levels", type=_levels, default=("tensor", "row", "weight"),
                   help="search hierarchy, coarse to fine (default: tensor,row,weight)")
    p.add_argument("--prior", choices=PRIORS, default=None,
                   help="order of the search: the run's pruning score or |W| (default: score; |W| for random runs)")
    p.add_argument("--max-prompts", type=positive_int, default=None,
                   help="evaluate only the first N prompts of the run (default: all)")
    p.add_argument("--max-evaluations", type=positive_int, default=None,
                   help="stop a search after this many tests; rerun with more to resume (default: no limit)")
    p.add_argument("--device", default=None, help="torch device (default: the run's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.isolate import isolate, isolate_all

    kw = dict(bar=args.bar, n_controls=args.controls, seed=args.seed, levels=args.levels, prior=args.prior,
              max_prompts=args.max_prompts, max_evaluations=args.max_evaluations, device=args.device)
    overlaps = None
    if args.meaning == ALL:
        report = isolate_all(args.run_dir, **kw)
        sets, overlaps = report.sets, report.overlaps
        for meaning, reason in report.skipped.items():
            print(f"{meaning}: not isolated: {reason}")
    else:
        sets = {args.meaning: isolate(args.run_dir, args.meaning, **kw)}
    for meaning, cs in sets.items():
        s = cs.summary()
        verdict = "beats all controls" if s["beats_all_controls"] else "does NOT beat all controls"
        print(f"{meaning}: {s['size']} of {s['n_candidates']} candidate weights; effect {s['effect']:.3f} vs control "
              f"mean {s['control_mean']:.3f} (p = {s['p_value']:.3g}, {verdict}); breaks={s['breaks']} "
              f"restores={s['restores']}; {s['evaluations']} tests for {s['candidate_groups']} candidate groups")
    if overlaps is not None and len(overlaps):
        print(overlaps.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0 if sets else 2
