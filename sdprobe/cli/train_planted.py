"""``sdprobe train-planted``: build the planted organism (``builtin:tiny-shapes-planted``), isolation's positive
control, from the built-in organism and a fixed seed."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import POSITIVE, SEED, positive_int


def _fraction(value: str) -> float:
    x = float(value)
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), got {value}")
    return x


def add_parser(sub) -> None:
    from sdprobe.cli.choices import PLANTING as DEFAULTS

    p = sub.add_parser("train-planted", help="build the planted organism, a known answer for isolation (CPU, ~8 min)",
                       description="Distil the organism's text encoder into one whose color reaches the rest of the "
                                   "model only through a few planted weights (sdprobe/organism/planted.py); writes a "
                                   "diffusers folder with the ground truth as planted.json.")
    p.add_argument("-o", "--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--seed", type=SEED, default=DEFAULTS["seed"])
    p.add_argument("--steps", type=positive_int, default=DEFAULTS["steps"])
    p.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=POSITIVE, default=DEFAULTS["lr"])
    p.add_argument("--paths", type=positive_int, default=DEFAULTS["paths"],
                   help=f"planted weights, each alone enough to carry the color (default: {DEFAULTS['paths']})")
    p.add_argument("--sparsity", type=_fraction, default=DEFAULTS["sparsity"],
                   help="per-matrix magnitude sparsity at which the planted weights are pruned "
                        f"(default: {DEFAULTS['sparsity']})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.io import make_folder
    from sdprobe.organism.planted import PlantConfig, plant

    cfg = PlantConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr, paths=args.paths,
                      sparsity=args.sparsity)
    make_folder(args.out.parent)
    plant(args.out, cfg)
    print(args.out)
    return 0
