"""Can a CLIP-judged finding be trusted? The organism's text-encoder study judged by CLIP, checked against the oracle.

Run the two studies first (same prompts, seeds and sweeps, so their images match one for one):

    sdprobe study --config analyses/organism.toml --out runs/study
    sdprobe study --config analyses/organism-clip.toml --out runs/organism-clip
    python analyses/clip_vs_oracle.py --oracle runs/study --clip runs/organism-clip --out reports/clip-vs-oracle.json

It reports, all through sdprobe's public API:

1. **Reading agreement** of ``clip-attributes`` (``builtin:tiny-shapes-clip``) with the oracle on organism images at
   several text-encoder sparsities (:func:`sdprobe.metrics.agreement.agreement`).
2. **Thresholds**: each meaning's collapse threshold by CLIP and by the oracle, with both CIs, and whether each lies
   in the other's interval.
3. **Critical sets**: the color set found through CLIP in the window where the oracle found one (0.79..0.82),
   re-judged by the oracle on prompts and seeds neither search saw (:func:`sdprobe.isolate.replicate`), and its
   overlap with the oracle-found set.
4. **Bias**: the planted bias (red share of color-less circles) read by each.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pandas as pd

from sdprobe.evidence import ConfirmConfig, read_set_file
from sdprobe.isolate import IsolationConfig, NothingToIsolate, SearchBudgetExceeded, isolate, replicate
from sdprobe.metrics import OracleMetric
from sdprobe.metrics.agreement import agreement
from sdprobe.metrics.registry import meaning_metric
from sdprobe.models import load_pipeline
from sdprobe.runs import RunDir
from sdprobe.thresholds.table import largest

MEANINGS = ("color", "shape", "position", "size")
CLIP = "builtin:tiny-shapes-clip"
WINDOW = (0.79, 0.82)  # where the oracle study's color set was found (reports/sets/te-magnitude-color.json)
# Smaller than isolate's defaults, to fit two confirmations in about half an hour on 2 cores: 64 fresh prompts find a
# 15-point effect with >= 80% power, and 60 random controls still allow p = 1/61 < 0.025 (Holm's first step over a
# set's two tests).
DESIGN = {"n_confirm": 64, "effect": 0.15}
CONTROLS = {"n_controls": 60, "n_matched": 10}


def thresholds(oracle: Path, clip: Path, sweeps: list[str]) -> list[dict]:
    rows = []
    for sweep in sweeps:
        a = largest(RunDir.open(oracle / sweep).thresholds()).set_index("metric")
        b = largest(RunDir.open(clip / sweep).thresholds()).set_index("metric")
        for m in MEANINGS:
            if m not in a.index or m not in b.index:
                continue
            ra, rb = a.loc[m], b.loc[m]
            row = {"sweep": sweep, "meaning": m, "oracle_kind": ra["kind"], "clip_kind": rb["kind"],
                   "oracle": ra["threshold"], "oracle_ci": [ra["ci_low"], ra["ci_high"]],
                   "clip": rb["threshold"], "clip_ci": [rb["ci_low"], rb["ci_high"]]}
            row["clip_in_oracle_ci"] = bool(ra["ci_low"] <= rb["threshold"] <= ra["ci_high"])
            row["oracle_in_clip_ci"] = bool(rb["ci_low"] <= ra["threshold"] <= rb["ci_high"])
            row["cis_overlap"] = bool(max(ra["ci_low"], rb["ci_low"]) <= min(ra["ci_high"], rb["ci_high"]))
            rows.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return rows


def jaccard(a: dict, b: dict) -> dict:
    sa = {(n, int(i)) for n, idx in a.items() for i in idx.tolist()}
    sb = {(n, int(i)) for n, idx in b.items() for i in idx.tolist()}
    inter = len(sa & sb)
    return {"clip_size": len(sa), "oracle_size": len(sb), "intersection": inter,
            "jaccard": inter / len(sa | sb) if sa | sb else float("nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--oracle", type=Path, default=Path("runs/study"))
    p.add_argument("--clip", type=Path, default=Path("runs/organism-clip"))
    p.add_argument("--oracle-set", type=Path, default=Path("reports/sets/te-magnitude-color.json"))
    p.add_argument("--out", type=Path, default=Path("reports/clip-vs-oracle.json"))
    p.add_argument("--images", type=int, default=256, help="images per sparsity for the reading agreement")
    p.add_argument("--search", type=int, default=16, help="search-split prompts of the CLIP-judged isolation")
    p.add_argument("--skip-isolation", action="store_true")
    p.add_argument("--skip-agreement", action="store_true", help="reuse the agreement table of --out")
    args = p.parse_args()

    pipe = load_pipeline("builtin:tiny-shapes")
    reader = meaning_metric("clip-attributes", {"clip_path": CLIP})
    out: dict = {"clip": CLIP, "search_prompts": args.search}
    if args.skip_agreement:
        out["agreement"] = json.loads(args.out.read_text())["agreement"]
    else:
        table = agreement(pipe, reader, n=args.images, levels=(0.0, 0.6, 0.7, 0.75, 0.8))
        out["agreement"] = table.to_dict(orient="records")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    out["thresholds"] = thresholds(args.oracle, args.clip, ["te-magnitude", "te-wanda"])
    print(pd.DataFrame(out["thresholds"]).to_string(index=False))

    bias = {}
    for name, study in (("oracle", args.oracle), ("clip", args.clip)):
        dist = pd.read_csv(study / "bias" / "distribution.csv")
        rows = dist[(dist["condition"] == "dense") & (dist["probe"] == "circle") & (dist["value"] == "red")]
        bias[name] = rows[["share", "ci_low", "ci_high"]].iloc[0].to_dict() if len(rows) else None
    out["bias_red_share_of_circles"] = bias
    print("bias:", bias)
    args.out.write_text(json.dumps(out, indent=1, default=str) + "\n")  # kept if the isolation is interrupted

    if not args.skip_isolation:
        run = args.clip.with_name(f"{args.clip.name}-window-search{args.search}") / "te-magnitude"  # the study's own stays
        if not run.exists():
            shutil.copytree(args.clip / "te-magnitude", run, ignore=shutil.ignore_patterns("critical", ".lock"))
        try:
            cs = isolate(run, "color", pipe, IsolationConfig(window=WINDOW, n_search=args.search, max_evaluations=300,
                                                             **DESIGN, confirm=ConfirmConfig(**CONTROLS)))
        except (NothingToIsolate, SearchBudgetExceeded) as exc:  # no set on the search split: a result too
            out["clip_isolation"] = {"verdict": "no replicable critical set", "size": 0, "reason": str(exc)}
            args.out.write_text(json.dumps(out, indent=1, default=str) + "\n")
            print("CLIP-judged search found no set:", exc)
            return 0
        found = {"verdict": cs.verdict, "size": len(cs.ids), "summary": cs.summary()["confirmation"]}
        out["clip_isolation"] = found
        print("CLIP-found set:", cs.verdict, len(cs.ids), "weights")
        if len(cs.ids):
            set_file = run / "critical" / "color" / "set.json"
            again = replicate(set_file, pipe=pipe, n_confirm=DESIGN["n_confirm"], seed=1, metric=OracleMetric(),
                              confirm=ConfirmConfig(**CONTROLS, seed=1))
            out["oracle_replication"] = again.summary() | {"split": None}
            print("judged by the oracle on new prompts and seeds:", again.verdict)
            out["overlap_with_oracle_set"] = jaccard(read_set_file(set_file).weights,
                                                     read_set_file(args.oracle_set).weights)
            print("overlap:", out["overlap_with_oracle_set"])
    args.out.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
