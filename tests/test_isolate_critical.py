"""Critical sets end to end on a tiny analytic network: the planted set is found on search samples, confirmed on
other samples against controls, saved as a set file and applied through the mask."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fixtures_weights import weights_hash
from sdprobe.architecture import describe, select
from sdprobe.errors import RunError
from sdprobe.evidence import ConfirmConfig, Split, WeightSet, read_set_file
from sdprobe.isolate import (
    CachedEvaluator,
    CandidateSet,
    EvaluationLog,
    IsolationConfig,
    NothingToIsolate,
    isolate_meaning,
    jaccard,
    load_critical_set,
    saved_meanings,
    write_critical_set,
)
from sdprobe.isolate.evaluator import mean_scores
from sdprobe.isolate.store import CONTROLS, SET_FILE, SUMMARY, WEIGHTS, adjust_family
from sdprobe.prune import ProgressiveMask

N_IN, N_HIDDEN, N_SAMPLES = 8, 16, 32
PATHS = (0, 1, 2)  # hidden units that carry output 0, each through W1[h, 0]; any one of them keeps it alive
ALIVE = 0.5  # output 0 "works" on a sample when it exceeds this (one live path gives >= 1, none gives < 0.25)
TOLERANCE = 1e-3  # output 1 "works" when it moves less than this from the dense value
W1, W2 = "text_encoder.0.weight", "text_encoder.2.weight"
CONFIG = IsolationConfig(n_confirm=N_SAMPLES, effect=0.5, confirm=ConfirmConfig(n_controls=200, n_matched=20))
SPLITS = {"search": Split("search", tuple(f"s{i}" for i in range(N_SAMPLES)), tuple(range(N_SAMPLES))),
          "confirmation": Split("confirmation", tuple(f"c{i}" for i in range(N_SAMPLES)),
                                tuple(range(100, 100 + N_SAMPLES)))}
WINDOW = {"kind": "given", "start": 0.0, "stop": 0.5}


class Toy:
    """y = W2 relu(W1 x). Output 0 lives through three redundant paths x0 -> h0/h1/h2 -> y0: it dies only when
    W1[0,0], W1[1,0] and W1[2,0] are all zero. Output 1 reads hidden units 3..15 only."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        net = nn.Sequential(nn.Linear(N_IN, N_HIDDEN, bias=False), nn.ReLU(), nn.Linear(N_HIDDEN, 2, bias=False))
        with torch.no_grad():
            w1 = torch.randn(N_HIDDEN, N_IN, generator=g) * 0.5
            w1[list(PATHS)] = 0.01  # weak leaks from the other inputs into the path units
            w1[list(PATHS), 0] = 1.0
            w2 = torch.zeros(2, N_HIDDEN)
            w2[0, list(PATHS)] = 1.0
            w2[1, len(PATHS):] = torch.randn(N_HIDDEN - len(PATHS), generator=g)
            net[0].weight.copy_(w1)
            net[2].weight.copy_(w2)
        self.pipe = SimpleNamespace(text_encoder=net)
        self.xs = {}
        for split in ("search", "confirmation"):
            x = torch.rand(N_SAMPLES, N_IN, generator=g)
            x[:, 0] += 1.0
            self.xs[split] = x
        self.dense = {k: self.forward(k) for k in self.xs}

    def forward(self, split: str = "search") -> torch.Tensor:
        with torch.no_grad():
            return self.pipe.text_encoder(self.xs[split])  # (N, 2)

    def correct(self, split: str = "search") -> dict[str, np.ndarray]:
        y = self.forward(split)
        return {"out0": (y[:, 0] > ALIVE).float().numpy(),
                "out1": ((y[:, 1] - self.dense[split][:, 1]).abs() < TOLERANCE).float().numpy()}

    def accuracies(self, split: str = "search") -> dict[str, float]:
        return {k: float(v.mean()) for k, v in self.correct(split).items()}


@pytest.fixture()
def toy():
    return Toy()


def toy_setup(toy: Toy, prior: str = "magnitude"):
    """Candidates: all of W1 and output 1's row of W2. The mask sits at level 0, so S is pruned on a dense net."""
    refs = select(toy.pipe, "text_encoder")
    weights = {r.qualified_name: r.weight.detach().clone() for r in refs}
    cand = {W1: torch.arange(N_HIDDEN * N_IN), W2: torch.arange(N_HIDDEN, 2 * N_HIDDEN)}
    scores = {n: w.abs() if prior == "magnitude" else -w.abs() for n, w in weights.items()}
    info = {r.qualified_name: {**describe(r), "module": r.module_name} for r in refs}
    cands = CandidateSet.from_tensors(cand, {n: w.shape for n, w in weights.items()}, prior=scores, weights=weights,
                                      info=info)
    mask = ProgressiveMask(refs, {n: w.abs() for n, w in weights.items()}, max_sparsity=0.5)
    return cands, mask


def evaluator(toy: Toy, cands: CandidateSet, mask: ProgressiveMask, split: str):
    def evaluate(ids: np.ndarray) -> dict[str, np.ndarray]:
        with mask.override(prune=cands.to_dict(ids)):
            return toy.correct(split)
    return evaluate


