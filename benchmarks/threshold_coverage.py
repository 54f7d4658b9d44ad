"""Benchmark: collapse detection on synthetic curves whose answer is known.

Two tables, both from :mod:`sdprobe.thresholds.synthetic` (no model needed; about a minute on one CPU core):

* **Coverage.** ``--curves`` (200) steps at random positions in [0.3, 0.85], sharp or up to 0.01 wide, with 16-64
  seeds, a 0.02 or 0.05 grid with a random offset, half of them refined to 0.005 as a sweep refines. How often the
  95% interval contains the true step (target >= 0.90), and its median width.
* **Kinds.** ``--repeats`` (20) noisy samples of each shape: a sharp step, two steps (0.5 and 0.8), linear ramps,
  the SD2 UNet's shape (holds until 0.35, then declines ever faster to 0.75) cut at several sweep ends, and a flat
  curve. Each sample is judged by :func:`sdprobe.thresholds.detect` against the floor 0 (accuracy-like); the table
  counts the calls (kind x number of events) and the spread of the headline threshold. "paired" samples keep each
  seed's draw along the sweep, as a seeded sweep does; "unpaired" samples draw afresh at every level (harder).
* **Refinement from a coarse grid.** The same shapes over 0..0.95 (and two close steps, 0.8 and 0.87, like the
  organism's color), each swept as ``sdprobe sweep`` does: a coarse grid of 0.05 or 0.1, then refinement to 0.005
  (:func:`sdprobe.thresholds.synthetic.refined_table`). Calls, thresholds and the levels each grid needed, side by
  side: the calls and thresholds of `sdprobe sweep`'s default grid (0.1) must match the 0.05 grid's.

Usage:
    python benchmarks/threshold_coverage.py
    python benchmarks/threshold_coverage.py --curves 50 --repeats 5    # seconds
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np

from sdprobe.thresholds import detect
from sdprobe.thresholds.synthetic import (
    accelerating,
    coverage_study,
    ramp,
    refined_table,
    sample_table,
    sigmoid,
    two_steps,
)

TARGET_COVERAGE = 0.90
GRID = np.round(np.arange(0.0, 0.9501, 0.05), 4)


def shapes() -> list[tuple[str, object, np.ndarray, str]]:
    """(name, shape, levels, expected call)."""
    out = [("step at 0.62", sigmoid(0.62, 0.0), GRID, "sudden x1"),
           ("two steps 0.5, 0.8", two_steps(0.5, 0.8), GRID, "sudden x2"),
           ("ramp 0.2-0.8", ramp(0.2, 0.8), GRID, "gradual x1"),
           ("ramp 0.4-0.7", ramp(0.4, 0.7), GRID, "gradual x1"),
           ("flat 0.9", lambda s: np.full(len(s), 0.9), GRID, "none")]
    for stop in (0.65, 0.7, 0.8, 0.9):
        levels = np.round(np.arange(0.0, stop + 1e-9, 0.025), 4)
        out.append((f"SD2-UNet shape cut at {stop}", accelerating(0.35, 0.75), levels, "gradual x1"))
    return out


COARSE = (0.05, 0.1)  # grids compared by the refinement table; 0.1 is `sdprobe sweep`'s default


def refinement_shapes() -> list[tuple[str, object, str]]:
    """(name, shape, expected call) swept over 0..0.95 from a coarse grid."""
    return [("step at 0.62", sigmoid(0.62, 0.0), "sudden x1"),
            ("two steps 0.5, 0.8", two_steps(0.5, 0.8), "sudden x2"),
            ("two steps 0.6, 0.7", two_steps(0.6, 0.7), "sudden x2"),
            ("two steps 0.8, 0.87", two_steps(0.8, 0.87), "sudden x2"),
            ("ramp 0.2-0.8", ramp(0.2, 0.8), "gradual x1"),
            ("ramp 0.4-0.7", ramp(0.4, 0.7), "gradual x1"),
            ("SD2-UNet shape", accelerating(0.35, 0.75), "gradual x1"),
            ("flat 0.9", lambda s: np.full(len(s), 0.9), "none")]


def refinement(repeats: int, seeds: int) -> None:
    """Print, per shape, each coarse grid's calls and mean levels, and in how many repeats the two agree."""
    print(f"\n{'refined from a coarse grid':28s} {'expected':11s} " + " ".join(f"{'grid ' + str(c):>26s}" for c in COARSE)
          + "  same calls and thresholds")
    for name, shape, expected in refinement_shapes():
        cells, answers = [], []
        for coarse in COARSE:
            grid = np.unique(np.append(np.round(np.arange(0.0, 0.9501, coarse), 4), 0.95))
            counts, levels, got = collections.Counter(), [], []
            for rep in range(repeats):
                table = refined_table(shape, grid, 0.005, seeds, seed=rep, floor=0.0)
                r = detect(table, x="level", y="acc", floor=0.0, n_boot=0)
                counts[call(r)] += 1
                levels.append(table["level"].nunique())
                got.append((call(r), tuple(round(e.threshold, 4) for e in r.events)))
            cells.append(f"{', '.join(f'{k}: {v}' for k, v in counts.most_common())} ({np.mean(levels):.1f} lv)")
            answers.append(got)
        same = sum(a == b for a, b in zip(*answers))
        print(f"{name:28s} {expected:11s} " + " ".join(f"{c:>26s}" for c in cells) + f"  {same}/{repeats}")


def call(result) -> str:
    return "none" if result.kind == "none" else f"{result.kind} x{result.n_events}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--curves", type=int, default=200, help="curves of the coverage study (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=20, help="noisy samples per shape (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=32, help="seeds (images) per level of a shape (default: %(default)s)")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    study = coverage_study(args.curves, seed=0)
    covered = study["covered"].mean()
    print(f"coverage of {args.curves} known steps by the 95% interval: {covered:.3f} "
          f"(target >= {TARGET_COVERAGE}: {'met' if covered >= TARGET_COVERAGE else 'NOT met'}); "
          f"called sudden {np.mean(study['kind'] == 'sudden'):.3f}")
    for refined, part in study.groupby("refined"):
        print(f"  {'refined to 0.005' if refined else 'grid only':17s} n={len(part):3d}  coverage {part['covered'].mean():.3f}"
              f"  median width {part['width'].median():.4f}  (median grid step {part['grid'].median():.2f})")
    print(f"  all               median width {study['width'].median():.4f}  [{time.perf_counter() - t0:.0f} s]")

    print(f"\n{'shape':28s} {'expected':11s} {'paired calls':34s} {'unpaired calls':34s} threshold range (paired)")
    for name, shape, levels, expected in shapes():
        cells, spread = [], []
        for paired in (True, False):
            counts = collections.Counter()
            for rep in range(args.repeats):
                r = detect(sample_table(shape, levels, args.seeds, seed=rep, paired=paired), x="level", y="acc",
                           floor=0.0, n_boot=0)
                counts[call(r)] += 1
                if paired and np.isfinite(r.threshold):
                    spread.append(r.threshold)
            cells.append(", ".join(f"{k}: {v}" for k, v in counts.most_common()))
        rng = f"{min(spread):.3f}-{max(spread):.3f}" if spread else "-"
        print(f"{name:28s} {expected:11s} {cells[0]:34s} {cells[1]:34s} {rng}")
    refinement(args.repeats, args.seeds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
