"""``sdprobe evaluate``: the organism's per-attribute quality table."""

from __future__ import annotations

import argparse

from sdprobe.cli.common import SEED, add_generation_args, add_model_args, generation_config, load, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="measure the organism's per-attribute accuracy and bias",
                       description="Generate fresh prompts and seeds and read them with the oracle.")
    add_model_args(p)
    add_generation_args(p)
    p.add_argument("-n", type=positive_int, default=256, help="fully stated prompts (default: %(default)s)")
    p.add_argument("--n-bias", type=positive_int, default=128, help="color-less prompts for the bias (default: %(default)s)")
    p.add_argument("--seed", type=SEED, default=12345, help="draws prompts and seeds (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.evaluate import evaluate_organism

    result = evaluate_organism(load(args), n=args.n, n_bias=args.n_bias, seed=args.seed, config=generation_config(args),
                               progress=True)
    print(result.table().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
