"""``sdprobe generate``: images for prompts and seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import SEED, add_generation_args, add_model_args, generation_config, load


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate images for a prompt and seeds",
                       description="Generate one image per seed for a prompt; several seeds write a grid.")
    add_model_args(p)
    add_generation_args(p)
    p.add_argument("--prompt", required=True, help="the prompt")
    p.add_argument("--seed", type=SEED, nargs="+", default=[0], help="one or more seeds (default: 0)")
    p.add_argument("-o", "--out", required=True, type=Path, help="output PNG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.generate import generate
    from sdprobe.io import save_image_grid

    if not args.prompt.strip():
        raise ValueError("the prompt is empty")
    if args.out.suffix.lower() != ".png":
        raise ValueError(f"output must be a .png file, got {args.out}")
    pipe = load(args)
    images = generate(pipe, [args.prompt] * len(args.seed), args.seed, generation_config(args))
    save_image_grid(images, args.out, columns=len(args.seed))
    print(args.out)
    return 0
