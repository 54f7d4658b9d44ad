"""Benchmark: moving between pruning levels with ProgressiveMask vs reloading and re-pruning.

On SD2's UNet (865.9M parameters) and text encoder (340.4M), built from their published configs with random
weights on the CPU (:func:`sdprobe.zoo.build_components`), this measures, per component and in one run:

* the time to move to the next level of a 0.005-step sweep, at a few levels around 0.35 and 0.5, with
  :class:`sdprobe.prune.ProgressiveMask`, and the naive way: ``load_state_dict`` from a saved state dict, then
  ``torch.nn.utils.prune.l1_unstructured`` and ``prune.remove`` on every Linear (magnitude, per matrix);
* their ratio (the target is >= 50x);
* the score computation time (magnitude scores, and the one-off sort when the mask is entered);
* the restore time, and that the restore is bit-exact;
* the peak memory of the progressive phase (scores, sort, moves and restore) above the model, against the
  model's bytes: process RSS on the CPU, allocated device memory on CUDA (target: model + mask <= 1.3x the model),
  and the bytes the mask keeps and where (``--store``: ``auto`` keeps them off the model's memory, in a temporary
  file on the CPU and in pinned host memory for CUDA; ``memory`` keeps them beside the weights). The peak also
  holds the benchmark's own record of the compared level's zeros (one bit per entry, about 3% of an fp32 model);
* how many entries the two ways prune differently at one level (``l1_unstructured`` rounds ``amount * n``
  where the mask floors it, so at most one entry per tensor).

Usage:
    python benchmarks/level_switch.py            # full size: heavy (minutes, ~12 GB of RAM)
    python benchmarks/level_switch.py --tiny     # the same on tiny configs, in seconds
    python benchmarks/level_switch.py --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch.nn.utils import prune as torch_prune

from sdprobe.architecture import select
from sdprobe.prune import STORES, MagnitudeScorer, ProgressiveMask
from sdprobe.prune.flat import MOVES
from sdprobe.zoo import build_components

COMPONENTS = ("unet", "text_encoder")
TARGET_RATIO = 50.0  # the speed-up the progressive mask should reach over reloading
TARGET_MEMORY = 1.3  # model + mask at their peak, as a multiple of the model's own bytes


def status_bytes(field: str) -> int:
    """A memory field of this process's ``/proc/self/status`` in bytes (Linux), e.g. ``VmRSS``; 0 where absent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since the last :func:`reset_peak_rss`."""
    return status_bytes("VmHWM")


