"""``sdprobe train-clip``: train the tiny-shapes CLIP (``builtin:tiny-shapes-clip``) from its fixed seed."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import POSITIVE, SEED, positive_int


def add_parser(sub) -> None:
    from sdprobe.cli.choices import CLIP_TRAINING as DEFAULTS

    p = sub.add_parser("train-clip", help="train the tiny-shapes CLIP on the organism's world (CPU, about 15 min)",
                       description="Contrastive training of a small transformers CLIPModel on rendered scenes of the "
                                   "organism's world and their captions; writes a stock CLIP folder.")
    p.add_argument("-o", "--out", type=Path, required=True, help="CLIP folder to write")
    p.add_argument("--seed", type=SEED, default=DEFAULTS["seed"])
    p.add_argument("--steps", type=positive_int, default=DEFAULTS["steps"])
    p.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=POSITIVE, default=DEFAULTS["lr"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.io import make_folder
    from sdprobe.organism.train_clip import ClipTrainConfig, train_clip

    cfg = ClipTrainConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          warmup=min(ClipTrainConfig.warmup, args.steps))
    make_folder(args.out.parent)
    train_clip(args.out, cfg)
    print(args.out)
    return 0
