"""Benchmark: moving between pruning levels with ProgressiveMask vs reloading and re-pruning.

On SD2's UNet (865.9M parameters) and text encoder (340.4M), built from their published configs with random
weights on the CPU (:func:`sdprobe.zoo.build_components`), this measures, per component and in one run:

* the time to move to the next level of a 0.005-step sweep, at a few levels around 0.35 and 0.5, with
  :class:`sdprobe.prune.ProgressiveMask`, and the naive way: ``load_state_dict`` from a saved state dict, then
  ``torch.nn.utils.prune.l1_unstructured`` and ``prune.remove`` on every Linear (magnitude, per matrix);
* their ratio (the target is >= 50x);
* the score computation time (magnitude scores, and the one-off sort when the mask is entered);
* the restore time, and that the restore is bit-exact;
* peak RSS of each phase, and the mask's held bytes, against the model's bytes;
* how many entries the two ways prune differently at one level (``l1_unstructured`` rounds ``amount * n``
  where the mask floors it, so at most one entry per tensor).

Usage:
    python benchmarks/level_switch.py            # full size: heavy (minutes, ~12 GB of RAM)
    python benchmarks/level_switch.py --tiny     # the same on tiny configs, in seconds
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.nn.utils import prune as torch_prune

from sdprobe.architecture import select
from sdprobe.prune import MagnitudeScorer, ProgressiveMask
from sdprobe.zoo import build_components

COMPONENTS = ("unet", "text_encoder")
TARGET_RATIO = 50.0  # the speed-up the progressive mask should reach over reloading


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since the last :func:`reset_peak_rss` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS; False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def sweep_levels(centres: list[float], step: float, per_side: int) -> list[list[float]]:
    """For each centre, the levels centre - per_side*step ... centre + per_side*step."""
    return [[round(c + i * step, 6) for i in range(-per_side, per_side + 1)] for c in centres]


def gib(n: float) -> str:
    """Bytes in GiB, or MiB below one GiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def bench_component(pipe, component: str, runs: list[list[float]], naive_per_run: int, max_sparsity: float) -> dict:
    module = getattr(pipe, component)
    refs = select(pipe, component)  # Linear weights, as in the SD2 study
    model_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    scope = sum(r.numel for r in refs)
    dense = weights_hash(module)
    out = {"component": component, "params": sum(p.numel() for p in module.parameters()), "scope": scope,
           "tensors": len(refs), "model_bytes": model_bytes}

    # --- progressive -----------------------------------------------------------------------------------
    gc.collect()
    reset_peak_rss()
    t0 = time.perf_counter()
    scores = MagnitudeScorer().scores(refs)
    out["score_s"] = time.perf_counter() - t0
    mask = ProgressiveMask(refs, scores, max_sparsity=max_sparsity)
    t0 = time.perf_counter()
    mask.__enter__()
    out["sort_s"] = time.perf_counter() - t0
    del scores
    moves, compare_level, zeros = [], runs[-1][naive_per_run], {}
    try:
        for levels in runs:
            mask.set_sparsity(levels[0])  # reposition to the run's first level (not a sweep step; not timed)
            for level in levels[1:]:
                t0 = time.perf_counter()
                mask.set_sparsity(level)
                moves.append(time.perf_counter() - t0)
        mask.set_sparsity(compare_level)
        zeros = {r.qualified_name: r.weight == 0 for r in refs}
        out["held_bytes"] = mask.memory_bytes()
    finally:
        t0 = time.perf_counter()
        mask.__exit__(None, None, None)
        out["restore_s"] = time.perf_counter() - t0
    out["restored_exactly"] = weights_hash(module) == dense
    out["progressive_peak_rss"] = peak_rss_bytes()
    out["progressive_move_s"] = moves

    # --- naive: reload the saved state dict and re-prune every Linear at each level ----------------------
    saved = {k: v.clone() for k, v in module.state_dict().items()}
    naive = []
    for levels in runs:
        for level in levels[1:naive_per_run + 1]:
            t0 = time.perf_counter()
            module.load_state_dict(saved)
            for r in refs:
                torch_prune.l1_unstructured(r.module, "weight", amount=level)
                torch_prune.remove(r.module, "weight")
            naive.append(time.perf_counter() - t0)
            if level == compare_level:
                out["differing_entries"] = sum(int(((r.weight == 0) != zeros[r.qualified_name]).sum()) for r in refs)
    module.load_state_dict(saved)
    del saved, zeros
    gc.collect()
    out["naive_level_s"] = naive
    out["naive_peak_rss"] = peak_rss_bytes()
    return out


