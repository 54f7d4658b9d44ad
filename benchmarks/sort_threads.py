"""The one-off sort of a progressive mask, on 1 thread and on every core, side by side in one run.

For full-size SD2 components with random weights (the UNet's 216 and the text encoder's 138 Linear weights),
this times entering a magnitude ``ProgressiveMask`` (score, sort, gather and store every tensor; the store as a
sweep uses it, ``auto``) with ``torch.set_num_threads(1)`` and then with ``N`` threads, and prints the ratio. It
also times the sort the mask used before, a stable float ``argsort`` of each matrix (one thread whatever the
setting), over the same tensors, so the table shows what the integer-key radix sort gains on its own.

Target: at most 10 s per component on 2 CPU cores. Exit status 1 when a component misses it, or when the two
thread counts do not give the same mask (both orders are hashed).

With ``--device cuda`` the weights live on the GPU and the mask keeps its data in pinned host memory (``auto``),
so the sort runs on the host exactly as a GPU sweep's does (target: at most 5 s per component there); the last
column then times the device's own sort (store ``memory``) for comparison.

Usage:
    python benchmarks/sort_threads.py              # full size, 1 thread vs all CPUs this process may use
    python benchmarks/sort_threads.py --tiny       # tiny configs, a smoke test in seconds
    python benchmarks/sort_threads.py --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import sys
import time
from types import SimpleNamespace

import torch

from sdprobe.architecture import select
from sdprobe.prune import MagnitudeScorer, ProgressiveMask
from sdprobe.zoo import build_components

COMPONENTS = ("unet", "text_encoder")
TARGET_S = 10.0  # the most seconds one component's sort may take on 2 cores
TARGET_GPU_S = 5.0  # ... for a GPU pipeline with the host store
MAX_SPARSITY = 0.95  # the mask's highest level, as in the study's sweeps


def enter_mask(refs, threads: int, store: str = "auto") -> tuple[float, str]:
    """Seconds to enter a magnitude mask with ``threads`` torch threads, and a hash of its pruned set at 0.5."""
    torch.set_num_threads(threads)
    gc.collect()
    t0 = time.perf_counter()
    mask = ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs), max_sparsity=MAX_SPARSITY, store=store)
    mask.__enter__()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    try:
        digest = hashlib.sha256()
        for name, idx in sorted(mask.candidates(0.0, 0.5).items()):  # the entries pruned at 0.5, per tensor
            digest.update(name.encode())
            digest.update(idx.cpu().numpy().tobytes())
    finally:
        mask.__exit__(None, None, None)
    return seconds, digest.hexdigest()


def float_argsort(refs) -> float:
    """Seconds of the former sort: a stable float argsort of each weight's magnitudes (single-threaded in torch)."""
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for r in refs:
        torch.argsort(r.weight.detach().abs().float().cpu().reshape(1, -1), dim=1, stable=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny SD2 configs, for a smoke test")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="the multi-threaded setting (default: the CPUs this process may use)")
    parser.add_argument("--components", nargs="+", default=list(COMPONENTS), choices=COMPONENTS)
    parser.add_argument("--device", default="cpu", help="where the weights live (default: %(default)s)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "full"
    gpu = torch.device(args.device).type == "cuda"
    parts = {c: m.to(device=args.device, dtype=getattr(torch, args.dtype))
             for c, m in build_components("sd2", size, seed=0).items() if c in args.components}
    target = TARGET_GPU_S if gpu else TARGET_S
    where = f"{torch.cuda.get_device_name(args.device)}, host store" if gpu else "CPU"
    print(f"SD2 ({size}), random weights, {args.dtype} on {where}, torch {torch.__version__}; "
          f"threads 1 vs {args.threads}")
    print(f"{'component':<13} {'Linear':>8} {'entries':>12} {'float argsort':>14} {'mask, 1 thread':>15} "
          f"{f'mask, {args.threads} threads':>17} {'ratio':>6}" + (f" {'device sort':>12}" if gpu else ""))
    ok = True
    for component in args.components:
        refs = select(SimpleNamespace(**parts), component)
        entries = sum(r.numel for r in refs)
        old = float_argsort(refs)
        one, h1 = enter_mask(refs, 1)
        many, hn = enter_mask(refs, args.threads)
        device_sort = ""
        if gpu:
            on_device, hd = enter_mask(refs, args.threads, store="memory")
            hn = hn if hd == hn else "differs"
            device_sort = f" {on_device:>11.1f}s"
        same = h1 == hn
        ok &= same and (args.tiny or many <= target)
        print(f"{component:<13} {len(refs):>8} {entries:>12,} {old:>13.1f}s {one:>14.1f}s {many:>16.1f}s "
              f"{one / many:>5.2f}x" + device_sort + ("" if same else "  ERROR: the masks differ"))
    print(f"target: at most {target:.0f} s per component with {args.threads} threads "
          f"({'met' if ok else 'NOT met'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
