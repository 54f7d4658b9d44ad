"""The same guarantees on a CUDA device: exact restore, nested masks and device memory near the model's own,
half-precision sweeps and seeded generation. Skipped where no GPU is present (CI has none)."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from fixtures_weights import weights_hash
from sdprobe.architecture import select
from sdprobe.generate import GenerationConfig, generate
from sdprobe.prune import MagnitudeScorer, ProgressiveMask
from sdprobe.sweep import ComponentPlan, SweepConfig, run_sweep
from conftest import build_tiny_organism
from test_prune_masks import module_tree

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
CUDA = torch.device("cuda")


def wide_text_encoder(dtype: torch.dtype, layers: int = 64, width: int = 1024) -> nn.Module:
    """Many layers, as in real models: a mask's temporaries scale with the largest tensor, not the model."""
    torch.manual_seed(0)
    return module_tree({f"text_model.encoder.layers.{i}.mlp.fc1": nn.Linear(width, width, bias=False)
                        for i in range(layers)}).to(CUDA, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_auto_store_keeps_device_memory_near_the_model_and_restores_exactly(dtype):
    pipe = type("Pipe", (), {})()
    pipe.text_encoder = wide_text_encoder(dtype)
    refs = select(pipe, "text_encoder")
    model_bytes = sum(r.numel * r.weight.element_size() for r in refs)
    before = weights_hash(pipe.text_encoder)
    with torch.no_grad():
        reference = {r.qualified_name: r.weight.abs().float().reshape(-1).argsort(stable=True).cpu() for r in refs}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs), store="auto") as m:  # measured: no checks inside
        assert m.store == torch.device("cpu") and m.memory_bytes() == m.stored_bytes() > 0.9 * model_bytes
        for step in [*range(0, 191, 5), *range(185, -1, -10)]:  # up to 0.95 in 0.025 steps, down in 0.05 steps
            m.set_sparsity(step / 200)
        m.set_sparsity(0.95)  # the exit restores from the highest level
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    assert weights_hash(pipe.text_encoder) == before
    assert (model_bytes + extra) / model_bytes <= 1.3, f"model + mask = {(model_bytes + extra) / model_bytes:.2f}x"
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs), store="auto") as m:
        m.set_sparsity(0.5)
        for r in refs:  # the 50% lowest |w| of each matrix, as a plain argsort says
            zeros = (r.weight.reshape(-1) == 0).nonzero().reshape(-1).cpu().sort().values
            assert torch.equal(zeros, reference[r.qualified_name][:r.numel // 2].sort().values)
    assert weights_hash(pipe.text_encoder) == before


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_sweep_on_cuda_restores_and_matches_at_level_zero(tmp_path, dtype):
    pipe = build_tiny_organism().to(CUDA, getattr(torch, dtype))  # its own copy: a cast is not undone exactly
    before = weights_hash(pipe.text_encoder) + weights_hash(pipe.unet)
    config = SweepConfig(model="tiny", components={"text_encoder": ComponentPlan(["text_encoder"])}, start=0.0,
                         stop=0.5, step=0.25, refine=None, prompts=["a red circle", "a blue square"], n_samples=1,
                         metrics=["distance"], generation=GenerationConfig(steps=2, batch_size=2),
                         device="cuda", dtype=dtype)
    table = run_sweep(pipe, config, tmp_path / "run", progress=False).results()
    assert (table.loc[table["level"] == 0.0, "distance"] == 0).all()
    assert (table.loc[table["level"] == 0.5, "distance"] > 0).all()
    assert weights_hash(pipe.text_encoder) + weights_hash(pipe.unet) == before


def test_cuda_generation_is_seeded_per_image():
    pipe = build_tiny_organism().to(CUDA)
    prompts = ["a red circle", "a blue square", "a circle"]
    a = generate(pipe, prompts, [1, 2, 3], GenerationConfig(steps=2, batch_size=2))
    b = generate(pipe, ["a blue square", "a circle"], [2, 3], GenerationConfig(steps=2, batch_size=1))
    other = generate(pipe, ["a blue square", "a circle"], [4, 5], GenerationConfig(steps=2, batch_size=1))
    # each image's noise comes from its own seed, whatever the batch; kernels chosen per batch shape move values
    # by less than one 8-bit level, another seed by far more
    assert abs(a[1:] - b).max() < 1 / 255 < abs(other - b).max()


def test_nm_layout_is_accepted_by_semi_structured_sparse_kernels():
    from sdprobe.export import NMPattern, check_nm, nm_indices
    torch.manual_seed(0)
    weight = torch.randn(256, 512, device=CUDA, dtype=torch.float16)
    weight.view(-1)[nm_indices(weight, NMPattern(2, 4))] = 0
    check_nm(weight, NMPattern(2, 4))
    sparse = torch.sparse.to_sparse_semi_structured(weight)
    x = torch.randn(512, 128, device=CUDA, dtype=torch.float16)
    assert torch.allclose(torch.mm(sparse, x), torch.mm(weight, x), rtol=1e-2, atol=1e-2)
