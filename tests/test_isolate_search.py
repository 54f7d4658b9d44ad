"""The pure critical-set search: candidate hierarchy, group testing on planted sets, evaluation log and resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sdprobe.errors import RunError
from sdprobe.isolate import (
    CachedEvaluator,
    CandidateSet,
    EvaluationLog,
    NothingToIsolate,
    SearchBudgetExceeded,
    find_critical_set,
    minimal_prefix_chain,
    subset_key,
)


def planted_universe(n_tensors=12, per_tensor=150, shape=(32, 24), k=4, seed=0):
    rng = np.random.default_rng(seed)
    numel = shape[0] * shape[1]
    cand = {f"unet.t{i}.weight": torch.from_numpy(rng.choice(numel, per_tensor, replace=False)) for i in range(n_tensors)}
    cands = CandidateSet.from_tensors(cand, {n: shape for n in cand})
    planted = set(rng.choice(cands.n, k, replace=False).tolist())
    return cands, planted


# -- candidates ---------------------------------------------------------------------------------------------------
def test_groups_partition_items_by_tensor_row_column():
    cand = {"text_encoder.a.weight": torch.tensor([7, 0, 5]), "unet.b.weight": torch.tensor([1, 23])}
    prior = {"text_encoder.a.weight": torch.arange(8.0).reshape(2, 4), "unet.b.weight": -torch.arange(24.0).reshape(2, 3, 2, 2)}
    cs = CandidateSet.from_tensors(cand, {"text_encoder.a.weight": (2, 4), "unet.b.weight": (2, 3, 2, 2)}, prior=prior)
    assert cs.n == 5 and cs.flat.tolist() == [0, 5, 7, 1, 23]  # sorted within each tensor
    assert cs.prior.tolist() == [0.0, 5.0, 7.0, -1.0, -23.0]
    assert [g.tolist() for g in cs.groups("tensor")] == [[0, 1, 2], [3, 4]]
    # rows of a (2, 4) matrix: flat 0 -> row 0, flat 5 and 7 -> row 1 (prior 7 first); conv rows are out channels
    assert [g.tolist() for g in cs.groups("row")] == [[1, 2], [0], [3], [4]]
    # columns: a: 0 -> col 0, 5 -> col 1, 7 -> col 3; conv (2,3,2,2): flat 1 -> in-channel 0, flat 23 -> in-channel 2
    assert sorted(g.tolist() for g in cs.groups("column")) == [[0], [1], [2], [3], [4]]
    assert cs.columns(np.array([2, 4])).tolist() == [3, 2]
    assert [g.tolist() for g in cs.groups("weight", within=np.array([4, 0]))] == [[0], [4]]
    with pytest.raises(ValueError, match="valid: tensor, row, column, weight"):
        cs.groups("block")


def test_dict_round_trip_and_fingerprint():
    cands, _ = planted_universe()
    ids = np.array([3, 160, 161, 1700])
    d = cands.to_dict(ids)
    assert sum(len(v) for v in d.values()) == 4
    assert cands.from_dict(d).tolist() == ids.tolist()
    with pytest.raises(ValueError, match="not candidates"):
        cands.from_dict({cands.names[0]: torch.tensor([_absent(cands, 0)])})
    other, _ = planted_universe(seed=1)
    assert cands.fingerprint() != other.fingerprint()
    assert cands.fingerprint() == planted_universe()[0].fingerprint()


def _absent(cands: CandidateSet, t: int) -> int:
    """A flat index of tensor ``t`` that is not a candidate."""
    have = set(cands.indices[t].tolist())
    return next(i for i in range(10**6) if i not in have)


def test_invalid_candidates_rejected():
    with pytest.raises(ValueError, match="outside its shape"):
        CandidateSet(["unet.a.weight"], [(2, 2)], [torch.tensor([4])])
    with pytest.raises(ValueError, match="repeat"):
        CandidateSet(["unet.a.weight"], [(2, 2)], [torch.tensor([1, 1])])


# -- the chain search -----------------------------------------------------------------------------------------------
def test_minimal_prefix_chain_finds_the_needed_groups():
    groups = [np.array([i]) for i in range(100)]
    needed = {17, 42, 99}
    calls = []

    def test(s):
        calls.append(len(s))
        return needed <= set(s.tolist())

    chosen = minimal_prefix_chain(groups, test, np.zeros(0, dtype=np.int64))
    assert sorted(chosen) == sorted(needed)
    assert len(calls) < 3 * 2 * math.ceil(math.log2(100)) + 4


@pytest.mark.parametrize("k", [1, 3, 8])
def test_search_recovers_planted_conjunctive_set(k):
    """breaks(S) iff S holds every planted weight: the unique minimal set is the planted one."""
    cands, planted = planted_universe(k=k)
    result = find_critical_set(cands, breaks=lambda s: planted <= set(s.tolist()),
                               restores=lambda s: planted <= set(s.tolist()), progress=False)
    assert set(result.ids.tolist()) == planted
    assert result.breaks and result.restores
    assert result.candidate_groups == cands.n == 1800
    assert result.evaluations < cands.n / 10  # far below one test per candidate


def test_search_with_redundancy_returns_an_irreducible_set():
    """breaks(S) iff S holds at least 3 of 6 planted weights: any 3 of them is minimal."""
    cands, planted = planted_universe(k=6, seed=3)
    breaks = lambda s: len(planted & set(s.tolist())) >= 3
    result = find_critical_set(cands, breaks=breaks, progress=False)
    got = set(result.ids.tolist())
    assert len(got) == 3 and got <= planted and result.restores is None
    for drop in got:  # irreducible: no weight can be left out
        assert not breaks(np.array(sorted(got - {drop})))


def test_restore_phase_grows_the_set():
    """Removing {a} breaks, but at s_hi restoring {a} is not enough: {b} must come back too."""
    cands, _ = planted_universe(k=1)
    a, b = 5, 1234
    result = find_critical_set(cands, breaks=lambda s: a in s or b in s,
                               restores=lambda s: a in s and b in s, progress=False)
    assert set(result.ids.tolist()) in ({a, b},)
    assert result.breaks and result.restores
    assert [st["phase"] for st in result.steps] == ["break"] * 3 + ["restore"] * 3


def test_prior_order_reduces_tests_but_not_the_answer():
    cands, planted = planted_universe(k=4)
    good = cands.prior.copy()
    good[list(planted)] = 1.0  # the prior points at the planted weights
    informed = CandidateSet(cands.names, cands.shapes, cands.indices, prior=good)
    breaks = lambda s: planted <= set(s.tolist())
    plain = find_critical_set(cands, breaks, progress=False)
    smart = find_critical_set(informed, breaks, progress=False)
    assert set(plain.ids.tolist()) == set(smart.ids.tolist()) == planted
    assert smart.evaluations < plain.evaluations


def test_nothing_to_isolate_and_budget():
    cands, planted = planted_universe(k=2)
    with pytest.raises(NothingToIsolate, match="does not break"):
        find_critical_set(cands, breaks=lambda s: False, progress=False)
    with pytest.raises(NothingToIsolate, match="already broken"):
        find_critical_set(cands, breaks=lambda s: True, progress=False)
    with pytest.raises(NothingToIsolate, match="does not bring the meaning back"):
        find_critical_set(cands, breaks=lambda s: planted <= set(s.tolist()), restores=lambda s: len(s) < 0,
                          progress=False)
    with pytest.raises(SearchBudgetExceeded, match="larger budget"):
        find_critical_set(cands, breaks=lambda s: planted <= set(s.tolist()), max_evaluations=5, progress=False)


def test_each_subset_is_tested_once():
    cands, planted = planted_universe(k=5)
    seen = []

    def breaks(s):
        seen.append(subset_key(s))
        return planted <= set(s.tolist())

    result = find_critical_set(cands, breaks, restores=lambda s: planted <= set(s.tolist()), progress=False)
    assert len(seen) == len(set(seen))
    assert result.evaluations >= len(seen)


# -- evaluation log and resume --------------------------------------------------------------------------------------
def test_resume_replays_the_log_without_repeating(tmp_path):
    cands, planted = planted_universe(k=4)
    fp = cands.fingerprint()

    def make_raw(calls, fail_after=None):
        def raw(ids):
            if fail_after is not None and len(calls) >= fail_after:
                raise KeyboardInterrupt  # the process is killed mid-search
            calls.append(subset_key(ids))
            hit = len(planted & set(ids.tolist()))
            return {"out": float(hit < len(planted)), "other": 1.0, "nan": float("nan")}
        return raw

    def search(evaluate):
        return find_critical_set(cands, breaks=lambda s: evaluate(s)["out"] < 0.5,
                                 restores=lambda s: evaluate(np.setdiff1d(cands.all_ids(), s))["out"] >= 0.5,
                                 progress=False)

    reference_calls: list = []
    reference = search(CachedEvaluator(make_raw(reference_calls), EvaluationLog(None, fp)))

    first: list = []
    path = tmp_path / "evaluations.jsonl"
    with pytest.raises(KeyboardInterrupt):
        search(CachedEvaluator(make_raw(first, fail_after=9), EvaluationLog(path, fp)))
    assert len(first) == 9 and len(path.read_text().splitlines()) == 1 + 9

    second: list = []
    cached = CachedEvaluator(make_raw(second), EvaluationLog(path, fp))
    resumed = search(cached)
    assert not set(first) & set(second)  # nothing evaluated twice
    assert len(first) + len(second) == len(reference_calls)
    assert cached.replayed == 9 and cached.fresh == len(second)
    assert resumed.ids.tolist() == reference.ids.tolist() and resumed.evaluations == reference.evaluations
    # a third run evaluates nothing at all, and NaN survives the JSON round trip
    third: list = []
    again = CachedEvaluator(make_raw(third), EvaluationLog(path, fp))
    assert search(again).ids.tolist() == reference.ids.tolist() and third == []
    assert math.isnan(again(np.zeros(0, dtype=np.int64))["nan"])


def test_log_drops_a_torn_line_and_refuses_other_fingerprints(tmp_path, caplog):
    path = tmp_path / "evaluations.jsonl"
    store = EvaluationLog(path, "abc")
    store.add(subset_key(np.array([1, 2])), 2, {"out": 0.25})
    with open(path, "ab") as f:
        f.write(b'{"key": "dead", "n": 1, "val')  # killed mid-write
    reopened = EvaluationLog(path, "abc")
    assert "incomplete last line" in caplog.text
    assert len(reopened) == 1 and reopened.get(subset_key(np.array([2, 1]))) == {"out": 0.25}
    reopened.add("k2", 1, {"out": 1.0})
    lines = path.read_text().splitlines()
    assert [json.loads(x).get("key") for x in lines[1:]] == [subset_key(np.array([1, 2])), "k2"]
    with pytest.raises(RunError, match="delete it to start this search over"):
        EvaluationLog(path, "another fingerprint")


def test_a_failing_level_answer_is_redone_with_the_chain(monkeypatch, caplog):
    """With a non-monotone test QuickXplain's answer can fail its own test (simulated here by an answer that leaves
    a planted weight out); the level is then redone with the prefix chain, whose answer passes by construction."""
    from sdprobe.isolate import search

    cands, planted = planted_universe(k=3)
    monkeypatch.setattr(search, "quickxplain", lambda groups, test, required: [0])
    result = find_critical_set(cands, lambda s: planted <= set(s.tolist()), levels=("weight",), progress=False)
    assert "not monotone" in caplog.text
    assert result.breaks and set(result.ids.tolist()) == planted
