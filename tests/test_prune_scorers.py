"""Magnitude, N:M, random and OWL scorers, and the method factory, on toys checked by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from sdprobe.architecture import select
from sdprobe.prune import (METHODS, MagnitudeScorer, NMScorer, OwlAllocation, OwlScorer, ProgressiveMask, RandomScorer,
                           make_scorer, mask_from_scorer, prune)
from fixtures_weights import weights_hash
from test_prune_masks import module_tree, toy_pipe


def two_layer(w1: list, w2: list) -> SimpleNamespace:
    """A text encoder of two bias-free Linear layers with the given weights."""
    fc1, fc2 = nn.Linear(len(w1[0]), len(w1), bias=False), nn.Linear(len(w2[0]), len(w2), bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor(w1))
        fc2.weight.copy_(torch.tensor(w2))
    return SimpleNamespace(text_encoder=module_tree({"layers.0.mlp.fc1": fc1, "layers.0.mlp.fc2": fc2}))


FC1, FC2 = "text_encoder.layers.0.mlp.fc1.weight", "text_encoder.layers.0.mlp.fc2.weight"


def test_magnitude_scores_and_per_matrix_threshold():
    pipe = two_layer([[0.5, -2.0], [1.0, -0.1]], [[3.0, -4.0], [0.2, 0.3]])
    refs = select(pipe, "text_encoder")
    scores = MagnitudeScorer().scores(refs)
    assert torch.equal(scores[FC1], torch.tensor([[0.5, 2.0], [1.0, 0.1]]))
    assert torch.equal(scores[FC2], torch.tensor([[3.0, 4.0], [0.2, 0.3]]))
    with ProgressiveMask(refs, scores) as m:
        m.set_sparsity(0.5)  # two smallest of each matrix
        assert torch.equal(refs[0].weight, torch.tensor([[0.0, -2.0], [1.0, 0.0]]))
        assert torch.equal(refs[1].weight, torch.tensor([[3.0, -4.0], [0.0, 0.0]]))
    with mask_from_scorer(refs, MagnitudeScorer("global")) as m:
        m.set_sparsity(0.5)  # four smallest of all eight: 0.1, 0.2, 0.3, 0.5
        assert torch.equal(refs[0].weight, torch.tensor([[0.0, -2.0], [1.0, 0.0]]))
        assert torch.equal(refs[1].weight, torch.tensor([[3.0, -4.0], [0.0, 0.0]]))
        m.set_sparsity(0.625)  # and 1.0
        assert torch.equal(refs[0].weight, torch.tensor([[0.0, -2.0], [0.0, 0.0]]))
        assert torch.equal(refs[1].weight, torch.tensor([[3.0, -4.0], [0.0, 0.0]]))
    assert torch.equal(refs[0].weight, torch.tensor([[0.5, -2.0], [1.0, -0.1]]))
    with pytest.raises(ValueError, match="matrix, global"):
        MagnitudeScorer("layer")


def test_n_m_prunes_the_lowest_in_each_group_of_m():
    row = [[0.1, -3.0, 2.0, -0.5, 4.0, -0.2, 0.3, 1.0]]
    pipe = two_layer(row, [[1.0] * 4])
    refs = select(pipe, "text_encoder")[:1]  # fc1
    scorer = NMScorer(m=4)
    assert scorer.group == "nm:4"
    with mask_from_scorer(refs, scorer) as m:
        m.set_sparsity(0.5)  # 2:4
        assert torch.equal(refs[0].weight, torch.tensor([[0.0, -3.0, 2.0, 0.0, 4.0, 0.0, 0.0, 1.0]]))
        m.set_sparsity(0.3)  # floor(0.3 * 4) = 1 per group
        assert torch.equal(refs[0].weight, torch.tensor([[0.0, -3.0, 2.0, -0.5, 4.0, 0.0, 0.3, 1.0]]))
        m.set_sparsity(0.75)  # 3:4
        assert torch.equal(refs[0].weight, torch.tensor([[0.0, -3.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="multiple of M=3"):
        NMScorer(m=3).scores(refs)
    with pytest.raises(ValueError, match=">= 2"):
        NMScorer(m=1)


def test_random_scores_are_seeded_float32_and_not_magnitude():
    refs = select(toy_pipe(), "text_encoder")
    a, b, c = (RandomScorer(seed=s).scores(refs) for s in (1, 1, 2))
    for r in refs:
        n = r.qualified_name
        assert a[n].dtype == torch.float32 and a[n].shape == r.weight.shape
        assert torch.equal(a[n], b[n]) and not torch.equal(a[n], c[n])
        assert 0 <= float(a[n].min()) and float(a[n].max()) < 1
    magnitude = MagnitudeScorer().scores(refs)
    n = refs[0].qualified_name
    assert not torch.equal(torch.argsort(a[n].reshape(-1)), torch.argsort(magnitude[n].reshape(-1)))


def owl_toy() -> tuple[list, dict]:
    """Two equally large layers; layer 0 has 2 outliers of 16 scores, layer 1 none (M=2)."""
    pipe = SimpleNamespace(text_encoder=module_tree({f"layers.{i}.mlp.fc1": nn.Linear(4, 4) for i in range(2)}))
    refs = select(pipe, "text_encoder")
    s0 = torch.ones(4, 4)
    s0[0, 0] = s0[1, 1] = 10.0  # mean 2.125: 10 > 2 * 2.125, 1 < it
    return refs, {refs[0].qualified_name: s0, refs[1].qualified_name: torch.ones(4, 4)}


def test_owl_hand_checked_allocation():
    refs, scores = owl_toy()
    alloc = OwlAllocation(refs, scores, hyper_m=2.0, lam=0.08)
    assert np.allclose(alloc.outlier_ratio, [2 / 16, 0.0])
    # ratios normalised to [0.16, 0], centred: layer 0 (more outliers) keeps more
    for target in (0.3, 0.5, 0.9):
        out = alloc(target)
        assert out[refs[0].qualified_name] == pytest.approx(target - 0.08)
        assert out[refs[1].qualified_name] == pytest.approx(target + 0.08)
    out = alloc(0.04)  # the clamp binds at 0; the mean is still the target
    assert out[refs[0].qualified_name] == 0.0 and out[refs[1].qualified_name] == pytest.approx(0.08)
    assert alloc(0.0) == {r.qualified_name: 0.0 for r in refs}


def test_owl_mean_equals_target_and_is_monotone_on_real_layers():
    pipe = toy_pipe()
    refs = select(pipe, ["text_encoder", "unet"])
    scorer = OwlScorer(MagnitudeScorer(), hyper_m=2.0)
    with pytest.raises(RuntimeError, match="scores"):
        scorer.allocation
    scores = scorer.scores(refs)
    numel = np.array([r.numel for r in refs], dtype=float)
    previous = None
    for target in np.linspace(0.0, 0.95, 39):
        f = np.array([scorer.allocation(float(target))[r.qualified_name] for r in refs])
        assert (f >= 0).all() and (f <= 1).all()
        assert float(f @ numel / numel.sum()) == pytest.approx(target, abs=1e-9)
        if previous is not None:
            assert (f >= previous).all()
        previous = f
    per_layer = scorer.allocation.layer_sparsity(0.5)
    assert len(set(np.round(per_layer, 9))) > 1  # layers differ
    with ProgressiveMask(refs, scores, allocation=scorer.allocation) as m:
        m.set_sparsity(0.5)
        table = m.layer_table(0.5)
        pruned = float((table["sparsity"] * table["numel"]).sum() / table["numel"].sum())
        assert pruned == pytest.approx(0.5, abs=0.02)  # up to flooring per tensor


def test_make_scorer_builds_every_method_and_names_the_valid_ones():
    pipe = toy_pipe()
    expected = {"magnitude": ("magnitude", "matrix"), "magnitude-global": ("magnitude", "global"),
                "wanda": ("wanda", "row"), "random": ("random", "matrix"), "owl-magnitude": ("owl-magnitude", "matrix"),
                "owl-wanda": ("owl-wanda", "row"), "nm": ("nm", "nm:4")}
    assert set(expected) == set(METHODS)
    for method in METHODS:
        scorer = make_scorer(method, pipe, calibration_prompts=["a red circle"], seed=1)
        assert (scorer.name, scorer.group) == expected[method]
    assert make_scorer("nm", m=8).group == "nm:8"
    with pytest.raises(ValueError, match="magnitude, magnitude-global, wanda, random, owl-magnitude, owl-wanda, nm"):
        make_scorer("taylor", pipe)
    with pytest.raises(ValueError, match="Wanda needs calibration prompts"):
        make_scorer("wanda", pipe)
    with pytest.raises(ValueError, match="pass pipe"):
        make_scorer("owl-wanda", None, calibration_prompts=["x"])


def test_one_shot_prune_context():
    pipe = toy_pipe()
    before = weights_hash(pipe)
    with prune(pipe, "unet", "magnitude", 0.35) as m:
        assert m.sparsity == 0.35 and m.max_sparsity == 0.35
        assert m.stats(pipe)["scope_pruned"] == pytest.approx(sum(int(0.35 * r.numel) for r in m.refs) / m.numel)
    assert weights_hash(pipe) == before


@pytest.mark.parametrize("scorer", [MagnitudeScorer(), NMScorer(m=4), OwlScorer(MagnitudeScorer(), hyper_m=1.5),
                                    RandomScorer(seed=2)], ids=lambda s: s.name)
def test_lazy_scores_equal_the_eager_ones_and_are_computed_when_read(scorer):
    pipe = toy_pipe()
    refs = select(pipe, ["text_encoder", "unet"])
    eager = scorer.scores(refs)
    eager_allocation = scorer.allocation(0.5) if scorer.allocation else None
    lazy = scorer.lazy_scores(refs)
    assert list(lazy) == list(eager) and len(lazy) == len(eager)
    assert all(torch.equal(lazy[n], v) for n, v in eager.items())
    if eager_allocation is not None:
        assert scorer.allocation(0.5) == eager_allocation
    if scorer.name in ("magnitude", "nm", "owl-magnitude"):  # read from the weights as they are now
        with torch.no_grad():
            refs[0].weight.mul_(2)
        assert torch.equal(lazy[refs[0].qualified_name], 2 * eager[refs[0].qualified_name])
