"""Provenance: a run names the weights it was made with, and no verb reloads other weights for it."""

from __future__ import annotations

import pytest
import torch

from sdprobe.cli import main
from sdprobe.errors import RunError
from sdprobe.export import export_pruned
from sdprobe.models import load_pipeline
from sdprobe.provenance import CALLER, PROVENANCE, verify, weights_digest
from sdprobe.runs import RunDir
from sdprobe.sweep import ComponentPlan, SweepConfig, run_sweep
from sdprobe.generate import GenerationConfig


def _config(model: str) -> SweepConfig:
    return SweepConfig(model=model, components={"text_encoder": ComponentPlan(["text_encoder"])}, start=0.5,
                       stop=0.5, refine=None, n_prompts=1, n_samples=0, metrics=["distance"],
                       generation=GenerationConfig(steps=1))


@pytest.fixture
def modified_copy(tiny_organism, tmp_path):
    """A saved copy of the organism-shaped pipeline with one text-encoder weight changed."""
    path = tmp_path / "copy"
    tiny_organism.save_pretrained(path, safe_serialization=True)
    pipe = load_pipeline(str(path))
    with torch.no_grad():
        pipe.text_encoder.get_parameter("encoder.layers.0.mlp.fc1.weight")[0, 0] += 1.0
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def test_digest_changes_with_one_weight(tiny_organism):
    before = weights_digest(tiny_organism)
    w = tiny_organism.unet.conv_in.weight
    old = w[0, 0, 0, 0].item()
    with torch.no_grad():
        w[0, 0, 0, 0] = old + 1.0
        after = weights_digest(tiny_organism)
        w[0, 0, 0, 0] = old
    assert before["unet"] != after["unet"] and before["text_encoder"] == after["text_encoder"]
    assert weights_digest(tiny_organism) == before


def test_a_sweep_of_a_loaded_copy_must_name_it(modified_copy, tmp_path):
    pipe = load_pipeline(str(modified_copy))
    with pytest.raises(ValueError, match="the pipeline was loaded from"):
        run_sweep(pipe, _config("builtin:tiny-shapes"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    run = run_sweep(pipe, _config(str(modified_copy)), tmp_path / "run", progress=False)
    saved = RunDir(run.path).path / PROVENANCE
    assert saved.exists() and str(modified_copy) in saved.read_text()


def test_reloading_other_weights_is_refused_through_the_api_and_the_cli(tiny_organism, modified_copy, tmp_path,
                                                                        capsys):
    run = run_sweep(tiny_organism, _config(str(modified_copy)), tmp_path / "run", progress=False)
    assert CALLER in (run.path / PROVENANCE).read_text()
    with pytest.raises(RunError, match="was made with other weights"):  # the folder holds the modified copy
        export_pruned(run.path, 0.5, tmp_path / "export")
    with pytest.raises(RunError, match="text_encoder differ"):
        verify(run.path, load_pipeline(str(modified_copy)))
    verify(run.path, tiny_organism)  # the weights it was made with pass
    assert main(["export", str(run.path), "--sparsity", "0.5", "-o", str(tmp_path / "export")]) == 2
    assert "was made with other weights" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()


def test_resuming_with_other_weights_is_refused(tiny_organism, modified_copy, tmp_path):
    config = _config(str(modified_copy))
    run_sweep(load_pipeline(str(modified_copy)), config, tmp_path / "run", progress=False)
    with pytest.raises(RunError, match="was made with other weights"):
        run_sweep(tiny_organism, config, tmp_path / "run", progress=False)
