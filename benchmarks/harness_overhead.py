"""Benchmark: what sdprobe's sweep harness adds to the time of generating images.

The same images are generated two ways, in interleaved repetitions (the order alternates, so drift in machine load
falls on both):

* **sdprobe**: :func:`sdprobe.generate.generate` exactly as :func:`sdprobe.sweep.run_sweep` calls it, with the sweep's
  progressive masks entered (magnitude scores on the text encoder, so its weights are held by a
  :class:`sdprobe.prune.ProgressiveMask`) and set to level 0;
* **bare**: a plain diffusers call, ``pipe(prompt=..., generator=[torch.Generator().manual_seed(s), ...],
  num_inference_steps=..., guidance_scale=..., output_type="np")``, in the same batches.

Both draw each image's initial noise from a CPU generator seeded with its seed, so they must produce the same images;
the script checks that (max absolute pixel difference) before it reports the ratio of median times. The target is a
ratio <= 1.05. Entering the masks (scoring and sorting, once per sweep) is reported apart, as it is not paid per image.

Usage:
    python benchmarks/harness_overhead.py                                   # builtin:tiny-shapes, 64 prompts, 20 steps
    python benchmarks/harness_overhead.py --model /tmp/orgtest/pipe --quick # a few seconds
    python benchmarks/harness_overhead.py --model PATH --device cuda --repeats 9
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

from sdprobe.generate import GenerationConfig, generate
from sdprobe.models import load_pipeline
from sdprobe.sweep import ComponentPlan, SweepConfig, sweep_prompts
from sdprobe.sweep.run import calibration_prompts, progressive_masks

TARGET_RATIO = 1.05  # sdprobe's median time may exceed the bare pipeline's by at most this factor
SAME_IMAGES_ATOL = 1e-5  # the two paths must agree to this max absolute pixel difference
QUICK = {"n_prompts": 4, "steps": 2, "repeats": 3}  # --quick overrides


def bare_generate(pipe, prompts: list[str], seeds: list[int], config: GenerationConfig) -> np.ndarray:
    """The plain diffusers call, batched like :func:`sdprobe.generate.generate`; (N, H, W, 3) float32."""
    out = []
    size = {k: v for k, v in (("height", config.height), ("width", config.width)) if v is not None}
    for start in range(0, len(prompts), config.batch_size):
        batch = slice(start, start + config.batch_size)
        images = pipe(
            prompt=prompts[batch],
            generator=[torch.Generator().manual_seed(int(s)) for s in seeds[batch]],
            num_inference_steps=config.steps,
            guidance_scale=config.guidance,
            output_type="np",
            **size,
        ).images  # (B, H, W, 3)
        out.append(np.asarray(images, dtype=np.float32))
    return np.concatenate(out)


def synchronize() -> None:
    """Wait for queued GPU work, so that a clock read next counts it (nothing to do without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, *args) -> tuple[float, np.ndarray]:
    synchronize()
    t0 = time.perf_counter()
    result = fn(*args)
    synchronize()
    return time.perf_counter() - t0, result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="builtin:tiny-shapes", help="pipeline to load (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--n-prompts", type=int, default=64, help="images per repetition (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default: %(default)s)")
    p.add_argument("--guidance", type=float, default=GenerationConfig.guidance,
                   help="classifier-free guidance (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per pipeline call (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions of each path (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="draws the prompts and seeds (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help=f"small run to check the script works: {QUICK}")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.repeats < 1 or args.n_prompts < 1:
        p.error("--repeats and --n-prompts must be positive")

    generation = GenerationConfig(steps=args.steps, guidance=args.guidance, batch_size=args.batch_size)
    config = SweepConfig(model=args.model, components={"text_encoder": ComponentPlan(["text_encoder"])},
                         method="magnitude", refine=None, n_prompts=args.n_prompts, seed=args.seed,
                         generation=generation, device=args.device)
    pipe = load_pipeline(args.model, device=args.device)
    prompts, seeds = sweep_prompts(config)
    print(f"model {args.model} on {args.device} ({torch.get_num_threads()} threads): {len(prompts)} images, "
          f"{args.steps} steps, guidance {args.guidance}, batch {args.batch_size}, {args.repeats} repetitions")

    t_enter = time.perf_counter()
    with progressive_masks(pipe, config, calibration_prompts(config, prompts)) as masks:
        t_enter = time.perf_counter() - t_enter
        for mask in masks.values():
            mask.set_sparsity(0.0)
        paths = {"sdprobe": lambda: generate(pipe, prompts, seeds, generation),
                 "bare": lambda: bare_generate(pipe, prompts, seeds, generation)}
        _, ours = timed(paths["sdprobe"])  # warm-up of both paths (first calls allocate and compile)
        _, theirs = timed(paths["bare"])
        diff = float(np.nanmax(np.abs(ours - theirs)))
        times: dict[str, list[float]] = {name: [] for name in paths}
        for r in range(args.repeats):
            order = list(paths) if r % 2 == 0 else list(paths)[::-1]
            for name in order:
                times[name].append(timed(paths[name])[0])

    med = {name: statistics.median(ts) for name, ts in times.items()}
    ratio = med["sdprobe"] / med["bare"]
    print(f"entering the masks (scores + sort, once per sweep): {t_enter:.3f} s")
    for name, ts in times.items():
        print(f"{name:8s} median {med[name]:.3f} s  ({med[name] / len(prompts) * 1e3:.1f} ms/image)  "
              f"runs: {', '.join(f'{t:.3f}' for t in ts)}")
    same = diff <= SAME_IMAGES_ATOL
    print(f"same images: {'yes' if same else 'NO'} (max |difference| {diff:.2e}, tolerance {SAME_IMAGES_ATOL:.0e})")
    print(f"ratio sdprobe / bare: {ratio:.3f}  (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'NOT met'})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
