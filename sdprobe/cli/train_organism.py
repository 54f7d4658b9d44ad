"""``sdprobe train-organism``: train the tiny-shapes organism from its fixed seed."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import NON_NEGATIVE_INT, SEED, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("train-organism", help="train the tiny-shapes organism (CPU, about an hour)",
                       description="Train the organism; a killed run resumes from its last checkpoint in --work.")
    p.add_argument("-o", "--out", type=Path, required=True, help="pipeline folder to write")
    p.add_argument("--work", type=Path, default=None, help="checkpoint folder (default: OUT.work)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--vae-steps", type=positive_int, default=600)
    p.add_argument("--decoder-steps", type=positive_int, default=900, help="first decoder-only pass")
    p.add_argument("--polish-steps", type=positive_int, default=1000, help="second decoder-only pass")
    p.add_argument("--unet-steps", type=positive_int, default=3500)
    p.add_argument("--finetune-steps", type=NON_NEGATIVE_INT, default=1500, help="further UNet steps at a lower rate")
    p.add_argument("--vae-checkpoint", type=Path, default=None, help="reuse the VAE of an earlier run's checkpoint.safetensors")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--save-every", type=positive_int, default=500)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.organism.train import TrainConfig, train

    cfg = TrainConfig(seed=args.seed, vae_steps=args.vae_steps, decoder_steps=args.decoder_steps,
                      polish_steps=args.polish_steps, unet_steps=args.unet_steps, finetune_steps=args.finetune_steps,
                      batch_size=args.batch_size, save_every=args.save_every)
    work = args.work or args.out.with_name(args.out.name + ".work")
    if args.vae_checkpoint is not None:
        from sdprobe.organism.checkpoint import load_checkpoint

        load_checkpoint(args.vae_checkpoint, models=("vae",))  # a bad file fails before anything is written
    train(args.out, work, cfg, vae_checkpoint=args.vae_checkpoint)
    return 0
