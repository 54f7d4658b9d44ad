"""Arguments shared by several sub-commands, and their conversion to library objects."""

from __future__ import annotations

import argparse

DTYPES = ("float32", "float16", "bfloat16")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="builtin:tiny-shapes",
                   help="builtin:tiny-shapes, a local diffusers folder, or a hub id (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weight dtype (default: %(default)s)")


def add_generation_args(p: argparse.ArgumentParser) -> None:
    from sdprobe.generate import GenerationConfig

    d = GenerationConfig()
    p.add_argument("--steps", type=positive_int, default=d.steps, help="denoising steps (default: %(default)s)")
    p.add_argument("--guidance", type=float, default=d.guidance, help="classifier-free guidance (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="images per pipeline call (default: %(default)s)")


def generation_config(args: argparse.Namespace):
    from sdprobe.generate import GenerationConfig

    return GenerationConfig(steps=args.steps, guidance=args.guidance, batch_size=args.batch_size)


def load(args: argparse.Namespace):
    import torch

    from sdprobe.distributed import process_device
    from sdprobe.models import load_pipeline

    dtype = getattr(torch, args.dtype)
    if dtype != torch.float32 and args.device == "cpu":
        raise ValueError(f"--dtype {args.dtype} needs a CUDA device; use float32 on the CPU")
    return load_pipeline(args.model, device=process_device(args.device), dtype=dtype)


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value
