"""``sdprobe sweep``: a progressive pruning sweep with automatic threshold refinement."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe import checks

from sdprobe.cli.common import (
    FRACTION, NON_NEGATIVE, POSITIVE, SEED, add_generation_args, add_model_args, add_reader_args, add_tracker_arg,
    generation_config, load, log_to_tracker, metric_options, positive_int,
)
from sdprobe.suites import read_prompts

COMPONENT_CHOICES = ("text_encoder", "text_encoder_2", "unet", "both")


def _budget(text: str) -> tuple[str, float]:
    try:
        comp, value = text.split("=")
        return comp, checks.offset(f"offset of {comp}", float(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected COMPONENT=OFFSET with OFFSET in (-1, 1), e.g. "
                                         f"text_encoder=0.125, got {text!r} ({exc})") from None


def add_parser(sub) -> None:
    from sdprobe.cli.choices import METHODS, METRICS, STORES

    p = sub.add_parser("sweep", help="prune progressively, generate and score at every level",
                       description="Prune a component (or several) in fine steps, score the images at every level, "
                                   "and bisect around collapses. Resumes an interrupted run with the same command.")
    add_model_args(p)
    add_generation_args(p)
    p.add_argument("--component", default="text_encoder", choices=COMPONENT_CHOICES,
                   help="what to prune; 'both' = text encoder(s) and UNet (default: %(default)s)")
    p.add_argument("--select", nargs="+", default=None, metavar="SELECTOR",
                   help="narrow the scope with selectors, e.g. unet.attn2 text_encoder.mlp (default: whole components)")
    p.add_argument("--offset", nargs="+", type=_budget, default=[], metavar="COMPONENT=OFFSET",
                   help="per-component sparsity offset from the level, e.g. text_encoder=0.125 (joint line)")
    p.add_argument("--method", default="magnitude", choices=METHODS, help="scoring method (default: %(default)s)")
    p.add_argument("--group", default=None, help="comparison group: matrix, row, global or nm:M (default: method's)")
    p.add_argument("--include-conv", action="store_true", help="also prune Conv2d weights")
    p.add_argument("--start", type=FRACTION, default=0.0, help="first grid level, in [0, 1) (default: %(default)s)")
    p.add_argument("--stop", type=FRACTION, default=0.95, help="last grid level, in [0, 1) (default: %(default)s)")
    p.add_argument("--step", type=POSITIVE, default=0.1,
                   help="grid spacing; --refine bisects each collapse from there (default: %(default)s)")
    p.add_argument("--refine", type=NON_NEGATIVE, default=0.005, help="bisection resolution; 0 disables (default: %(default)s)")
    p.add_argument("--prompts", type=Path, default=None, help="text file, one prompt per line, or a prompt suite (.toml) (default: organism grammar)")
    p.add_argument("-n", "--n-prompts", type=positive_int, default=64, help="prompts drawn from the grammar")
    p.add_argument("--seed", type=SEED, default=0, help="draws prompts and seeds (default: %(default)s)")
    p.add_argument("--metrics", nargs="+", default=["oracle", "distance"], choices=METRICS, metavar="METRIC",
                   help=f"what to measure at every level, among: {', '.join(METRICS)} (default: oracle distance; "
                        "for models without an oracle: clip-attributes with --clip-model and --suite)")
    add_reader_args(p)
    p.add_argument("--store", default="auto", choices=STORES,
                   help="where masks keep the original values: auto = host memory for CUDA, a temporary file on the "
                        "CPU, so memory stays near the model's own; memory = beside the weights (fastest) "
                        "(default: %(default)s)")
    p.add_argument("-o", "--out", type=Path, required=True, help="run directory")
    add_tracker_arg(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from sdprobe.architecture import COMPONENTS
    from sdprobe.sweep.config import ComponentPlan, SweepConfig

    comps = [c for c in COMPONENTS if c in ("text_encoder", "unet")] if args.component == "both" else [args.component]
    offsets = dict(args.offset)
    unknown = sorted(set(offsets) - set(comps))
    if unknown:
        raise ValueError(f"--offset names {unknown}, which this sweep does not prune ({', '.join(comps)})")
    plans = {}
    for c in comps:
        sel = [s for s in (args.select or []) if s.split(".")[0] == c] or ([c] if not args.select else [])
        if sel:
            plans[c] = ComponentPlan(sel, offsets.get(c, 0.0))
    if args.select:
        stray = [s for s in args.select if s.split(".")[0] not in comps]
        if stray:
            raise ValueError(f"selectors {stray} are outside --component {args.component}")
    prompts = None if args.prompts is None else read_prompts(args.prompts, "--prompts")
    return SweepConfig(model=args.model, components=plans, method=args.method, group=args.group,
                       include_conv=args.include_conv, start=args.start, stop=args.stop, step=args.step,
                       refine=args.refine or None, prompts=prompts, n_prompts=args.n_prompts, seed=args.seed,
                       metrics=args.metrics, metric_options=metric_options(args, args.metrics),
                       generation=generation_config(args), device=args.device, dtype=args.dtype)


def run(args: argparse.Namespace) -> int:
    from sdprobe.distributed import launched_main
    from sdprobe.sweep import run_sweep

    config = config_from_args(args)  # validates before the model loads
    pipe = load(args)
    run_dir = run_sweep(pipe, config, args.out, store=args.store)
    if not launched_main():
        return 0  # the main process logs and prints for every process of a launched sweep
    log_to_tracker(args.tracker, [run_dir.path])
    print(run_dir.path)
    return 0
