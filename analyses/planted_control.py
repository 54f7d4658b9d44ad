"""Isolation's positive control: does isolation recover a critical set that is known to exist?

``builtin:tiny-shapes-planted`` is the organism with a text encoder in which a color word's identity reaches the
rest of the model only through 2 planted weights of layer 0's MLP, both pruned by per-matrix magnitude between the
sweep levels 0.350 and 0.355; either one alone tells apart all colors but one pair (``sdprobe/organism/planted.py``;
the ground truth is the set file ``planted.json`` in the model folder). This recipe runs the ordinary pipeline on
it, through sdprobe's public API, and scores the answer:

1. dense oracle accuracy of the variant next to the organism's on the same prompts and seeds, and the variant's
   color accuracy with each planted weight alone and with none;
2. a text-encoder magnitude sweep (grid 0.05, refined to 0.005) and its thresholds;
3. color isolation with the defaults' rules (window: the detected transition; bar: halfway): search on the sweep's
   prompts, confirmation on fresh prompts and seeds against random tensor-stratified and magnitude-matched
   controls drawn from the whole candidate pool, Holm over the run;
4. precision and recall of the found set against the planted one, and the confirmation numbers.

    python analyses/planted_control.py --out runs/planted --report reports/planted-control.json

With ``--judge clip`` the same pipeline is judged by ``clip-attributes`` through ``builtin:tiny-shapes-clip``
(what a user with a real model and no oracle runs): the sweep, its thresholds and the isolation see only CLIP's
readings. The set CLIP finds is then judged again by the oracle, on prompts and seeds neither search nor CLIP's
confirmation used (``replicate(..., metric=OracleMetric())``), against 200 random and 50 matched controls:

    python analyses/planted_control.py --judge clip --out runs/planted-clip --report reports/planted-control-clip.json

The design is smaller than isolate's defaults in prompts, larger in controls: the planted effect is large, so 32
confirmation prompts find a 30-point effect with >= 80% power; 400 random controls per direction make p = 1/401
reachable, 2/401 = 0.005 after Holm over the run's two tests. About 30 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sdprobe.architecture import select
from sdprobe.evidence import ConfirmConfig, read_set_file
from sdprobe.generate import GenerationConfig, generate
from sdprobe.isolate import IsolationConfig, NothingToIsolate, SearchBudgetExceeded, isolate, replicate
from sdprobe.metrics import OracleMetric
from sdprobe.models import BUILTINS, load_pipeline
from sdprobe.prune import MagnitudeScorer, ProgressiveMask
from sdprobe.sweep import SweepConfig, run_sweep, sweep_prompts
from sdprobe.thresholds import run_thresholds
from sdprobe.thresholds.table import largest

MODEL = "builtin:tiny-shapes-planted"
SWEEP = dict(method="magnitude", start=0.0, stop=0.6, step=0.05, refine=0.005, n_prompts=32)
DESIGN = dict(n_confirm=32, effect=0.3)
CONTROLS = dict(n_controls=400, n_matched=50)
JUDGES = {  # the sweep's metrics for each judge; isolation judges with the sweep's meaning metric
    "oracle": dict(metrics=["oracle", "distance"]),
    "clip": dict(metrics=["clip-attributes", "distance"],
                 metric_options={"clip-attributes": {"clip_path": "builtin:tiny-shapes-clip"}}),
}
REPLICATION_SEED = 1  # the oracle's replication split of a CLIP-found set: other prompts and seeds than seed 0's
REPLICATION_CONTROLS = dict(n_controls=200, n_matched=50)  # the isolate defaults; p floor 1/201


def overlap(found: dict, truth: dict) -> dict:
    """Precision, recall and Jaccard of a found weight set against the planted one (``{name: flat indices}``)."""
    a = {(n, int(i)) for n, idx in found.items() for i in idx.tolist()}
    b = {(n, int(i)) for n, idx in truth.items() for i in idx.tolist()}
    hit = len(a & b)
    return {"found": len(a), "planted": len(b), "hit": hit, "precision": hit / len(a) if a else float("nan"),
            "recall": hit / len(b) if b else float("nan"), "jaccard": hit / len(a | b) if a | b else float("nan")}


def accuracy(pipe, prompts, seeds) -> dict[str, float]:
    table = OracleMetric().score(prompts, generate(pipe, prompts, seeds, GenerationConfig()))
    return {m: float(np.nanmean(table[m])) for m in ("color", "shape", "position", "size")}


def dense_accuracy(n: int, truth) -> dict:
    """Oracle accuracy per meaning of the organism and the planted variant on the same prompts and seeds, and the
    variant's with only one planted weight, or none, left in place."""
    prompts, seeds = sweep_prompts(SweepConfig(n_prompts=n, seed=7))
    out = {"builtin:tiny-shapes": accuracy(load_pipeline("builtin:tiny-shapes"), prompts, seeds)}
    pipe = load_pipeline(MODEL)
    out[MODEL] = accuracy(pipe, prompts, seeds)
    ((name, idx),) = truth.qualified().items()
    refs = select(pipe, "text_encoder")
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs)) as mask:
        for i in range(len(idx)):
            with mask.override(prune={name: torch.cat([idx[:i], idx[i + 1:]])}):
                out[f"only planted weight {i}"] = accuracy(pipe, prompts, seeds)
        with mask.override(prune=truth.qualified()):
            out["no planted weight"] = accuracy(pipe, prompts, seeds)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/planted"), help="sweep run folder (resumes)")
    p.add_argument("--report", type=Path, default=Path("reports/planted-control.json"))
    p.add_argument("--dense-images", type=int, default=128)
    p.add_argument("--judge", choices=sorted(JUDGES), default="oracle",
                   help="who reads the meanings in the sweep and the isolation (default: %(default)s)")
    args = p.parse_args()
    t0 = time.time()
    truth = read_set_file(BUILTINS["tiny-shapes-planted"] / "planted.json")
    result: dict = {"model": MODEL, "judge": args.judge, "planted": {"size": truth.size, "window": truth.window},
                    "sweep": {**SWEEP, **JUDGES[args.judge]}, "design": DESIGN, "controls": CONTROLS}
    result["planted"]["expected_color_accuracy"] = truth.evidence.get("expected_color_accuracy")
    result["dense_accuracy"] = dense_accuracy(args.dense_images, truth)
    print("dense accuracy:", json.dumps(result["dense_accuracy"]))

    pipe = load_pipeline(MODEL)
    run = run_sweep(pipe, SweepConfig(model=MODEL, **SWEEP, **JUDGES[args.judge]), args.out)
    table = largest(run_thresholds(run.path)).set_index("metric")
    result["thresholds"] = {m: {k: table.loc[m, k] for k in ("kind", "threshold", "ci_low", "ci_high", "s_hold", "s_fail")}
                            for m in ("color", "shape", "position", "size") if m in table.index}
    print("thresholds:", json.dumps(result["thresholds"], default=str))

    try:
        cs = isolate(run.path, "color", pipe, IsolationConfig(**DESIGN, confirm=ConfirmConfig(**CONTROLS)))
    except (NothingToIsolate, SearchBudgetExceeded) as exc:  # a negative result is a result: record it
        result["isolation"] = {"verdict": "no set found on the search split", "why": str(exc)}
        result["recovery"] = overlap({}, truth.weights)
        return _write(result, args.report, t0)
    summary = cs.summary()
    result["isolation"] = {"verdict": cs.verdict, "window": cs.window, "candidates": int(cs.candidates.n),
                           "evaluations": cs.search.evaluations, "confirmation": summary["confirmation"],
                           "selectivity": cs.selectivity}
    result["recovery"] = overlap(cs.indices(), truth.weights)
    if args.judge != "oracle":  # the truth judges what CLIP found, on prompts and seeds nobody has seen
        rep = replicate(run.path / "critical" / "color" / "set.json", pipe=pipe, n_confirm=DESIGN["n_confirm"],
                        seed=REPLICATION_SEED, confirm=ConfirmConfig(**REPLICATION_CONTROLS, seed=REPLICATION_SEED),
                        metric=OracleMetric())
        result["oracle_replication"] = rep.summary()
        print("oracle replication:", rep.verdict)
    print("verdict:", cs.verdict, "recovery:", json.dumps(result["recovery"]))
    return _write(result, args.report, t0)


def _write(result: dict, report: Path, t0: float) -> int:
    result["minutes"] = (time.time() - t0) / 60
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