def current_rss_bytes() -> int:
    return status_bytes("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS; False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Clock:
    """Wall-clock timing that waits for queued CUDA work."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


class PeakMemory:
    """Peak memory above a baseline: allocated CUDA memory on a GPU, process RSS on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.what = "allocated CUDA memory" if self.cuda else "process RSS"

    def now(self) -> int:
        return torch.cuda.memory_allocated() if self.cuda else current_rss_bytes()

    def start(self) -> None:
        gc.collect()
        release_freed_memory()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            reset_peak_rss()
        self.base = self.now()

    def extra(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        return peak_rss_bytes() - self.base


def zero_bits(weight: torch.Tensor) -> np.ndarray:
    """Which entries are zero, packed 8 to a byte."""
    return np.packbits((weight == 0).reshape(-1).cpu().numpy())


def release_freed_memory() -> None:
    """Return the C heap's free pages to the system (glibc), so memory freed by an earlier phase cannot be reused
    unseen and hide a phase's own peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass



def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def sweep_levels(centres: list[float], step: float, per_side: int) -> list[list[float]]:
    """For each centre, the levels centre - per_side*step ... centre + per_side*step."""
    return [[round(c + i * step, 6) for i in range(-per_side, per_side + 1)] for c in centres]


def gib(n: float) -> str:
    """Bytes in GiB, or MiB below one GiB."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.2f} MiB"


def progressive_phase(module, refs, runs, compare_level: float, max_sparsity: float, store: str,
                      device: torch.device, moves: str, dense: str) -> tuple[dict, dict]:
    """Enter a mask, time the sweep's moves, record the compared level's zeros, restore; with the phase's peak."""
    clock, memory = Clock(device), PeakMemory(device)
    out = {}
    memory.start()
    t0 = clock()
    scores = MagnitudeScorer().lazy_scores(refs)  # computed one tensor at a time as the mask sorts them
    mask = ProgressiveMask(refs, scores, max_sparsity=max_sparsity, store=store, moves=moves)
    out["score_s"] = clock() - t0
    t0 = clock()
    mask.__enter__()
    out["sort_s"] = clock() - t0
    out["store"], out["moves"] = str(mask.store or "memory"), mask.moves
    del scores
    times, zeros = [], {}
    try:
        for levels in runs:
            mask.set_sparsity(levels[0])  # reposition to the run's first level (not a sweep step; not timed)
            for level in levels[1:]:
                t0 = clock()
                mask.set_sparsity(level)
                times.append(clock() - t0)
        mask.set_sparsity(compare_level)
        zeros = {r.qualified_name: zero_bits(r.weight) for r in refs}  # 1 bit per entry, counted in the peak
        out["held_bytes"], out["stored_bytes"] = mask.memory_bytes(), mask.stored_bytes()
    finally:
        t0 = clock()
        mask.__exit__(None, None, None)
        out["restore_s"] = clock() - t0
    out["progressive_extra"] = memory.extra()
    out["memory_what"] = memory.what
    out["restored_exactly"] = weights_hash(module) == dense
    out["progressive_move_s"] = times
    gc.collect()
    return zeros, out


def bench_component(pipe, component: str, runs: list[list[float]], naive_per_run: int, max_sparsity: float,
                    store: str, device: torch.device, moves: list[str]) -> dict:
    module = getattr(pipe, component)
    refs = select(pipe, component)  # Linear weights, as in the SD2 study
    model_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    scope = sum(r.numel for r in refs)
    dense = weights_hash(module)
    out = {"component": component, "params": sum(p.numel() for p in module.parameters()), "scope": scope,
           "tensors": len(refs), "model_bytes": model_bytes, "progressive": {}}
    compare_level, zeros = runs[-1][naive_per_run], {}
    for how in moves:  # side by side: one progressive phase per way of moving
        zeros = {}  # the last phase's record of zeros is compared with the naive way
        zeros, out["progressive"][how] = progressive_phase(module, refs, runs, compare_level, max_sparsity, store,
                                                           device, how, dense)
    clock = Clock(device)

    # --- naive: reload the saved state dict and re-prune every Linear at each level ----------------------
    saved = {k: v.clone() for k, v in module.state_dict().items()}
    naive = []
    for levels in runs:
        for level in levels[1:naive_per_run + 1]:
            t0 = clock()
            module.load_state_dict(saved)
            for r in refs:
                torch_prune.l1_unstructured(r.module, "weight", amount=level)
                torch_prune.remove(r.module, "weight")
            naive.append(clock() - t0)
            if level == compare_level:
                out["differing_entries"] = sum(int(np.unpackbits(zero_bits(r.weight) ^ zeros[r.qualified_name]).sum())
                                               for r in refs)
    module.load_state_dict(saved)
    del saved, zeros
    gc.collect()
    out["naive_level_s"] = naive
    return out


def report(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        naive = statistics.mean(r["naive_level_s"])
        lines += [f"== {r['component']}: {r['params'] / 1e6:.1f}M parameters, {r['scope'] / 1e6:.1f}M in "
                  f"{r['tensors']} Linear weights ({gib(r['model_bytes'])} of weights)",
                  f"  next level, naive reload  {naive * 1e3:.1f} ms (mean of {len(r['naive_level_s'])} levels)",
                  f"  entries pruned differently from l1_unstructured at the compared level: "
                  f"{r.get('differing_entries', 'n/a')} (rounding: at most one per tensor, {r['tensors']} tensors)"]
        for how, p in r["progressive"].items():
            move = statistics.mean(p["progressive_move_s"])
            p["ratio"] = naive / move
            p["memory_ratio"] = (r["model_bytes"] + max(p["progressive_extra"], 0)) / r["model_bytes"]
            lines += [
                f"  -- moves {how} ({p['moves']}), store {p['store']}",
                f"  scores (magnitude)        {p['score_s']:.3f} s",
                f"  sort on entering the mask {p['sort_s']:.3f} s",
                f"  next level, progressive   {move * 1e3:.2f} ms (mean of {len(p['progressive_move_s'])} moves, "
                f"max {max(p['progressive_move_s']) * 1e3:.2f} ms)",
                f"  ratio                     {p['ratio']:.0f}x (target >= {TARGET_RATIO:.0f}x)",
                f"  restore on exit           {p['restore_s']:.3f} s, bit-exact: {p['restored_exactly']}",
                f"  kept by the mask          {gib(p['stored_bytes'])} in {p['store']} ({gib(p['held_bytes'])} in "
                f"memory = {p['held_bytes'] / r['model_bytes']:.2f}x the component's weights)",
                f"  peak memory, progressive  {gib(p['progressive_extra'])} of {p['memory_what']} above the model: "
                f"model + mask = {p['memory_ratio']:.2f}x the model (target <= {TARGET_MEMORY}x)",
            ]
    naive = sum(statistics.mean(r["naive_level_s"]) for r in results)
    for how in results[0]["progressive"]:
        move = sum(statistics.mean(r["progressive"][how]["progressive_move_s"]) for r in results)
        lines.append(f"== all components, moves {how}: next level {move * 1e3:.2f} ms progressive vs "
                     f"{naive * 1e3:.1f} ms naive: {naive / move:.0f}x")
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
    parser.add_argument("--store", default="auto", choices=STORES, help="where the mask keeps originals "
                        "(default: %(default)s: a temporary file on the CPU, pinned host memory for CUDA)")
    parser.add_argument("--moves", nargs="+", default=["auto"], choices=MOVES,
                        help="how the mask moves between levels; several are timed side by side (default: auto: "
                             "batched for CUDA weights, tensor by tensor on the CPU)")
    parser.add_argument("--device", default="cpu", help="torch device of the model (default: %(default)s)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                        help="the model's dtype (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = "tiny" if args.tiny else "full"
    runs = sweep_levels(args.centres, args.step, args.per_side)
    t0 = time.perf_counter()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    parts = build_components("sd2", size, seed=0)
    pipe = SimpleNamespace(**{c: parts[c].to(device=device, dtype=dtype) for c in args.components})
    del parts
    gc.collect()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"built SD2 ({size}) {', '.join(args.components)} with random weights in {time.perf_counter() - t0:.1f} s; "
          f"{name}, {args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads; levels {runs}")
    if device.type == "cpu" and not reset_peak_rss():
        print("ERROR: this system does not let a process reset its peak RSS; memory cannot be measured per phase",
              file=sys.stderr)
        return 1
    print(f"RSS with the model built: {gib(current_rss_bytes())}")
    results = [bench_component(pipe, c, runs, args.naive_per_centre, args.max_sparsity, args.store, device,
                               args.moves) for c in args.components]
    for line in report(results):
        print(line)
    ok = all(p["restored_exactly"] for r in results for p in r["progressive"].values())
    if not ok:
        print("ERROR: the weights were not restored exactly", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
