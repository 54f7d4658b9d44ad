"""What reading meanings with CLIP costs, per generated image, against generating it.

For one pipeline and one CLIP it times, in interleaved repetitions, (a) generating a batch of images with the sweep's
sampler settings and (b) reading the same images with ``clip-attributes`` (every attribute each prompt states) and
embedding them for ``fd-clip``, then prints the median of each per image and the ratio reading / generation.

Target: reading costs a small fraction of generation (the ratio well below 0.1), so a sweep judged by CLIP costs
about what a sweep judged by the oracle costs.

Usage:
    python benchmarks/clip_reading.py                        # organism + builtin:tiny-shapes-clip, CPU
    python benchmarks/clip_reading.py --quick                # seconds: checks that the script works
    python benchmarks/clip_reading.py --family sd2 --size full --clip /models/clip-vit-base-patch32 \\
        --suite analyses/prompts/compositional.toml --device cuda --steps 50 --n 16   # SD2-shaped, 512 px
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sdprobe.generate import GenerationConfig, generate
from sdprobe.metrics.clip_attributes import ClipAttributesMetric
from sdprobe.metrics.fd_clip import FDCLIPMetric


def _pipeline(args):
    if args.family == "organism":
        from sdprobe.models import load_pipeline

        return load_pipeline("builtin:tiny-shapes", device=args.device)
    from sdprobe.zoo import build_pipeline

    return build_pipeline(args.family, args.size, seed=0).to(args.device)


def _prompts(metric: ClipAttributesMetric, n: int, seed: int) -> list[str]:
    suite = metric.suite
    if suite.prompts:
        rng = np.random.default_rng(seed)
        return [suite.prompts[i] for i in rng.choice(len(suite.prompts), size=n, replace=len(suite.prompts) < n)]
    from sdprobe.world import format_prompt, sample_specs

    return [format_prompt(s) for s in sample_specs(n, np.random.default_rng(seed))]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="organism", choices=("organism", "sd15", "sd2", "sdxl"))
    p.add_argument("--size", default="tiny", choices=("tiny", "full"), help="zoo size for the SD families")
    p.add_argument("--clip", default="builtin:tiny-shapes-clip", help="CLIP folder or builtin:tiny-shapes-clip")
    p.add_argument("--suite", default="builtin:tiny-shapes", help="prompt suite (builtin:tiny-shapes or a TOML file)")
    p.add_argument("--n", type=int, default=64, help="images per repetition")
    p.add_argument("--steps", type=int, default=20, help="denoising steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="4 images, 2 steps, 1 repeat")
    args = p.parse_args()
    if args.quick:
        args.n, args.steps, args.repeats = 4, 2, 1
    torch.set_num_threads(args.threads)
    pipe = _pipeline(args)
    reader = ClipAttributesMetric(args.clip, suite=args.suite, device=args.device)
    fd = FDCLIPMetric(args.clip, device=args.device, n_boot=0)
    prompts = _prompts(reader, args.n, seed=0)
    seeds = list(range(args.n))
    config = GenerationConfig(steps=args.steps, batch_size=min(args.n, 64))
    reader.score(prompts[:2], generate(pipe, prompts[:2], seeds[:2], config))  # warm-up: text cache, kernels
    gen_times, read_times = [], []
    for _ in range(args.repeats):
        _sync(args.device)
        t0 = time.perf_counter()
        images = generate(pipe, prompts, seeds, config)
        _sync(args.device)
        t1 = time.perf_counter()
        reader.score(prompts, images)
        fd.features(images)
        _sync(args.device)
        t2 = time.perf_counter()
        gen_times.append((t1 - t0) / args.n)
        read_times.append((t2 - t1) / args.n)
    gen, read = statistics.median(gen_times), statistics.median(read_times)
    side = images.shape[1]
    print(f"{args.family} ({args.size}) at {side} px, {args.steps} steps, {args.device}, {args.threads} threads; "
          f"CLIP {args.clip}")
    print(f"generation      {1000 * gen:9.2f} ms per image")
    print(f"CLIP reading    {1000 * read:9.2f} ms per image (clip-attributes + fd-clip features)")
    print(f"ratio reading / generation: {read / gen:.3f}  (target well below 0.1: {'met' if read / gen < 0.1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
