"""Does the organism need 20 denoising steps? Its images and pruning curves at two sampler settings, side by side.

The study's sweeps are run twice, identical but for the DPM-Solver++ step count (same prompts, seeds, levels and
refinement rule), and compared image by image and threshold by threshold:

    python analyses/sampler_steps.py --out runs/sampler-steps --json reports/sampler-steps.json

About 15 minutes on 2 cores (the sweeps at 20 steps take about 9, at 10 about 5, two processes each). Finished
studies in ``--out`` are reused, so a second call only compares. It reports, through sdprobe's public API:

1. **The dense model**: :func:`sdprobe.evaluate.evaluate_organism` at each step count (accuracies, unreadable rate,
   planted bias share) on fresh prompts.
2. **Every sweep image**: the share of oracle readings (color, shape, position, size) that agree between the two
   settings, at every level both sweeps measured, and the largest per-level accuracy difference.
3. **Every collapse event**: kind, threshold and 95% interval at each setting, and whether each threshold lies in
   the other setting's interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from sdprobe.evaluate import evaluate_organism
from sdprobe.generate import GenerationConfig
from sdprobe.models import load_pipeline
from sdprobe.study import load_study_config, run_study

MEANINGS = ("color", "shape", "position", "size")
RECIPE = Path(__file__).with_name("organism.toml")


def sweeps_only(steps: int):
    """The default recipe's sweeps (and thresholds) at ``steps`` denoising steps, no later stage."""
    config = load_study_config(RECIPE)
    return dataclasses.replace(config, generation=dataclasses.replace(config.generation, steps=steps),
                               isolation=None, bias=None, attribution=None)


def run(steps: int, out: Path) -> Path:
    if not (out / "report.html").exists():
        run_study(sweeps_only(steps), out, jobs=2)
    return out


def image_agreement(a: Path, b: Path) -> pd.DataFrame:
    rows = []
    for sweep in sorted(p.name for p in a.iterdir() if (p / "results.csv").exists()):
        x, y = pd.read_csv(a / sweep / "results.csv"), pd.read_csv(b / sweep / "results.csv")
        both = x.merge(y, on=["level", "index"], suffixes=("_a", "_b"))
        agree = np.mean([(both[f"read_{m}_a"].astype(str) == both[f"read_{m}_b"].astype(str)).mean() for m in MEANINGS])
        acc = both.groupby("level")[[f"{m}_{s}" for m in MEANINGS for s in "ab"]].mean()
        diff = pd.concat([(acc[f"{m}_a"] - acc[f"{m}_b"]).abs() for m in MEANINGS])
        rows.append({"sweep": sweep, "levels": int(both["level"].nunique()), "images": len(both),
                     "reading_agreement": float(agree), "accuracy_diff_mean": float(diff.mean()),
                     "accuracy_diff_max": float(diff.max())})
    return pd.DataFrame(rows)


def events(a: Path, b: Path, names: tuple[str, str]) -> pd.DataFrame:
    cols = ["metric", "event", "largest", "kind", "threshold", "ci_low", "ci_high", "drop"]
    out = []
    for sweep in sorted(p.name for p in a.iterdir() if (p / "thresholds.csv").exists()):
        x, y = (pd.read_csv(d / sweep / "thresholds.csv")[cols] for d in (a, b))
        x, y = x[x["metric"].isin(MEANINGS) & (x["kind"] != "none")], y[y["metric"].isin(MEANINGS) & (y["kind"] != "none")]
        both = x.merge(y, on=["metric", "event"], how="outer", suffixes=(f"_{names[0]}", f"_{names[1]}"))
        both.insert(0, "sweep", sweep)
        out.append(both)
    table = pd.concat(out, ignore_index=True)
    p, q = names
    table[f"{q}_in_{p}_ci"] = table[f"threshold_{q}"].between(table[f"ci_low_{p}"], table[f"ci_high_{p}"])
    table[f"{p}_in_{q}_ci"] = table[f"threshold_{p}"].between(table[f"ci_low_{q}"], table[f"ci_high_{q}"])
    return table


def largest_events(table: pd.DataFrame, names: tuple[str, str]) -> pd.DataFrame:
    """Each (sweep, meaning)'s largest event at each setting, side by side (they may be different event numbers)."""
    p, q = names
    cols = ["kind", "threshold", "ci_low", "ci_high", "drop"]
    sides = []
    for n in names:
        rows = table[table[f"largest_{n}"].fillna(False).astype(bool)]
        sides.append(rows[["sweep", "metric"] + [f"{c}_{n}" for c in cols]])
    big = sides[0].merge(sides[1], on=["sweep", "metric"], how="outer")
    big[f"{q}_in_{p}_ci"] = big[f"threshold_{q}"].between(big[f"ci_low_{p}"], big[f"ci_high_{p}"])
    big[f"{p}_in_{q}_ci"] = big[f"threshold_{p}"].between(big[f"ci_low_{q}"], big[f"ci_high_{q}"])
    return big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/sampler-steps"), help="folder for the two studies")
    parser.add_argument("--steps", type=int, nargs=2, default=[20, 10], help="the two step counts (default: 20 10)")
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    args = parser.parse_args()
    names = tuple(f"s{s}" for s in args.steps)
    a, b = (run(s, args.out / n) for s, n in zip(args.steps, names))

    pipe = load_pipeline("builtin:tiny-shapes")
    dense = {}
    for s, n in zip(args.steps, names):
        ev = evaluate_organism(pipe, config=GenerationConfig(steps=s))
        dense[n] = {"accuracy": ev.accuracy, "unreadable": ev.unreadable, "bias_share": ev.bias_share}
        print(f"dense model at {s} steps: {ev.accuracy}, unreadable {ev.unreadable:.3f}, bias share {ev.bias_share:.3f}")

    agreement = image_agreement(a, b)
    print("\nimages (oracle readings at every level both sweeps measured):")
    print(agreement.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    table = events(a, b, names)
    print("\ncollapse events (95% intervals):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    big = largest_events(table, names)
    print("\neach meaning's largest event at each setting:")
    print(big.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    p, q = names
    inside = int((big[f"{q}_in_{p}_ci"] & big[f"{p}_in_{q}_ci"]).sum())
    print(f"\n{len(big)} largest events: thresholds inside each other's interval {inside} / {len(big)}, "
          f"same kind {int((big[f'kind_{p}'] == big[f'kind_{q}']).sum())} / {len(big)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"steps": args.steps, "dense": dense,
                                         "images": agreement.to_dict(orient="records"),
                                         "events": json.loads(table.to_json(orient="records")),
                                         "largest": json.loads(big.to_json(orient="records"))}, indent=1))


if __name__ == "__main__":
    main()
