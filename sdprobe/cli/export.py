"""``sdprobe export``: save a sweep run's pipeline pruned at one level as a stock diffusers folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import DTYPES


def parse_sparsity(items: list[str]) -> float | dict[str, float]:
    """``["0.35"]`` -> 0.35 (a level); ``["text_encoder=0.475", "unet=0.35"]`` -> a per-component budget."""
    if len(items) == 1 and "=" not in items[0]:
        try:
            return float(items[0])
        except ValueError:
            raise ValueError(f"--sparsity expects a number or COMPONENT=VALUE pairs, got {items[0]!r}") from None
    budget: dict[str, float] = {}
    for item in items:
        component, sep, value = item.partition("=")
        try:
            if not sep or not component:
                raise ValueError
            budget[component] = float(value)
        except ValueError:
            raise ValueError(f"--sparsity expects one number or COMPONENT=VALUE pairs such as text_encoder=0.475, "
                             f"got {item!r}") from None
    if len(budget) != len(items):
        raise ValueError(f"--sparsity names a component twice: {' '.join(items)}")
    return budget


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="save a run's pipeline pruned at one level (safetensors)",
                       description="Rebuild a sweep run's pruning (same method, selectors and seed) at one level, "
                                   "and save the pruned pipeline as a diffusers folder that "
                                   "DiffusionPipeline.from_pretrained loads. Zero counts are read back from the "
                                   "saved files and written to OUT/sdprobe_export.json.")
    p.add_argument("run", type=Path, metavar="RUN_DIR", help="a sweep run directory")
    p.add_argument("--sparsity", nargs="+", required=True, metavar="S",
                   help="a level of the run, e.g. 0.35, or one COMPONENT=VALUE per pruned component, "
                        "e.g. text_encoder=0.475 unet=0.35")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder (missing or empty)")
    p.add_argument("--nm", default=None, metavar="N:M",
                   help="also give the pruned Linear weights an N:M layout, e.g. 2:4 (torch semi-structured sparsity)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--device", default=None, help="where to load and score (default: the run's device)")
    p.add_argument("--dtype", default=None, choices=DTYPES, help="weight dtype (default: the run's dtype)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdprobe.export import export_pruned

    result = export_pruned(args.run, parse_sparsity(args.sparsity), args.out, nm=args.nm, overwrite=args.overwrite,
                           device=args.device, dtype=args.dtype)
    print(result.path)
    for component, z in result.zeros.items():
        print(f"  {component}: {z['zeros']} / {z['numel']} zero ({z['sparsity']:.4f})")
    return 0