def run(toy, cands, mask, meaning, config=CONFIG, search=None, confirm=None):
    search = search or CachedEvaluator(mean_scores(evaluator(toy, cands, mask, "search")), EvaluationLog(None, "s"))
    confirm = confirm or CachedEvaluator(evaluator(toy, cands, mask, "confirmation"), EvaluationLog(None, "c"))
    return isolate_meaning(cands, search, confirm, meaning, config, dict(SPLITS), WINDOW, tests=2, progress=False)


PLANTED = {W1: [h * N_IN for h in PATHS]}  # flat indices of W1[h, 0]


@pytest.mark.parametrize("prior", ["magnitude", "adversarial"])
def test_recovers_the_planted_set_and_confirms_it_on_other_samples(toy, prior):
    before = weights_hash(toy.pipe.text_encoder)
    cands, mask = toy_setup(toy, prior)
    with mask:
        cs = run(toy, cands, mask, "out0")
    assert weights_hash(toy.pipe.text_encoder) == before
    assert {n: v.tolist() for n, v in cs.indices().items()} == PLANTED
    s = cs.summary()
    assert s["size"] == 3 and s["n_candidates"] == N_HIDDEN * N_IN + N_HIDDEN
    assert s["search"]["split"] == "search" and s["search"]["bar"] == 0.5
    assert s["search"]["evaluations"] < s["search"]["candidate_groups"]
    conf = s["confirmation"]
    assert conf["split"] == "confirmation" and conf["n_prompts"] == N_SAMPLES
    for d in ("necessity", "sufficiency"):
        r = conf[d]
        assert r["effect"] == 1.0 and r["fraction"] == 1.0 and r["effect_images"] == N_SAMPLES
    nec, suf = conf["necessity"], conf["sufficiency"]
    assert nec["n_controls"] == 200 and nec["control_effects"] == [0.0] * 200  # 3 random weights never hold all paths
    assert nec["p_value"] == pytest.approx(1 / 201) and nec["n_matched"] == 20 and nec["matched_p"] == pytest.approx(1 / 21)
    # One path weight alone restores output 0, so a random 3-weight control that holds one of the 3 path weights
    # (about 7% of them) is exactly as sufficient as the set: sufficiency is real but not specific, and the verdict
    # does not overclaim.
    assert max(suf["control_effects"]) == 1.0 and suf["p_value"] > 0.025
    assert s["verdict"] == "no replicable critical set"
    assert conf["selectivity"] == {"out1": 0.0}  # output 1 does not read the path units
    assert s["where"] == {"text_encoder/0": 3}
    assert conf["accuracy"]["fail"]["out0"] == 0.0 and conf["accuracy"]["restored"]["out0"] == 1.0
    card = cs._repr_html_()  # how Jupyter shows it: the verdict and both directions' confirmation numbers
    assert "no replicable critical set" in card and "3 of " in card
    assert card.count("1.000 [") == 2 and f"{nec['p_value']:.3f}" in card


def test_a_set_that_does_not_beat_its_controls_is_not_called_critical(toy):
    """Output 1 breaks when almost any weight feeding it is removed: random sets of the same layout break it just
    as well, so the verdict is 'no replicable critical set', with the numbers."""
    cands, mask = toy_setup(toy)
    with mask:
        cs = run(toy, cands, mask, "out1")
    s = cs.summary()
    assert s["verdict"] == "no replicable critical set" and s["size"] >= 1
    nec = s["confirmation"]["necessity"]
    assert nec["p_value"] > 0.05 and max(nec["control_effects"]) >= nec["effect"]
    assert nec["n_controls"] < 200  # the sequential test stopped early: the set looks like its controls


def test_nothing_to_isolate_when_the_meaning_survives(toy):
    cands, mask = toy_setup(toy)
    keep = cands.from_dict(PLANTED)
    without = CandidateSet.from_tensors(cands.to_dict(np.setdiff1d(cands.all_ids(), keep)),
                                        {W1: (N_HIDDEN, N_IN), W2: (2, N_HIDDEN)})
    with mask, pytest.raises(NothingToIsolate, match="must lie in between"):
        run(toy, without, mask, "out0")


def test_bad_arguments():
    cands = CandidateSet.from_tensors({W1: torch.arange(4)}, {W1: (2, 2)})
    with pytest.raises(ValueError, match="unknown meaning 'colour'; the evaluation measures: out0"):
        run(None, cands, None, "colour", search=lambda ids: {"out0": 1.0}, confirm=lambda ids: {"out0": np.ones(2)})
    with pytest.raises(ValueError, match="share"):
        bad = {**SPLITS, "confirmation": SPLITS["search"]}
        isolate_meaning(cands, lambda ids: {"out0": 1.0}, lambda ids: {"out0": np.ones(2)}, "out0", CONFIG, bad,
                        WINDOW, progress=False)
    with pytest.raises(ValueError, match="window"):
        IsolationConfig(window="everything")
    with pytest.raises(ValueError, match="n_confirm"):
        IsolationConfig(n_confirm=1)


