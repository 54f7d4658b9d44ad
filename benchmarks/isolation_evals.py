"""How many tests does the critical-set search need? Planted sets among n candidate weights, no diffusion model.

A toy universe has ``n`` candidate weights spread over weight matrices. A set ``K`` of ``k`` of them is planted and
the tests are exact:

* ``all``: removing the weights breaks the meaning iff every planted weight is removed (the unique minimal set
  is ``K``); restoring brings it back iff every planted weight is restored.
* ``half``: it breaks iff at least ``h = k // 2`` planted weights are removed (redundant paths), and it comes back
  iff fewer than ``h`` stay removed, so a set that does both holds ``max(h, k - h + 1)`` planted weights.

Layouts: ``spread`` (planted weights uniform over all candidates) or ``clustered`` (in as few rows of one matrix as
hold them, where the tensor -> row -> weight hierarchy pays off most).

Priors: ``none`` (all equal, the search keeps item order), ``noisy`` (planted weights score higher on average:
prior = planted + N(0, 1)), ``exact`` (planted weights score highest). For each case the script prints the tests
used against the number of candidate groups (what one-at-a-time screening would need) and the information bound
``log2 C(n, k)``.

A second table runs the whole isolation (search on one split, confirmation on another, 200 sequential random and
50 matched controls, Holm) on :class:`sdprobe.evidence.synthetic.PlantedWorld`: precision and recall of a planted
set with its adjusted p-values at n = 1e3..1e5, and the false-positive rate where no set exists (a diffuse
collapse in which every image breaks for its own weights).

Usage:
    python benchmarks/isolation_evals.py            # n up to 1e5 (a few minutes)
    python benchmarks/isolation_evals.py --quick    # small n, a few seconds
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from sdprobe.evidence import ConfirmConfig, Split
from sdprobe.evidence.synthetic import MEANING, PlantedWorld
from sdprobe.isolate import CachedEvaluator, CandidateSet, EvaluationLog, IsolationConfig, find_critical_set, isolate_meaning
from sdprobe.isolate.evaluator import mean_scores

NULL_REPEATS = 40  # repetitions of the negative control

ROWS, COLS = 64, 256  # shape of each toy weight matrix
PRIOR_NOISE = 1.0  # standard deviation of the "noisy" prior around planted = 1, others = 0


def universe(n: int, rng: np.random.Generator) -> CandidateSet:
    per = ROWS * COLS // 4  # candidates per matrix: a quarter of its entries, as between two sweep levels
    tensors = max(1, math.ceil(n / per))
    cand, left = {}, n
    for t in range(tensors):
        take = min(per, left)
        cand[f"unet.m{t}.weight"] = torch.from_numpy(np.sort(rng.choice(ROWS * COLS, take, replace=False)))
        left -= take
    return CandidateSet.from_tensors(cand, {name: (ROWS, COLS) for name in cand})


def with_prior(cands: CandidateSet, planted: np.ndarray, kind: str, rng: np.random.Generator) -> CandidateSet:
    prior = np.zeros(cands.n)
    if kind == "noisy":
        prior[planted] = 1.0
        prior += rng.normal(0.0, PRIOR_NOISE, cands.n)
    elif kind == "exact":
        prior[planted] = 1.0
    return CandidateSet(cands.names, cands.shapes, cands.indices, prior=prior)


def tests_for(model: str, planted: np.ndarray):
    need = len(planted) if model == "all" else max(1, len(planted) // 2)

    def removed(s: np.ndarray) -> int:
        if len(s) == 0:
            return 0
        pos = np.searchsorted(s, planted)
        return int(((pos < len(s)) & (s[np.minimum(pos, len(s) - 1)] == planted)).sum())

    def breaks(s: np.ndarray) -> bool:
        return removed(s) >= need

    def restores(s: np.ndarray) -> bool:  # restoring s at s_hi leaves len(planted) - removed(s) planted weights out
        return len(planted) - removed(s) < need

    return breaks, restores


def plant(cands: CandidateSet, k: int, layout: str, rng: np.random.Generator) -> np.ndarray:
    if layout == "spread":
        return np.sort(rng.choice(cands.n, k, replace=False))
    t = rng.integers(len(cands.names))
    rows = cands.groups("row", within=cands.tensor_ids(t))
    pool: list[int] = []
    for r in rng.permutation(len(rows)):  # as few rows of one matrix as hold k weights
        pool += rows[r].tolist()
        if len(pool) >= k:
            break
    return np.sort(rng.choice(pool, k, replace=False))


def run_case(n: int, k: int, model: str, prior: str, levels: tuple[str, ...], seed: int,
             layout: str = "spread") -> dict:
    rng = np.random.default_rng(seed)
    cands = universe(n, rng)
    planted = plant(cands, k, layout, rng)
    cands = with_prior(cands, planted, prior, rng)
    breaks, restores = tests_for(model, planted)
    start = time.perf_counter()
    result = find_critical_set(cands, breaks, restores, levels=levels, progress=False)
    got = set(result.ids.tolist())
    want = set(planted.tolist())
    need = max(1, k // 2)  # "half": breaking needs `need` planted weights, restoring needs k - need + 1 of them back
    exact = got == want if model == "all" else (got <= want and len(got) == max(need, k - need + 1))
    return {"n": cands.n, "k": k, "model": model, "prior": prior, "layout": layout, "levels": "/".join(levels),
            "tests": result.evaluations, "groups": result.candidate_groups,
            "tests_per_group": result.evaluations / result.candidate_groups,
            "info_bound": math.log2(math.comb(cands.n, k)), "gt_bound": k * math.log2(cands.n / k),
            "found": len(got), "correct": exact,
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small universes only (a smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    ks = (1, 4, 16) if args.quick else (1, 4, 16, 64)
    rows = []
    for n in sizes:
        for k in ks:
            for model in ("all", "half"):
                for prior in ("none", "noisy", "exact"):
                    rows.append(run_case(n, k, model, prior, ("tensor", "row", "weight"), args.seed))
            rows.append(run_case(n, k, "all", "none", ("weight",), args.seed))  # no hierarchy, for comparison
            for levels in (("tensor", "row", "weight"), ("weight",)):
                rows.append(run_case(n, k, "all", "none", levels, args.seed, layout="clustered"))
    header = f"{'n':>7} {'k':>3} {'model':>5} {'prior':>5} {'layout':>9} {'levels':>17} {'tests':>6} {'groups':>7} " \
             f"{'tests/group':>11} {'log2C(n,k)':>10} {'klog2(n/k)':>10} {'found':>5} {'ok':>3} {'sec':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['n']:>7} {r['k']:>3} {r['model']:>5} {r['prior']:>5} {r['layout']:>9} {r['levels']:>17} {r['tests']:>6} "
              f"{r['groups']:>7} {r['tests_per_group']:>11.4f} {r['info_bound']:>10.1f} {r['gt_bound']:>10.1f} {r['found']:>5} "
              f"{'yes' if r['correct'] else 'NO':>3} {r['seconds']:>5.2f}")
    worst = max(r["tests_per_group"] for r in rows)
    print(f"\nmost tests per candidate group: {worst:.4f} (one-at-a-time screening: 1.0); "
          f"all planted sets recovered: {all(r['correct'] for r in rows)}")
    evidence_table((1_000, 10_000) if args.quick else (1_000, 10_000, 100_000), 10 if args.quick else NULL_REPEATS)


def isolate_world(world: PlantedWorld, rep: int, n_search: int, n_confirm: int):
    """One whole synthetic isolation: search split, confirmation split, controls, Holm over its two tests."""
    cands = CandidateSet.from_tensors({"text_encoder.w.weight": torch.arange(world.n)},
                                      {"text_encoder.w.weight": (world.n,)})
    s_img, c_img = world.split(n_search, 2 * rep), world.split(n_confirm, 2 * rep + 1)
    splits = {"search": Split("search", tuple(map(str, s_img)), tuple(range(n_search))),
              "confirmation": Split("confirmation", tuple(f"c{i}" for i in c_img), tuple(range(-n_confirm, 0)))}
    search = CachedEvaluator(mean_scores(world.evaluator(s_img)), EvaluationLog(None, "s"))
    confirm = CachedEvaluator(world.evaluator(c_img), EvaluationLog(None, "c"))
    config = IsolationConfig(confirm=ConfirmConfig(seed=rep), seed=rep)
    return isolate_meaning(cands, search, confirm, MEANING, config, splits, {"kind": "given", "start": 0, "stop": 1},
                           tests=2, progress=False)


def evidence_table(sizes: tuple[int, ...], repeats: int) -> None:
    print("\nwhole isolation on planted worlds (k = 6, 70% of images susceptible, 2% noise; 32 search / 96 "
          "confirmation images)")
    print(f"{'n':>7} {'precision':>9} {'recall':>6} {'p_adj nec':>9} {'p_adj suf':>9} {'verdict':>26} {'sec':>5}")
    for n in sizes:
        start = time.perf_counter()
        planted = np.random.default_rng(n).choice(n, size=6, replace=False)
        cs = isolate_world(PlantedWorld(n=n, planted=planted, share=0.7, depth=0, noise=0.02, seed=n), 0, 32, 96)
        hit = len(set(cs.ids.tolist()) & set(planted.tolist()))
        print(f"{n:>7} {hit / max(len(cs.ids), 1):>9.2f} {hit / 6:>6.2f} {cs.confirmation['necessity'].p_adjusted:>9.4f} "
              f"{cs.confirmation['sufficiency'].p_adjusted:>9.4f} {cs.verdict:>26} {time.perf_counter() - start:>5.1f}")
    claims = sum(isolate_world(PlantedWorld(n=5_000, planted=None, depth=1, noise=0.02, seed=100 + r), r, 16, 48).verdict
                 == "critical" for r in range(repeats))
    print(f"null (no planted set, diffuse collapse, n = 5000): {claims} of {repeats} runs claimed a critical set "
          f"(false-positive rate {claims / repeats:.3f}, nominal 0.05)")


if __name__ == "__main__":
    main()
