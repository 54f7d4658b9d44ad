"""Arguments shared by several sub-commands, and their conversion to library objects."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from sdprobe import checks

DTYPES = ("float32", "float16", "bfloat16")


def arg(check: Callable, kind: type = float) -> Callable[[str], float | int]:
    """An argparse ``type`` that parses ``kind`` and applies one of :mod:`sdprobe.checks`, so every command checks
    a number by the same rule as the library does.

    Example:
        >>> p.add_argument("--guidance", type=arg(checks.non_negative))
    """
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            return check("", value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).strip()) from None

    parse.__name__ = check.__name__  # argparse names the type in its messages
    return parse


SEED = arg(checks.seed, int)
FRACTION = arg(checks.fraction)
UNIT = arg(checks.unit)
PROBABILITY = arg(checks.probability)
FINITE = arg(checks.finite)
NON_NEGATIVE = arg(checks.non_negative)
POSITIVE = arg(checks.positive)
NON_NEGATIVE_INT = arg(checks.non_negative_int, int)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="builtin:tiny-shapes",
                   help="builtin:tiny-shapes, a local diffusers folder, or a hub id (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weight dtype (default: %(default)s)")


def add_generation_args(p: argparse.ArgumentParser) -> None:
    from sdprobe.generate import GenerationConfig

    d = GenerationConfig()
    p.add_argument("--steps", type=positive_int, default=d.steps, help="denoising steps (default: %(default)s)")
    p.add_argument("--guidance", type=NON_NEGATIVE, default=d.guidance,
                   help="classifier-free guidance, a finite number >= 0 (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="images per pipeline call (default: %(default)s)")


CLIP_HELP = ("CLIP model for clip-attributes, fd-clip, clipscore and CLIP probes: builtin:tiny-shapes-clip or a local "
             "transformers CLIP folder")


def add_clip_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clip-model", default=None, metavar="PATH", help=CLIP_HELP)


def add_reader_args(p: argparse.ArgumentParser) -> None:
    """``--clip-model`` and ``--suite``: what the CLIP readers among the metrics read with."""
    add_clip_arg(p)
    p.add_argument("--suite", default=None, metavar="SUITE",
                   help="prompt suite that labels the prompts for clip-attributes: builtin:tiny-shapes (default) or "
                        "a suite file (TOML, e.g. analyses/prompts/compositional.toml)")


def metric_options(args: argparse.Namespace, names) -> dict[str, dict]:
    """Constructor options of the named metrics from ``--clip-model`` and ``--suite``."""
    from sdprobe.metrics.registry import CLIP_METRICS, SUITE_METRICS

    options: dict[str, dict] = {}
    for name in names:
        o = {}
        if getattr(args, "clip_model", None) is not None and name in CLIP_METRICS:
            o["clip_path"] = str(args.clip_model)
        if getattr(args, "suite", None) is not None and name in SUITE_METRICS:
            o["suite"] = str(args.suite)
        if o:
            options[name] = o
    return options


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


positive_int = arg(checks.positive_int, int)


def tracker_spec(text: str) -> str:
    """An argparse ``type`` for ``KIND:DIR`` tracker specs (checked without importing any tracker)."""
    from sdprobe.cli.choices import TRACKERS

    kind, sep, folder = text.partition(":")
    if not sep or kind not in TRACKERS or not folder.strip():
        raise argparse.ArgumentTypeError(f"expected KIND:DIR with KIND one of {', '.join(TRACKERS)}, got {text!r}")
    return text


tracker_spec.__name__ = "tracker"


def add_tracker_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracker", type=tracker_spec, default=None, metavar="KIND:DIR",
                   help="also log the finished runs (and report) to tensorboard:DIR or mlflow:DIR, local files only "
                        "(needs the trackers extra; default: off)")


def log_to_tracker(spec: str | None, runs: list, report=None) -> None:
    """Log finished run directories (and a report) to the tracker ``spec`` names; nothing when it is None."""
    if spec is None:
        return
    from sdprobe.trackers import log_run, open_tracker

    with open_tracker(spec) as tracker:
        for i, path in enumerate(runs):
            log_run(path, tracker, report=report if i == len(runs) - 1 else None)
