"""Benchmark: locating collapse thresholds with a coarse grid plus refinement vs a uniform fine grid.

On a model (``--model``, the tiny-shapes organism by default), magnitude pruning of the text encoder, two sweeps over
the same range ``[--lo, --hi]`` with the same prompts, seeds and metrics (the oracle's color, shape, position, size
and unreadable rate):

* **grid**: a uniform grid with step ``--resolution`` (0.005) and no refinement, what one would run without sdprobe;
* **refined**: sdprobe's default, a coarse grid with step ``--coarse`` (0.1) whose collapse brackets are bisected
  down to ``--resolution`` (:func:`sdprobe.sweep.run_sweep` with ``refine``).

For each it reports the evaluated levels and generated images, and the threshold of every meaning
(:func:`sdprobe.thresholds.run_thresholds`, the largest event of each). It prints how many times fewer images the refined sweep needed
(target >= 5x) and, for every event, whether both sweeps give it the same kind with each threshold inside the
other's 95% interval (the pass criterion: the same answer, up to the estimate's own uncertainty) and, for
information, whether the two thresholds lie within +-resolution (finer than a noisy curve's interval, so two
samplings of one curve may differ by more where the curve lingers at its bar). A meaning that does not collapse
must be "none" in both. The exit status is 1 when an event differs.

Both sweeps are ordinary run directories: by default in a temporary folder, removed at the end; with ``--out DIR``
they are kept as ``DIR/grid`` and ``DIR/refined``, and a rerun with the same arguments resumes them.

The fine grid is expensive: (hi - lo) / 0.005 + 1 levels of ``--n-prompts`` images each (191 levels over the full
0..0.95 range). The ratio grows with the range, as the grid pays for every level and refinement only for the
brackets; ``--lo/--hi`` narrower than the default therefore understate sdprobe's saving.

Usage:
    python benchmarks/threshold_search.py --model /tmp/train/tiny-shapes            # full: long on a CPU
    python benchmarks/threshold_search.py --model PATH --device cuda --out runs/bench-thresholds
    python benchmarks/threshold_search.py --model /tmp/orgtest/pipe --quick         # seconds; checks the script
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from sdprobe.generate import GenerationConfig
from sdprobe.models import load_pipeline
from sdprobe.runs import RunDir
from sdprobe.sweep import ComponentPlan, SweepConfig, run_sweep
from sdprobe.thresholds import run_thresholds
from sdprobe.world import MEANINGS

TARGET_RATIO = 5.0  # the refined sweep should need at least this many times fewer generations
QUANTITIES = (*MEANINGS, "unreadable")  # the oracle columns whose thresholds are compared
QUICK = {"n_prompts": 4, "steps": 2, "lo": 0.3, "hi": 0.6}  # --quick overrides: proves the script runs


def sweep_config(args: argparse.Namespace, step: float, refine: float | None) -> SweepConfig:
    return SweepConfig(model=args.model, components={"text_encoder": ComponentPlan(["text_encoder"])},
                       method="magnitude", start=args.lo, stop=args.hi, step=step, refine=refine,
                       n_prompts=args.n_prompts, seed=args.seed, n_samples=0, metrics=["oracle"],
                       generation=GenerationConfig(steps=args.steps, guidance=args.guidance,
                                                   batch_size=args.batch_size),
                       device=args.device)


def thresholds(run: RunDir, n_boot: int) -> pd.DataFrame:
    """Every event of every oracle quantity of a finished sweep, indexed by (metric, event); each metric is judged
    with its declared direction and floor, as ``sdprobe thresholds`` does."""
    table = run.results()
    metrics = [m for m in QUANTITIES if m in table.columns and table[m].notna().any()]
    return run_thresholds(run.path, metrics, n_boot=n_boot, write=False).set_index(["metric", "event"])


def agree(grid: pd.Series, refined: pd.Series, tolerance: float) -> bool:
    """Same kind, and thresholds within ``tolerance`` (both NaN for "none")."""
    if grid["kind"] != refined["kind"]:
        return False
    if math.isnan(grid["threshold"]) or math.isnan(refined["threshold"]):
        return math.isnan(grid["threshold"]) and math.isnan(refined["threshold"])
    return abs(grid["threshold"] - refined["threshold"]) <= tolerance + 1e-9


def within_intervals(grid: pd.Series, refined: pd.Series) -> bool:
    """Same kind, and each threshold inside the other's interval (both NaN for "none")."""
    if grid["kind"] != refined["kind"]:
        return False
    if math.isnan(grid["threshold"]) or math.isnan(refined["threshold"]):
        return math.isnan(grid["threshold"]) and math.isnan(refined["threshold"])
    return (refined["ci_low"] <= grid["threshold"] <= refined["ci_high"]
            and grid["ci_low"] <= refined["threshold"] <= grid["ci_high"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="builtin:tiny-shapes", help="pipeline to load (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--lo", type=float, default=0.0, help="first sparsity level (default: %(default)s)")
    p.add_argument("--hi", type=float, default=0.95, help="last sparsity level, below 1 (default: %(default)s)")
    p.add_argument("--resolution", type=float, default=0.005,
                   help="step of the fine grid and resolution of refinement (default: %(default)s)")
    p.add_argument("--coarse", type=float, default=0.1, help="step of sdprobe's coarse grid (default: %(default)s)")
    p.add_argument("--n-prompts", type=int, default=64, help="prompts (images) per level (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default: %(default)s)")
    p.add_argument("--guidance", type=float, default=GenerationConfig.guidance, help="classifier-free guidance (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="images per pipeline call (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="draws prompts and seeds (default: %(default)s)")
    p.add_argument("--n-boot", type=int, default=200,
                   help="bootstrap replicates of the thresholds' intervals (default: %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="keep (and resume) the two runs here (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help=f"small run to check the script works: {QUICK}")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.coarse > args.resolution:
        p.error(f"--coarse ({args.coarse}) must exceed --resolution ({args.resolution})")

    configs = {"grid": sweep_config(args, args.resolution, None),
               "refined": sweep_config(args, args.coarse, args.resolution)}  # both validate before the model loads
    pipe = load_pipeline(args.model, device=args.device)
    with tempfile.TemporaryDirectory(prefix="sdprobe-bench-") as tmp:
        root = args.out or Path(tmp)
        runs, seconds = {}, {}
        for name, config in configs.items():
            t0 = time.perf_counter()
            runs[name] = run_sweep(pipe, config, root / name)
            seconds[name] = time.perf_counter() - t0
        levels = {name: len(run.done_levels()) for name, run in runs.items()}
        images = {name: len(run.results()) for name, run in runs.items()}
        found = {name: thresholds(run, args.n_boot) for name, run in runs.items()}

    print(f"model {args.model}: text encoder, magnitude, levels {args.lo}..{args.hi}, {args.n_prompts} prompts, "
          f"{args.steps} steps")
    for name in runs:
        print(f"{name:8s} {levels[name]:4d} levels  {images[name]:6d} images  {seconds[name]:8.1f} s"
              f"{'  (a resumed run: time covers only the rest)' if args.out else ''}")
    ratio = images["grid"] / images["refined"]
    print(f"generations grid / refined: {ratio:.1f}x  (target >= {TARGET_RATIO:g}x: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'})")

    print(f"\n{'metric':11s} {'event':>5s} {'grid':>36s} {'refined':>36s}  within +-{args.resolution:g}  "
          "within both intervals")
    ok = True
    for key in found["grid"].index.union(found["refined"].index):
        if key not in found["grid"].index or key not in found["refined"].index:
            print(f"{key[0]:11s} {key[1]:5d} found in only one sweep")
            ok = False
            continue
        g, r = found["grid"].loc[key], found["refined"].loc[key]
        same = agree(g, r, args.resolution)
        ok &= within_intervals(g, r)
        cell = lambda x: f"{x['kind']:>8s} {x['threshold']:7.4f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]"  # noqa: E731
        print(f"{key[0]:11s} {key[1]:5d} {cell(g):>36s} {cell(r):>36s}  {'yes' if same else 'NO':>9s}  "
              f"{'yes' if within_intervals(g, r) else 'NO'}")
    if found["grid"].empty:
        print("no metric has values (the oracle read no stated attribute)")
    return 0 if ok and ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
