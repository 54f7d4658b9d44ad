"""Wanda: hand-checked input norms on a two-layer toy, hook removal, and a run on a tiny organism pipeline."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sdprobe.architecture import select
from sdprobe.generate import GenerationConfig
from sdprobe.prune import InputNorms, WandaScorer
from test_prune_masks import module_tree

TOKENS = {  # prompt -> its token features (T=2, 3), what the toy "tokenizer + embedding" produces
    "a": torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]]),
    "b": torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]]),
}
FC1, FC2 = "text_encoder.layers.0.mlp.fc1.weight", "text_encoder.layers.0.mlp.fc2.weight"


class ToyTextPipe:
    """Runs ``fc2(fc1(tokens))`` on the prompts, the way a pipeline's ``encode_prompt`` runs its text encoder."""

    device = torch.device("cpu")

    def __init__(self, fail_after_fc1: bool = False) -> None:
        fc1, fc2 = nn.Linear(3, 2, bias=False), nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            fc1.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]]))
            fc2.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
        self.text_encoder = module_tree({"layers.0.mlp.fc1": fc1, "layers.0.mlp.fc2": fc2})
        self.fail_after_fc1 = fail_after_fc1
        self.calls = 0

    def encode_prompt(self, prompt, device, num_images_per_prompt, do_classifier_free_guidance):
        assert not do_classifier_free_guidance
        self.calls += 1
        mlp = self.text_encoder.get_submodule("layers.0.mlp")
        hidden = mlp.fc1(torch.stack([TOKENS[p] for p in prompt]))  # (B, T, 2)
        if self.fail_after_fc1:
            raise RuntimeError("encoder failed")
        return mlp.fc2(hidden), None


def test_hand_checked_scores_on_a_two_layer_toy():
    pipe = ToyTextPipe()
    refs = select(pipe, "text_encoder")
    # fc1 inputs: the four tokens -> column norms sqrt(1+4), sqrt(9), sqrt(4+1)
    # fc2 inputs: fc1 outputs [-1, 0], [0, 6], [1, 0], [0, 0] -> column norms sqrt(2), 6
    s5, s2 = math.sqrt(5), math.sqrt(2)
    expected = {FC1: torch.tensor([[s5, 0.0, s5], [0.0, 6.0, 0.0]]), FC2: torch.tensor([[s2, 12.0], [3 * s2, 6.0]])}
    for batch_size in (1, 64):  # batching the calibration prompts does not change the norms
        scores = WandaScorer(pipe, ["a", "b"], generation=GenerationConfig(batch_size=batch_size)).scores(refs)
        for name, want in expected.items():
            assert torch.allclose(scores[name], want, atol=1e-6)
    assert pipe.calls == 2 + 1
    assert WandaScorer(pipe, ["a"]).group == "row"


def test_no_prompts_and_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="Wanda needs calibration prompts"):
        WandaScorer(ToyTextPipe(), [])
    with pytest.raises(ValueError, match="timesteps"):
        WandaScorer(ToyTextPipe(), ["a"], timesteps=0)
    grouped = module_tree({"down_blocks.0.resnets.0.conv1": nn.Conv2d(4, 4, 3, groups=2)})
    refs = select(type("P", (), {"unet": grouped})(), "unet.conv")
    with pytest.raises(ValueError, match="grouped"):
        InputNorms(refs)


def test_a_weight_that_sees_no_input_is_reported():
    pipe = ToyTextPipe()
    pipe.text_encoder.get_submodule("layers.0").add_module("self_attn", module_tree({"q_proj": nn.Linear(2, 2)}))
    with pytest.raises(ValueError, match="no input during calibration.*q_proj"):
        WandaScorer(pipe, ["a"]).scores(select(pipe, "text_encoder"))


def hooks(module: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) for m in module.modules())


def test_hooks_are_removed_after_success_and_after_exceptions():
    pipe = ToyTextPipe(fail_after_fc1=True)
    refs = select(pipe, "text_encoder")
    with pytest.raises(RuntimeError, match="encoder failed"):
        WandaScorer(pipe, ["a", "b"]).scores(refs)
    assert hooks(pipe.text_encoder) == 0
    with pytest.raises(KeyboardInterrupt):
        with InputNorms(refs):
            assert hooks(pipe.text_encoder) == len(refs)
            raise KeyboardInterrupt
    assert hooks(pipe.text_encoder) == 0
    ok = ToyTextPipe()
    WandaScorer(ok, ["a"]).scores(select(ok, "text_encoder"))
    assert hooks(ok.text_encoder) == 0


def test_wanda_on_a_tiny_organism_pipeline(tiny_organism):
    pipe = tiny_organism
    refs = select(pipe, ["text_encoder.layers.0", "unet.attn2", "unet.down.0.resnet.conv"])
    weights = {r.qualified_name: r.weight.detach().clone() for r in refs}
    prompts = ["a red circle", "a small blue square on the left"]
    one, two = (WandaScorer(pipe, prompts, timesteps=t, generation=GenerationConfig(guidance=2.0)) for t in (1, 2))
    norms1, norms2 = one.input_norms(refs), two.input_norms(refs)
    scores = two.scores(refs)
    assert hooks(pipe.text_encoder) == hooks(pipe.unet) == 0
    for r in refs:
        name = r.qualified_name
        assert torch.equal(r.weight, weights[name])
        assert (norms2[name] > 0).all()
        ratio = scores[name] / r.weight.detach().abs()  # = ||X_j||, the same in every row (and kernel position)
        assert torch.allclose(ratio, ratio.reshape(ratio.shape[0], ratio.shape[1], -1)[:1, :, :1].reshape(
            (1, -1) + (1,) * (r.weight.dim() - 2)).expand_as(ratio), rtol=1e-5)
        if name.endswith(("attn2.to_k.weight", "attn2.to_v.weight")):
            # cross-attention keys/values read the same prompt embeddings at every step: 2 steps = 2x squares
            assert torch.allclose(norms2[name] ** 2, 2 * norms1[name] ** 2, rtol=1e-4)
        elif r.component == "text_encoder":
            assert torch.allclose(norms2[name], norms1[name])  # no denoising steps in the text encoder
    assert any(r.kind == "conv" for r in refs)
