"""Benchmark: images per second of a whole sweep against a bare diffusers pipeline generating as many images.

A sweep pays, besides generation, for its level moves, its metrics (the oracle reads every image), the sample
strips and the run directory's files, and once for scoring and sorting the weights when its masks are entered.
This script generates the same prompts and seeds, in the same batches, three ways in one run:

* **bare**: plain ``pipe(prompt=..., generator=..., num_inference_steps=..., guidance_scale=...)`` calls, as many
  images as the sweep makes, before and after the sweep (their mean is the reference);
* **sweep**: :func:`sdprobe.sweep.run_sweep` over ``--levels`` levels (plus the dense level 0), text encoder and
  UNet pruned by magnitude, every image read by the oracle;
* **one-off**: inside that sweep, entering its masks (scoring and sorting the weights) and leaving them (the exact
  restore), timed where the sweep pays them.

It prints the images per second of each, and the sweep's steady rate (its wall time less its one-off costs)
against the bare rate. The target is >= 0.95 on a GPU at Stable Diffusion's own settings (SD2-shaped components,
512 px, 50 steps, float16); on a CPU with the organism it shows what the harness costs per image there.

Usage:
    python benchmarks/sweep_throughput.py --quick                                  # organism, seconds
    python benchmarks/sweep_throughput.py --family sd2 --size full --dtype float16 --device cuda \\
        --height 512 --width 512 --steps 50 --n-images 16 --levels 4             # the GPU figure
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import torch

from harness_overhead import bare_generate, synchronize, timed  # the same bare call and clock, from this folder
import sdprobe.sweep.run as sweep_module
from sdprobe.generate import GenerationConfig
from sdprobe.sweep import ComponentPlan, SweepConfig, run_sweep, sweep_prompts

TARGET_RATIO = 0.95  # the sweep's steady images per second over the bare pipeline's
QUICK = {"n_images": 4, "levels": 2, "steps": 2}  # --quick overrides


def build(args: argparse.Namespace):
    """The pipeline: the organism (or a folder) loaded, or an SD family's components with random weights."""
    dtype = getattr(torch, args.dtype)
    if args.family is None:
        from sdprobe.models import load_pipeline

        return load_pipeline(args.model, device=args.device, dtype=dtype)
    from sdprobe.zoo import build_pipeline

    return build_pipeline(args.family, args.size, seed=0).to(device=args.device, dtype=dtype)


def bare(pipe, prompts: list[str], seeds: list[int], generation: GenerationConfig, rounds: int) -> float:
    """Seconds for ``rounds`` passes over the prompts with plain pipeline calls in the sweep's batches."""
    return sum(timed(bare_generate, pipe, prompts, seeds, generation)[0] for _ in range(rounds))


@contextlib.contextmanager
def one_off_costs():
    """Time, inside every sweep run while this is entered, how long entering and leaving its masks take.

    Yields a dict that receives ``entry`` and ``exit`` (seconds) and ``moves`` (the masks' kinds of moves).
    """
    real, found = sweep_module.progressive_masks, {}

    @contextlib.contextmanager
    def timed_masks(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            synchronize()
            t0 = time.perf_counter()
            masks = stack.enter_context(real(*args, **kwargs))
            synchronize()
            found["entry"] = time.perf_counter() - t0
            found["moves"] = sorted({m.moves for m in masks.values()})
            yield masks
            synchronize()
            t1 = time.perf_counter()
        synchronize()
        found["exit"] = time.perf_counter() - t1

    sweep_module.progressive_masks = timed_masks
    try:
        yield found
    finally:
        sweep_module.progressive_masks = real


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="builtin:tiny-shapes", help="pipeline to load (default: %(default)s)")
    p.add_argument("--family", default=None, choices=("sd15", "sd2", "sdxl"),
                   help="build this family's components with random weights instead of loading --model")
    p.add_argument("--size", default="tiny", choices=("tiny", "full"), help="zoo size for --family")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=GenerationConfig.guidance)
    p.add_argument("--height", type=int, default=None, help="pixels (default: the UNet's native size)")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--n-images", type=int, default=16, help="prompts per level (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--levels", type=int, default=4, help="pruned levels besides level 0 (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quick", action="store_true", help=f"check that the script works: {QUICK}")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.levels < 1 or args.n_images < 1:
        p.error("--levels and --n-images must be positive")

    pipe = build(args)
    generation = GenerationConfig(steps=args.steps, guidance=args.guidance, batch_size=args.batch_size,
                                  height=args.height, width=args.width)
    step = 0.05
    config = SweepConfig(model=args.model if args.family is None else f"zoo:{args.family}-{args.size}",
                         components={"text_encoder": ComponentPlan(["text_encoder"]), "unet": ComponentPlan(["unet"])},
                         method="magnitude", start=step, stop=step * args.levels, step=step, refine=None,
                         n_prompts=args.n_images, n_samples=min(4, args.n_images), metrics=["oracle"],
                         generation=generation, device=args.device, dtype=args.dtype)
    prompts, seeds = sweep_prompts(config)
    levels = len(config.grid())
    name = torch.cuda.get_device_name() if str(args.device).startswith("cuda") else "CPU"
    print(f"{config.model} on {name} ({args.dtype}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"{torch.get_num_threads()} threads): {levels} levels x {len(prompts)} images, {args.steps} steps, "
          f"batch {args.batch_size}, {args.height or 'native'} x {args.width or 'native'} px")

    bare(pipe, prompts[:args.batch_size], seeds[:args.batch_size], generation, 1)  # warm-up
    before = bare(pipe, prompts, seeds, generation, levels)

    with tempfile.TemporaryDirectory() as tmp, one_off_costs() as one_off:
        swept, run = timed(run_sweep, pipe, config, Path(tmp) / "run", False)
        images = len(run.results())
    after = bare(pipe, prompts, seeds, generation, levels)
    reference = (before + after) / 2
    n = levels * len(prompts)
    if images != n:
        print(f"ERROR: the sweep made {images} images, expected {n}", file=sys.stderr)
        return 1
    steady = swept - one_off["entry"] - one_off["exit"]
    rate_bare, rate_steady, rate_all = n / reference, n / steady, n / swept
    ratio = rate_steady / rate_bare
    print(f"bare pipeline     {rate_bare:8.3f} images/s  ({before:.2f} s before, {after:.2f} s after the sweep)")
    print(f"sweep, steady     {rate_steady:8.3f} images/s  ({swept:.2f} s less {one_off['entry']:.2f} s entering "
          f"and {one_off['exit']:.2f} s leaving the masks; moves: {', '.join(one_off['moves'])})")
    print(f"sweep, with entry {rate_all:8.3f} images/s")
    print(f"ratio sweep (steady) / bare: {ratio:.3f}  (target >= {TARGET_RATIO}: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