def report(results: list[dict], rss_resettable: bool) -> list[str]:
    lines = []
    for r in results:
        move, naive = statistics.mean(r["progressive_move_s"]), statistics.mean(r["naive_level_s"])
        r["ratio"] = naive / move
        lines += [
            f"== {r['component']}: {r['params'] / 1e6:.1f}M parameters, {r['scope'] / 1e6:.1f}M in {r['tensors']} "
            f"Linear weights ({gib(r['model_bytes'])} of weights)",
            f"  scores (magnitude)        {r['score_s']:.3f} s",
            f"  sort on entering the mask {r['sort_s']:.3f} s",
            f"  next level, progressive   {move * 1e3:.2f} ms (mean of {len(r['progressive_move_s'])} moves, "
            f"max {max(r['progressive_move_s']) * 1e3:.2f} ms)",
            f"  next level, naive reload  {naive * 1e3:.1f} ms (mean of {len(r['naive_level_s'])} levels)",
            f"  ratio                     {r['ratio']:.0f}x (target >= {TARGET_RATIO:.0f}x)",
            f"  restore on exit           {r['restore_s']:.3f} s, bit-exact: {r['restored_exactly']}",
            f"  held by the mask          {gib(r['held_bytes'])} = {r['held_bytes'] / r['model_bytes']:.2f}x the "
            f"component's weights",
            f"  peak RSS, progressive     {gib(r['progressive_peak_rss'])}"
            + ("" if rss_resettable else " (process peak so far)"),
            f"  peak RSS, naive           {gib(r['naive_peak_rss'])} (holds a saved state dict)",
            f"  entries pruned differently from l1_unstructured at the compared level: "
            f"{r.get('differing_entries', 'n/a')} (rounding: at most one per tensor, {r['tensors']} tensors)",
        ]
    moves = [m for r in results for m in r["progressive_move_s"]]
    naive = [n for r in results for n in r["naive_level_s"]]
    total_move = sum(statistics.mean(r["progressive_move_s"]) for r in results)
    total_naive = sum(statistics.mean(r["naive_level_s"]) for r in results)
    lines.append(f"== all components: next level {total_move * 1e3:.2f} ms progressive vs {total_naive * 1e3:.1f} ms "
                 f"naive: {total_naive / total_move:.0f}x ({len(moves)} progressive moves, {len(naive)} naive levels)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny SD2 configs (seconds), for a smoke test")
    parser.add_argument("--centres", type=float, nargs="+", default=[0.35, 0.5], help="levels the sweeps centre on")
    parser.add_argument("--step", type=float, default=0.005, help="sweep step")
    parser.add_argument("--per-side", type=int, default=2, help="levels on each side of a centre")
    parser.add_argument("--naive-per-centre", type=int, default=2, help="naive levels timed per centre (slow)")
    parser.add_argument("--max-sparsity", type=float, default=0.95, help="the mask's max_sparsity")
    parser.add_argument("--components", nargs="+", default=list(COMPONENTS), choices=COMPONENTS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = "tiny" if args.tiny else "full"
    runs = sweep_levels(args.centres, args.step, args.per_side)
    t0 = time.perf_counter()
    parts = build_components("sd2", size, seed=0)
    pipe = SimpleNamespace(**{c: parts[c] for c in args.components})
    del parts
    gc.collect()
    print(f"built SD2 ({size}) {', '.join(args.components)} with random weights in {time.perf_counter() - t0:.1f} s; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; levels {runs}")
    rss_resettable = reset_peak_rss()
    print(f"RSS with the model built: {gib(peak_rss_bytes())}")
    results = [bench_component(pipe, c, runs, args.naive_per_centre, args.max_sparsity) for c in args.components]
    for line in report(results, rss_resettable):
        print(line)
    ok = all(r["restored_exactly"] for r in results)
    if not ok:
        print("ERROR: the weights were not restored exactly", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
