"""Critical sets end to end on a tiny analytic network: planted set recovered, controls, p-values, files, masks."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from sdprobe.architecture import describe, select
from sdprobe.errors import RunError
from sdprobe.isolate import (
    MIN_CONTROLS,
    CachedEvaluator,
    CandidateSet,
    EvaluationLog,
    NothingToIsolate,
    draw_controls,
    empirical_p_value,
    isolate_meaning,
    jaccard,
    load_critical_set,
    saved_meanings,
    write_critical_set,
)
from sdprobe.isolate.store import CONTROLS, SUMMARY, WEIGHTS
from sdprobe.prune import ProgressiveMask

N_IN, N_HIDDEN, N_SAMPLES = 8, 16, 32
PATHS = (0, 1, 2)  # hidden units that carry output 0, each through W1[h, 0]; any one of them keeps it alive
ALIVE = 0.5  # output 0 "works" on a sample when it exceeds this (one live path gives >= 1, none gives < 0.25)
TOLERANCE = 1e-3  # output 1 "works" when it moves less than this from the dense value
LAYOUT_KEYS = {"meaning", "s_lo", "s_hi", "n_candidates", "size", "fraction_of_candidates", "effect", "bar", "breaks",
               "restores", "control_effects", "p_value", "beats_all_controls", "evaluations", "candidate_groups",
               "selectivity", "where"}
W1, W2 = "text_encoder.0.weight", "text_encoder.2.weight"


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
        self.x = torch.rand(N_SAMPLES, N_IN, generator=g)
        self.x[:, 0] += 1.0
        self.dense = self.forward()

    def forward(self) -> torch.Tensor:
        with torch.no_grad():
            return self.pipe.text_encoder(self.x)  # (N, 2)

    def accuracies(self) -> dict[str, float]:
        y = self.forward()
        return {"out0": float((y[:, 0] > ALIVE).float().mean()),
                "out1": float(((y[:, 1] - self.dense[:, 1]).abs() < TOLERANCE).float().mean())}


@pytest.fixture()
def toy():
    return Toy()


def state_hash(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode() + v.numpy().tobytes())
    return h.hexdigest()


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


def evaluator(toy: Toy, cands: CandidateSet, mask: ProgressiveMask, calls: list | None = None):
    def evaluate(ids: np.ndarray) -> dict[str, float]:
        if calls is not None:
            calls.append(len(ids))
        with mask.override(prune=cands.to_dict(ids)):
            return toy.accuracies()
    return evaluate


PLANTED = {W1: [h * N_IN for h in PATHS]}  # flat indices of W1[h, 0]


@pytest.mark.parametrize("prior", ["magnitude", "adversarial"])
def test_recovers_the_planted_set_and_beats_controls(toy, prior):
    before = state_hash(toy.pipe.text_encoder)
    cands, mask = toy_setup(toy, prior)
    with mask:
        cached = CachedEvaluator(evaluator(toy, cands, mask), EvaluationLog(None, cands.fingerprint()))
        cs = isolate_meaning(cands, cached, "out0", n_controls=MIN_CONTROLS, seed=1, progress=False)
    assert state_hash(toy.pipe.text_encoder) == before
    assert {n: v.tolist() for n, v in cs.indices().items()} == PLANTED
    s = cs.summary()
    assert LAYOUT_KEYS <= set(s)
    assert s["bar"] == 0.5 and s["breaks"] and s["restores"]
    assert s["effect"] == 1.0 and s["size"] == 3 and s["n_candidates"] == N_HIDDEN * N_IN + N_HIDDEN
    assert s["control_effects"] == [0.0] * MIN_CONTROLS  # 3 random W1 weights never hold all three paths
    assert s["p_value"] == pytest.approx(1 / (1 + MIN_CONTROLS)) and s["beats_all_controls"]
    assert s["selectivity"] == {"out1": 0.0}  # output 1 does not read the path units
    assert s["where"] == {"text_encoder/0": 3}
    assert s["evaluations"] < s["candidate_groups"]
    assert s["accuracy"]["hi"]["out0"] == 0.0 and s["accuracy"]["restored"]["out0"] == 1.0


def test_a_set_that_does_not_beat_its_controls_is_reported(toy):
    """Output 1 breaks when almost any weight feeding it is removed, and comes back only when most of them do: its
    set is large and random sets of the same layout break it just as well."""
    cands, mask = toy_setup(toy)
    with mask:
        cs = isolate_meaning(cands, evaluator(toy, cands, mask), "out1", n_controls=MIN_CONTROLS, progress=False)
    s = cs.summary()
    assert s["breaks"] and s["restores"] and s["size"] > 1
    rows = pd.Series([n for n in cs.indices()]).tolist()
    assert set(rows) <= {W1, W2}
    assert not s["beats_all_controls"] and s["p_value"] > 0.05
    assert max(s["control_effects"]) >= s["effect"]


def test_nothing_to_isolate_when_the_meaning_survives(toy):
    cands, mask = toy_setup(toy)
    keep = cands.from_dict(PLANTED)
    without = CandidateSet.from_tensors(cands.to_dict(np.setdiff1d(cands.all_ids(), keep)),
                                        {W1: (N_HIDDEN, N_IN), W2: (2, N_HIDDEN)})
    with mask, pytest.raises(NothingToIsolate, match="must lie in between"):
        isolate_meaning(without, evaluator(toy, without, mask), "out0", progress=False)


def test_bad_arguments():
    cands = CandidateSet.from_tensors({W1: torch.arange(4)}, {W1: (2, 2)})
    with pytest.raises(ValueError, match="unknown meaning 'colour'; the evaluation measures: out0"):
        isolate_meaning(cands, lambda ids: {"out0": 1.0}, "colour", progress=False)
    with pytest.raises(ValueError, match="at least 20 controls"):
        isolate_meaning(cands, lambda ids: {"out0": 1.0}, "out0", n_controls=5, progress=False)


def test_controls_match_size_and_tensor_layout():
    cands = CandidateSet.from_tensors({"unet.a.weight": torch.arange(50), "unet.b.weight": torch.arange(7)},
                                      {"unet.a.weight": (10, 5), "unet.b.weight": (7, 1)})
    k = np.array([1, 2, 3, 51])  # three in a, one in b
    controls = draw_controls(cands, k, n=30, seed=4)
    assert len(controls) == 30
    for c in controls:
        assert cands.per_tensor_counts(c) == {0: 3, 1: 1} and len(set(c.tolist())) == 4
    assert len({tuple(c) for c in controls}) > 25  # random, not a repeat of one draw
    again = draw_controls(cands, k, n=30, seed=4)
    assert all((a == b).all() for a, b in zip(controls, again))
    with pytest.raises(ValueError, match="must be positive"):
        draw_controls(cands, k, n=0)


def test_empirical_p_value_by_hand():
    assert empirical_p_value(0.8, [0.0, 0.1, 0.9]) == pytest.approx(2 / 4)
    assert empirical_p_value(0.8, [0.8, 0.1, 0.0]) == pytest.approx(2 / 4)  # ties count against the set
    assert empirical_p_value(1.0, [0.0] * 49) == pytest.approx(1 / 50)
    assert empirical_p_value(0.5, [float("nan"), 0.7]) == pytest.approx(2 / 2)
    assert np.isnan(empirical_p_value(0.5, []))


def test_jaccard():
    a = {"x": torch.tensor([1, 2, 3]), "y": torch.tensor([0])}
    b = {"x": torch.tensor([2, 3, 4])}
    assert jaccard(a, b) == pytest.approx(2 / 5)
    assert jaccard(a, a) == 1.0


def test_save_load_round_trip_and_apply_through_the_mask(toy, tmp_path):
    cands, mask = toy_setup(toy)
    with mask:
        cs = isolate_meaning(cands, evaluator(toy, cands, mask), "out0", n_controls=MIN_CONTROLS, progress=False)
    folder = write_critical_set(tmp_path / "critical" / "out0", cs, extra={"options": {"seed": 0}})
    assert saved_meanings(tmp_path) == ["out0"]

    summary = json.loads((folder / SUMMARY).read_text())
    assert summary["options"] == {"seed": 0} and summary["size"] == 3 and LAYOUT_KEYS <= set(summary)
    weights = pd.read_csv(folder / WEIGHTS)
    assert list(weights.columns) == ["qualified_name", "component", "module", "region", "block", "role", "row", "col",
                                     "value", "magnitude", "rank", "score"]
    assert weights["row"].tolist() == list(PATHS) and weights["col"].tolist() == [0] * 3
    assert weights["value"].tolist() == [1.0] * 3 and (weights["module"].astype(str) == "0").all()
    smaller = int((np.abs(cands.values) < 1.0).sum())  # candidates with |W| below the planted weights' 1.0
    assert sorted(weights["rank"]) == [smaller, smaller + 1, smaller + 2]
    controls = pd.read_csv(folder / CONTROLS)
    assert list(controls.columns) == ["control", "effect", "out0", "out1"] and len(controls) == MIN_CONTROLS

    loaded = load_critical_set(tmp_path, "out0")
    assert {n: v.tolist() for n, v in loaded.items()} == PLANTED and loaded[W1].dtype == torch.long
    before = state_hash(toy.pipe.text_encoder)
    _, mask = toy_setup(toy)
    with mask:
        with mask.override(prune=loaded):
            assert toy.accuracies()["out0"] == 0.0
        assert toy.accuracies()["out0"] == 1.0
    assert state_hash(toy.pipe.text_encoder) == before
    with pytest.raises(RunError, match="no critical set for 'color' \\(it has: out0\\)"):
        load_critical_set(tmp_path, "color")


def test_overlaps_and_where_of_several_sets(toy):
    from sdprobe.isolate.run import overlap_table, where_table

    cands, mask = toy_setup(toy)
    with mask:
        evaluate = CachedEvaluator(evaluator(toy, cands, mask), EvaluationLog(None, cands.fingerprint()))
        sets = {m: isolate_meaning(cands, evaluate, m, n_controls=MIN_CONTROLS, progress=False) for m in ("out0", "out1")}
    a, b = (set(map(int, cs.ids)) for cs in sets.values())
    table = overlap_table(sets)
    assert table.to_dict("records") == [{"meaning_a": "out0", "meaning_b": "out1", "size_a": 3, "size_b": len(b),
                                         "intersection": len(a & b), "jaccard": len(a & b) / len(a | b)}]
    assert len(a & b) == 0  # output 1 never reads the path units
    where = where_table(sets)
    assert where.groupby("meaning")["count"].sum().to_dict() == {"out0": 3, "out1": len(b)}
    assert set(where["component"]) == {"text_encoder"}
