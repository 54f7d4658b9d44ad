"""Captum attributions on tiny organism-shaped components: shapes, completeness, hook removal, exact restore."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures_weights import weights_hash
from sdprobe.architecture import select
from sdprobe.attribution import (
    IGConfig, LatentProbe, MeaningScore, Trajectory, TrajectoryConfig, attribute_neurons, attribute_tokens,
    baseline_ids, hook_count, hooked, injected_output, top1_rate, weight_saliency,
)
from sdprobe.generate import GenerationConfig, generate

STEPS = 2  # denoising steps of the tiny trajectories


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    return LatentProbe().eval().requires_grad_(False)


@pytest.fixture()
def score(tiny_organism, head):
    return MeaningScore(Trajectory(tiny_organism, TrajectoryConfig(steps=STEPS, guidance=3.0)), head, "color")


def _no_hooks(pipe) -> bool:
    return hook_count(pipe.unet) == 0 and hook_count(pipe.text_encoder) == 0 and hook_count(pipe.vae) == 0


def test_trajectory_reproduces_the_pipeline(tiny_organism):
    prompts, seeds = ["a red circle", "a small blue square at the top left"], [3, 4]
    traj = Trajectory(tiny_organism, TrajectoryConfig(steps=STEPS, guidance=3.0))
    with torch.no_grad():
        mine = traj.decode(traj(traj.tokenize(prompts), traj.noise(seeds))).permute(0, 2, 3, 1).numpy()
    ref = generate(tiny_organism, prompts, seeds, GenerationConfig(steps=STEPS, guidance=3.0))
    np.testing.assert_allclose(mine, ref, atol=1e-5)


def test_baseline_keeps_special_tokens(tiny_organism):
    tok = tiny_organism.tokenizer
    ids = Trajectory(tiny_organism).tokenize(["a red circle"])
    base = baseline_ids(tok, ids)
    assert base[0, 0] == tok.bos_token_id
    assert (base[0, 1:] == tok.pad_token_id).all()
    assert (ids[0, 1:4] != tok.pad_token_id).all()


def test_token_attribution_shapes_and_completeness(tiny_organism, score):
    prompts, seeds = ["a red circle", "a large blue square at the top left"], [0, 1]
    config = IGConfig(n_steps=24, noise_samples=2)
    table = attribute_tokens(score, prompts, seeds, values=["red", "blue"], config=config, progress=False)
    # one row per token: start, the words, end
    assert table.groupby("prompt").size().to_dict() == {prompts[0]: 5, prompts[1]: 10}
    assert table[table.prompt == prompts[1]]["token"].tolist()[1:-1] == prompts[1].split()
    assert {"prompt", "target", "position", "token", "attribution", "top_token_correct"} <= set(table.columns)
    # completeness: attributions sum to score(prompt) - score(baseline), computed here independently
    traj = score.trajectory
    ids, noise = traj.tokenize(prompts), config.noise(traj, seeds)  # (2, 2, C, h, w): two noises per prompt
    values = score.value_index(["red", "blue"])
    with torch.no_grad():
        gap = score(ids, noise, values) - score(baseline_ids(tiny_organism.tokenizer, ids), noise, values)
    sums = table.groupby("prompt", sort=False)["attribution"].sum().to_numpy()
    np.testing.assert_allclose(sums, gap.numpy(), rtol=0.05, atol=1e-3)
    assert 0.0 <= top1_rate(table) <= 1.0
    assert _no_hooks(tiny_organism)


def test_score_of_several_noises_is_the_mean_of_their_scores(tiny_organism, score):
    traj = score.trajectory
    ids, values = traj.tokenize(["a red circle", "a blue square"]), score.value_index(["red", "blue"])
    config = IGConfig(noise_samples=3)
    noise = config.noise(traj, [5, 6])  # (2, 3, C, h, w) from seeds 15, 16, 17 and 18, 19, 20
    assert noise.shape[:2] == (2, 3)
    torch.testing.assert_close(noise[1, 2], traj.noise([20])[0])
    with torch.no_grad():
        averaged = score(ids, noise, values)
        single = torch.stack([score(ids, noise[:, j], values) for j in range(3)], dim=1)  # (2, 3)
    torch.testing.assert_close(averaged, single.mean(dim=1), rtol=1e-5, atol=1e-5)
    assert len(score.predict(ids, noise)) == 2
    with pytest.raises(ValueError, match="must be positive"):
        IGConfig(noise_samples=0)


def test_gate_attributions_sum_to_removing_the_units(tiny_organism, score):
    table = attribute_neurons(score, "unet.attn2", ["a red circle"], [0], values=["red"], method="gate",
                              config=IGConfig(n_steps=24, noise_samples=1), progress=False)
    refs = select(tiny_organism, "unet.attn2")
    assert len(table) == sum(r.rows() for r in refs)
    assert set(table["method"]) == {"gate"}
    traj = score.trajectory
    ids, noise, v = traj.tokenize(["a red circle"]), traj.noise([0]), score.value_index(["red"])
    with torch.no_grad():
        intact = score(ids, noise, v)
        with hooked([r.module for r in refs], lambda i, m, inp, out: out * 0):
            removed = score(ids, noise, v)
    np.testing.assert_allclose(table["attribution"].sum(), float(intact - removed), rtol=0.05, atol=1e-3)
    assert _no_hooks(tiny_organism)


def test_conductance_on_text_units(tiny_organism, score):
    table = attribute_neurons(score, "text_encoder.layers.0.mlp", ["a red circle"], [0], values=["red"],
                              config=IGConfig(n_steps=4, noise_samples=1), progress=False)
    assert set(table["method"]) == {"conductance"}
    assert set(table["layer"]) == {"encoder.layers.0.mlp.fc1", "encoder.layers.0.mlp.fc2"}
    assert np.isfinite(table["attribution"]).all() and (table["attribution"] != 0).any()
    with pytest.raises(ValueError, match="runs at every denoising step"):
        attribute_neurons(score, "unet.attn2", ["a red circle"], [0], method="conductance", progress=False)
    with pytest.raises(ValueError, match="valid: auto, conductance, gate"):
        attribute_neurons(score, "unet.attn2", ["a red circle"], [0], method="lrp", progress=False)


class _Boom(torch.nn.Module):
    attributes = {"color": ("red", "blue")}

    def logits(self, latents):
        raise RuntimeError("boom")


def test_hooks_removed_after_errors(tiny_organism):
    score = MeaningScore(Trajectory(tiny_organism, TrajectoryConfig(steps=1)), _Boom(), "color")
    with pytest.raises(RuntimeError, match="boom"):
        attribute_tokens(score, ["a red circle"], [0], values=["red"], config=IGConfig(n_steps=2), progress=False)
    assert _no_hooks(tiny_organism)
    for method in ("gate", "conductance"):
        sel = "unet.ff" if method == "gate" else "text_encoder.mlp"
        with pytest.raises(RuntimeError, match="boom"):
            attribute_neurons(score, sel, ["a red circle"], [0], values=["red"], method=method,
                              config=IGConfig(n_steps=2), progress=False)
        assert _no_hooks(tiny_organism)
    layer = tiny_organism.text_encoder.get_input_embeddings()
    with pytest.raises(ValueError, match="injected tensor has shape"):
        with injected_output(layer, lambda: torch.zeros(1)):
            tiny_organism.text_encoder(Trajectory(tiny_organism).tokenize(["a"]))
    assert _no_hooks(tiny_organism)


def test_weight_saliency_first_order_and_restores(tiny_organism, score):
    refs = select(tiny_organism, "text_encoder.layers.2.mlp")
    before = weights_hash(tiny_organism)
    flags = [r.weight.requires_grad for r in refs]
    sal = weight_saliency(score, refs, ["a red circle"], [0], values=["red"], kind="signed", progress=False)
    assert set(sal) == {r.qualified_name for r in refs}
    assert all(sal[r.qualified_name].shape == r.weight.shape for r in refs)
    assert weights_hash(tiny_organism) == before
    assert [r.weight.requires_grad for r in refs] == flags and all(r.weight.grad is None for r in refs)
    # removing the most salient weight lowers the score by about its signed saliency (first order)
    ref = refs[0]
    flat = sal[ref.qualified_name].reshape(-1)
    i = int(flat.abs().argmax())
    traj = score.trajectory
    ids, noise, v = traj.tokenize(["a red circle"]), traj.noise([0]), score.value_index(["red"])
    with torch.no_grad():
        dense = score(ids, noise, v)
        w = ref.weight.data.view(-1)
        old = w[i].clone()
        w[i] = 0
        try:
            pruned = score(ids, noise, v)
        finally:
            w[i] = old
    assert float(dense - pruned) == pytest.approx(float(flat[i]), rel=0.2, abs=1e-6)


def test_score_errors_name_valid_choices(tiny_organism, head):
    traj = Trajectory(tiny_organism, TrajectoryConfig(steps=1))
    with pytest.raises(ValueError, match="valid: color, shape, position, size"):
        MeaningScore(traj, head, "texture")
    with pytest.raises(ValueError, match="valid: log_prob, log_odds, prob"):
        MeaningScore(traj, head, "color", kind="margin")
    with pytest.raises(ValueError, match="valid: red, green"):
        MeaningScore(traj, head, "color").value_index(["magenta"])
    with pytest.raises(ValueError, match="steps must be positive"):
        TrajectoryConfig(steps=0)


def test_log_odds_of_two_classes_is_the_logit_gap(tiny_organism):
    class Fixed(torch.nn.Module):
        attributes = {"color": ("red", "blue", "green")}

        def logits(self, latents):
            return {"color": torch.tensor([[2.0, 0.0, 0.0]]).expand(len(latents), -1)}

    score = MeaningScore(Trajectory(tiny_organism), Fixed(), "color", kind="log_odds")
    got = score.from_latents(torch.zeros(1, 4, 8, 8), torch.tensor([0]))
    p = np.exp(2) / (np.exp(2) + 2)
    assert float(got) == pytest.approx(np.log(p / (1 - p)))