def test_jaccard():
    a = {"x": torch.tensor([1, 2, 3]), "y": torch.tensor([0])}
    b = {"x": torch.tensor([2, 3, 4])}
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert jaccard(a, a) == 1.0


def _set_file(cs) -> WeightSet:
    shapes = {W1: (N_HIDDEN, N_IN), W2: (2, N_HIDDEN)}
    return WeightSet(kind="critical", model="toy", meaning=cs.meaning, method="magnitude", sweep={}, window=cs.window,
                     weights=cs.indices(), shapes={n: shapes[n] for n in cs.indices()}, splits=cs.splits,
                     verdict=cs.verdict)


def test_save_load_round_trip_family_correction_and_apply_through_the_mask(toy, tmp_path):
    cands, mask = toy_setup(toy)
    with mask:
        sets = {m: run(toy, cands, mask, m) for m in ("out0", "out1")}
    for m, cs in sets.items():
        write_critical_set(tmp_path / "critical" / m, cs, _set_file(cs), extra={"options": {"seed": 0}})
    assert saved_meanings(tmp_path) == ["out0", "out1"]
    tests = adjust_family(tmp_path)  # Holm over the 4 tests of the run
    assert len(tests) == 4
    out0 = tests[tests["meaning"] == "out0"].set_index("direction")
    assert out0.loc["necessity", "p_adjusted"] == pytest.approx(4 / 201)  # the smallest of 4 raw p-values, times 4
    assert (tests["p_adjusted"] >= tests["p_value"]).all() and set(tests["verdict"]) == {"no replicable critical set"}

    folder = tmp_path / "critical" / "out0"
    summary = json.loads((folder / SUMMARY).read_text())
    assert summary["options"] == {"seed": 0} and summary["size"] == 3 and summary["design"]["tests_in_family"] == 4
    assert summary["confirmation"]["necessity"]["p_adjusted"] == pytest.approx(4 / 201)
    ws = read_set_file(folder / SET_FILE)
    assert ws.verdict == "no replicable critical set" and {n: v.tolist() for n, v in ws.qualified().items()} == PLANTED
    assert ws.splits["confirmation"] == SPLITS["confirmation"]
    assert ws.evidence["confirmation"]["necessity"]["p_adjusted"] == pytest.approx(4 / 201)
    weights = pd.read_csv(folder / WEIGHTS)
    assert list(weights.columns) == ["qualified_name", "component", "module", "region", "block", "role", "row", "col",
                                     "value", "magnitude", "rank", "score"]
    assert weights["row"].tolist() == list(PATHS) and weights["col"].tolist() == [0] * 3
    smaller = int((np.abs(cands.values) < 1.0).sum())  # candidates with |W| below the planted weights' 1.0
    assert sorted(weights["rank"]) == [smaller, smaller + 1, smaller + 2]
    controls = pd.read_csv(folder / CONTROLS)
    assert list(controls.columns) == ["direction", "family", "control", "effect"]
    counts = controls.groupby(["direction", "family"]).size().to_dict()
    assert counts[("necessity", "random")] == 200 and counts[("necessity", "matched")] == 20
    assert counts[("sufficiency", "random")] == sets["out0"].confirmation["sufficiency"].n_controls  # sequential

    loaded = load_critical_set(tmp_path, "out0")
    assert {n: v.tolist() for n, v in loaded.items()} == PLANTED and loaded[W1].dtype == torch.long
    before = weights_hash(toy.pipe.text_encoder)
    _, mask = toy_setup(toy)
    with mask:
        with mask.override(prune=loaded):
            assert toy.accuracies()["out0"] == 0.0
        assert toy.accuracies()["out0"] == 1.0
    assert weights_hash(toy.pipe.text_encoder) == before
    with pytest.raises(RunError, match="no critical set for 'color' \\(it has: out0, out1\\)"):
        load_critical_set(tmp_path, "color")


def test_overlaps_say_when_disjointness_holds_by_construction(toy):
    from sdprobe.isolate.run import overlap_table, where_table

    cands, mask = toy_setup(toy)
    with mask:
        sets = {m: run(toy, cands, mask, m) for m in ("out0", "out1")}
    a, b = (set(map(int, cs.ids)) for cs in sets.values())
    table = overlap_table(sets)
    assert table.to_dict("records") == [{"meaning_a": "out0", "meaning_b": "out1", "size_a": 3, "size_b": len(b),
                                         "intersection": len(a & b), "jaccard": len(a & b) / len(a | b),
                                         "windows_overlap": True}]
    assert len(a & b) == 0  # output 1 never reads the path units
    sets["out1"].window = {"kind": "given", "start": 0.5, "stop": 0.6}
    assert not overlap_table(sets)["windows_overlap"].item()  # disjoint windows: no shared weight by construction
    where = where_table(sets)
    assert where.groupby("meaning")["count"].sum().to_dict() == {"out0": 3, "out1": len(b)}
