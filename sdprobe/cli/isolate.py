"""``sdprobe isolate``: critical weight sets of a sweep run's collapses, searched on the run's prompts and confirmed
on fresh ones; ``--replicate FILE`` re-tests a saved set on new prompts and seeds."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from sdprobe.cli.common import NON_NEGATIVE_INT, PROBABILITY, SEED, add_reader_args, metric_options, positive_int

ALL = "all"


def _levels(text: str) -> tuple[str, ...]:
    from sdprobe.isolate import LEVELS

    levels = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise argparse.ArgumentTypeError(f"unknown level(s) {bad or text!r}; valid: {', '.join(LEVELS)} "
                                         "(comma-separated, coarse to fine)")
    return levels


def _window(text: str):
    from sdprobe.cli.choices import WINDOWS

    if text in WINDOWS:
        return text
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"window {text!r}: use transition, bracket, sudden, or two sweep levels START,STOP")
    if not (math.isfinite(a) and math.isfinite(b) and 0 <= a < b < 1):
        raise argparse.ArgumentTypeError(f"window {text!r}: need 0 <= START < STOP < 1")
    return (a, b)


def add_parser(sub) -> None:
    from sdprobe.cli.choices import MEANING_METRICS, PRIORS

    p = sub.add_parser(
        "isolate", help="find the few weights whose removal breaks a meaning, and confirm them on fresh prompts",
        description="For a meaning that collapses between two sweep levels, search the weights pruned in between "
                    "(on the run's own prompts, the search split) for a small set whose removal breaks the meaning "
                    "and whose restoration brings it back. Then confirm the set on fresh prompts and seeds (the "
                    "confirmation split): necessity and sufficiency, each against random tensor-stratified and "
                    "magnitude-matched control sets, Holm-corrected over every test of the run. Only confirmation "
                    "numbers are headline numbers. Writes RUN_DIR/critical/<meaning>/ (set.json is the shareable "
                    "set file). Every evaluation is logged, so the same command resumes.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", nargs="?", help="a sweep run directory with thresholds.csv")
    p.add_argument("--meaning", default=None, help="a meaning of the metric (the oracle's color, shape, position, "
                                                   "size, or a prompt suite's attributes), or 'all' = every meaning "
                                                   "whose largest collapse is sudden (with --window sudden: every "
                                                   "meaning with a sudden collapse)")
    p.add_argument("--replicate", type=Path, default=None, metavar="FILE",
                   help="re-test a saved set file on new prompts and seeds (no RUN_DIR needed)")
    p.add_argument("--model", default=None, help="with --replicate: the model to test (default: the set file's)")
    p.add_argument("--window", type=_window, default="transition",
                   help="candidates: 'transition' (s_hold..s_fail of the detected collapse), 'bracket' (s_lo..s_hi, "
                        "the two levels around the threshold), 'sudden' (s_hold..s_fail of the meaning's largest sudden "
                        "collapse, where its largest event is gradual) or START,STOP sweep levels (default: transition)")
    p.add_argument("--search", type=positive_int, default=None, metavar="N",
                   help="search-split prompts: the run's first N (default: all of the run's prompts)")
    p.add_argument("--confirm", type=positive_int, default=96, metavar="N",
                   help="confirmation-split prompts, fresh prompts and seeds (default: %(default)s; see the README's "
                        "power calculation)")
    p.add_argument("--confirm-prompts", type=Path, default=None, metavar="FILE",
                   help="one prompt per line, or a prompt suite (.toml), to draw the confirmation split from "
                        "(default: the metric's suite, or the organism's grammar)")
    p.add_argument("--controls", type=positive_int, default=200,
                   help="the most random control sets per direction (default: %(default)s)")
    p.add_argument("--matched", type=NON_NEGATIVE_INT, default=50,
                   help="the most magnitude-matched control sets per direction, 0 for none (default: %(default)s)")
    p.add_argument("--alpha", type=PROBABILITY, default=0.05, help="family-wise error rate (default: %(default)s)")
    p.add_argument("--power", type=PROBABILITY, default=0.8, help="required power for --effect (default: %(default)s)")
    p.add_argument("--effect", type=PROBABILITY, default=0.10,
                   help="the effect that matters, a share of images (default: %(default)s)")
    p.add_argument("--bar", type=PROBABILITY, default=None,
                   help="search-split accuracy below which the meaning counts as broken (default: halfway between "
                        "the accuracy at the window's two ends)")
    p.add_argument("--seed", type=SEED, default=None,
                   help="seed of the confirmation split and the controls (default: 0; with --replicate: 1, so the "
                        "new split differs from the one the set was confirmed on)")
    p.add_argument("--levels", type=_levels, default=("tensor", "row", "weight"),
                   help="search hierarchy, coarse to fine (default: tensor,row,weight)")
    p.add_argument("--prior", choices=PRIORS, default=None,
                   help="order of the search: the run's pruning score or |W| (default: score; |W| for random runs)")
    p.add_argument("--max-evaluations", type=positive_int, default=None,
                   help="stop a search after this many tests; rerun with more to resume (default: no limit)")
    p.add_argument("--metric", choices=MEANING_METRICS, default=None,
                   help="the meaning metric that judges the set (default: the one the sweep measured, or with "
                        "--replicate the set file's; e.g. --replicate FILE --metric oracle judges a set found "
                        "through CLIP by the organism's oracle)")
    add_reader_args(p)
    p.add_argument("--device", default=None, help="torch device (default: the run's)")
    p.set_defaults(func=run)


def _metric(args: argparse.Namespace, device: str | None):
    """The judging metric the arguments name, or None for the run's (or set file's) own."""
    from sdprobe.metrics.registry import meaning_metric

    if args.metric is None:
        if args.clip_model is not None or args.suite is not None:
            raise ValueError("--clip-model and --suite configure a metric: give --metric clip-attributes with them")
        return None
    return meaning_metric(args.metric, metric_options(args, [args.metric]).get(args.metric), device)


def _read_prompts(path: Path | None) -> list[str] | None:
    from sdprobe.suites import read_prompts

    return None if path is None else read_prompts(path, "--confirm-prompts")


def _direction_line(name: str, d: dict) -> str:
    return (f"  {name:<11} effect {d['effect']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
            f"({d['effect_images']:+.0f} of {d['n_images']} images, {100 * d['fraction']:.0f}% of the collapse); "
            f"p = {d['p_value']:.3g} raw, {d['p_adjusted']:.3g} Holm ({d['n_controls']} random controls, mean "
            f"{d['control_mean']:+.3f}); matched p = {d['matched_p']:.3g} ({d['n_matched']})")


def _replicate(args: argparse.Namespace) -> int:
    from sdprobe.evidence import ConfirmConfig
    from sdprobe.isolate import replicate

    if args.run_dir is not None or args.meaning is not None:
        raise ValueError("--replicate re-tests a set file; give no RUN_DIR and no --meaning with it")
    seed = 1 if args.seed is None else args.seed
    result = replicate(args.replicate, args.model, n_confirm=args.confirm, seed=seed,
                       confirm=ConfirmConfig(n_controls=args.controls, n_matched=args.matched, seed=seed),
                       alpha=args.alpha, pool=_read_prompts(args.confirm_prompts), device=args.device or "cpu",
                       metric=_metric(args, args.device))
    s = result.summary()
    print(f"{s['meaning']}: {s['size']} weights on {s['model']}, {s['n_prompts']} new prompts and seeds, judged by "
          f"{s['metric']}: {s['verdict']}")
    for d in ("necessity", "sufficiency"):
        print(_direction_line(d, s[d]))
    return 0


def run(args: argparse.Namespace) -> int:
    from sdprobe.distributed import launched_main
    from sdprobe.evidence import ConfirmConfig
    from sdprobe.isolate import IsolationConfig, isolate, isolate_all

    if args.replicate is not None:
        return _replicate(args)
    if args.run_dir is None or args.meaning is None:
        raise ValueError("give RUN_DIR and --meaning (or --replicate FILE)")
    if args.model is not None:
        raise ValueError("--model goes with --replicate; an isolation uses its run's model")
    if args.matched < 0:
        raise ValueError(f"--matched must be 0 or more, got {args.matched}")
    seed = 0 if args.seed is None else args.seed
    config = IsolationConfig(
        window=args.window, n_search=args.search, n_confirm=args.confirm,
        confirm=ConfirmConfig(n_controls=args.controls, n_matched=args.matched, seed=seed), alpha=args.alpha,
        power=args.power, effect=args.effect, bar=args.bar, levels=args.levels, prior=args.prior,
        max_evaluations=args.max_evaluations, seed=seed)
    pool = _read_prompts(args.confirm_prompts)
    metric = _metric(args, args.device)
    overlaps, skipped = None, {}
    if args.meaning == ALL:
        report = isolate_all(args.run_dir, config=config, metric=metric, confirm_pool=pool, device=args.device)
        sets, overlaps, skipped = report.sets, report.overlaps, report.skipped
    else:
        sets = {args.meaning: isolate(args.run_dir, args.meaning, config=config, metric=metric, confirm_pool=pool,
                                      device=args.device)}
    if not launched_main():
        return 0  # the main process prints the summary
    for meaning, reason in skipped.items():
        print(f"{meaning}: no replicable critical set (none found on the search split: {reason})")
    for meaning, cs in sets.items():
        s = cs.summary()
        w = s["window"]
        print(f"{meaning}: {cs.verdict} - {s['size']} of {s['n_candidates']} weights in the {w['kind']} window "
              f"{w['start']:g}..{w['stop']:g}; confirmation split, {s['confirmation']['n_prompts']} fresh prompts:")
        for d in ("necessity", "sufficiency"):
            print(_direction_line(d, s["confirmation"][d]))
        srch = s["search"]
        print(f"  search split ({srch['n_prompts']} prompts, diagnostics only): {srch['evaluations']} tests for "
              f"{srch['candidate_groups']} candidate groups; minimal detectable effect {s['design']['mde']:.3f} "
              f"({s['design']['mde_images']:.1f} images) at power {s['design']['target_power']}")
    if overlaps is not None and len(overlaps):
        print(overlaps.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
