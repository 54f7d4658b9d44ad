"""Exporting pruned pipelines from a tiny sweep run: the saved weights are the run's, reload with stock diffusers,
generate, keep an N:M layout, and nothing is half-written or left pruned on failure.

The run prunes a tiny untrained organism's text encoder and UNet by magnitude (per matrix) at levels 0 and 0.5.
Its random Linear weights hold no exact zeros, so at sparsity s each one must hold exactly its floor(s * numel)
smallest-magnitude entries as zeros: the right answer is known without sdprobe's own code.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors import safe_open

from fixtures_weights import weights_hash
from sdprobe.architecture import select
from sdprobe.cli import main
from sdprobe.cli.export import parse_sparsity
from sdprobe.errors import RunError
from sdprobe.export import (
    EXPORT_INFO,
    NMPattern,
    check_nm,
    count_zeros,
    export_pruned,
    nm_indices,
    nm_violations,
    parse_nm,
    read_export_info,
)
from sdprobe.generate import GenerationConfig, generate
from sdprobe.sweep import ComponentPlan, SweepConfig, run_sweep

PROMPTS = ["a red circle", "a small blue square"]
FAST = GenerationConfig(steps=2, batch_size=2)
LEVELS = (0.0, 0.5)
PATTERN = NMPattern(2, 4)


def saved_tensors(folder, component: str) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted((folder / component).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})
    return out


def saved_scope(folder, pipe, component: str) -> dict[str, torch.Tensor]:
    """The saved Linear weights the run pruned in ``component``, keyed by qualified name."""
    tensors = saved_tensors(folder, component)
    return {r.qualified_name: tensors[f"{r.module_name}.weight"] for r in select(pipe, component)}


@pytest.fixture(scope="module")
def run_dir(tiny_organism, tmp_path_factory):
    """A finished two-level sweep of a saved copy of the tiny organism (its config names that folder)."""
    root = tmp_path_factory.mktemp("export")
    tiny_organism.save_pretrained(root / "model", safe_serialization=True)
    config = SweepConfig(model=str(root / "model"),
                         components={"text_encoder": ComponentPlan(["text_encoder"]), "unet": ComponentPlan(["unet"])},
                         start=LEVELS[0], stop=LEVELS[1], step=LEVELS[1] - LEVELS[0], refine=None, prompts=PROMPTS,
                         n_samples=1, metrics=["distance"], generation=FAST)
    return run_sweep(tiny_organism, config, root / "run", progress=False)


def test_export_saves_the_runs_weights_and_reloads_with_stock_diffusers(run_dir, tiny_organism, tmp_path):
    out = tmp_path / "pruned"
    result = export_pruned(run_dir, 0.5, out)  # loads the run's model folder itself

    # The zero fractions read from the files are the ones the sweep measured at that level.
    rows = run_dir.results()
    at_level = rows[rows["level"] == 0.5].iloc[0]
    for component in ("text_encoder", "unet"):
        assert result.zeros[component]["sparsity"] == pytest.approx(at_level[f"sparsity_{component}"], abs=1e-12)
    info = json.loads((out / EXPORT_INFO).read_text())
    assert info["zeros"] == json.loads(json.dumps(result.zeros)) == read_export_info(out)["zeros"]
    assert info["level"] == 0.5 and info["sparsity"] == {"text_encoder": 0.5, "unet": 0.5} and info["nm"] is None
    assert info["config"] == run_dir.config() and "torch" in info["environment"]

    # Every pruned Linear weight holds exactly its floor(s * numel) smallest-magnitude entries as zeros.
    for component in ("text_encoder", "unet"):
        dense = {r.qualified_name: r.weight.detach() for r in select(tiny_organism, component)}
        for name, saved in saved_scope(out, tiny_organism, component).items():
            k = math.floor(0.5 * saved.numel())
            smallest = torch.argsort(dense[name].abs().reshape(-1), stable=True)[:k]
            assert int((saved == 0).sum()) == k, name
            assert bool((saved.reshape(-1)[smallest] == 0).all()), name

    reloaded = DiffusionPipeline.from_pretrained(out, use_safetensors=True)
    reloaded.set_progress_bar_config(disable=True)
    for component in ("text_encoder", "unet", "vae"):
        params = list(getattr(reloaded, component).parameters())
        zeros = sum(int((p == 0).sum()) for p in params) / sum(p.numel() for p in params)
        assert zeros == pytest.approx(result.zeros[component]["sparsity"], abs=1e-12), component
    images = generate(reloaded, PROMPTS[:1], [0], FAST)
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    assert not list(tmp_path.glob(".pruned.*")), "a temporary folder was left behind"


def test_a_joint_budget_prunes_each_component_to_its_own_sparsity(run_dir, tiny_organism, tmp_path):
    before = weights_hash(tiny_organism)
    result = export_pruned(run_dir, {"text_encoder": 0.5, "unet": 0.0}, tmp_path / "joint", pipe=tiny_organism)
    assert weights_hash(tiny_organism) == before, "the live pipeline was not restored"
    assert result.level is None and result.sparsity == {"text_encoder": 0.5, "unet": 0.0}
    rows = run_dir.results()
    assert result.zeros["text_encoder"]["sparsity"] == pytest.approx(
        rows.loc[rows["level"] == 0.5, "sparsity_text_encoder"].iloc[0], abs=1e-12)
    assert result.zeros["unet"]["sparsity"] == pytest.approx(
        rows.loc[rows["level"] == 0.0, "sparsity_unet"].iloc[0], abs=1e-12)


def test_nm_export_has_the_pattern_and_keeps_the_runs_zeros(run_dir, tiny_organism, tmp_path):
    plain = export_pruned(run_dir, 0.5, tmp_path / "plain", pipe=tiny_organism)
    before = weights_hash(tiny_organism)
    nm = export_pruned(run_dir, 0.5, tmp_path / "nm", nm="2:4", pipe=tiny_organism)
    assert weights_hash(tiny_organism) == before
    assert nm.nm == "2:4" and json.loads((nm.path / EXPORT_INFO).read_text())["nm"] == "2:4"
    for component in ("text_encoder", "unet"):
        plain_w = saved_scope(plain.path, tiny_organism, component)
        for name, w in saved_scope(nm.path, tiny_organism, component).items():
            check_nm(w, PATTERN, name)
            assert bool((w[plain_w[name] == 0] == 0).all()), f"{name} lost a zero of the run's mask"
            assert torch.equal(w[w != 0], plain_w[name][w != 0]), f"{name} changed a kept weight"
        assert nm.zeros[component]["zeros"] > plain.zeros[component]["zeros"]


def test_nm_at_level_zero_zeroes_exactly_half_of_every_linear_weight(run_dir, tiny_organism, tmp_path):
    result = export_pruned(run_dir, 0.0, tmp_path / "nm0", nm=PATTERN, pipe=tiny_organism)
    for name, w in saved_scope(result.path, tiny_organism, "text_encoder").items():
        assert int((w == 0).sum()) == w.numel() // 2 and nm_violations(w, PATTERN, name) == 0


def test_nm_helpers_by_hand():
    w = torch.tensor([[4.0, -1.0, 3.0, 0.5, 0.0, 2.0, -7.0, 1.0]])
    assert nm_indices(w, PATTERN).tolist() == [3, 1, 4, 7]
    assert nm_violations(w, PATTERN) == 2
    w.view(-1)[nm_indices(w, PATTERN)] = 0
    check_nm(w, PATTERN)
    with pytest.raises(ValueError, match="breaks the 2:4 pattern in 1 group"):
        check_nm(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), PATTERN, "w")
    with pytest.raises(ValueError, match="not a multiple of M=4"):
        nm_indices(torch.ones(2, 6), PATTERN, "odd")
    with pytest.raises(ValueError, match="Linear"):
        nm_indices(torch.ones(2, 4, 1, 1), PATTERN, "conv")
    assert parse_nm("2:4") == PATTERN and str(parse_nm(" 1:2")) == "1:2"
    for bad in ("2-4", "4:4", "0:4", "a:b", "2:4:8"):
        with pytest.raises(ValueError):
            parse_nm(bad)


@pytest.mark.parametrize("sparsity, message", [
    (0.7, r"outside the levels the run covered, \[0.0, 0.5\]"),
    (1.0, r"must be in \[0, 1\)"),
    (-0.1, r"must be in \[0, 1\)"),
    ({"text_encoder": 0.3}, "missing: \\['unet'\\]"),
    ({"text_encoder": 0.3, "unet": 0.3, "vae": 0.1}, "unknown: \\['vae'\\]"),
    ({"text_encoder": 0.3, "unet": 0.6}, r"unet sparsity 0.6 is outside what the run covered"),
])
def test_a_sparsity_the_run_did_not_cover_is_refused(run_dir, tiny_organism, tmp_path, sparsity, message):
    with pytest.raises(ValueError, match=message):
        export_pruned(run_dir, sparsity, tmp_path / "x", pipe=tiny_organism)
    assert not (tmp_path / "x").exists()


def test_a_non_empty_output_is_refused_unless_overwrite(run_dir, tiny_organism, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_pruned(run_dir, 0.5, out, pipe=tiny_organism)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    export_pruned(run_dir, 0.5, out, pipe=tiny_organism, overwrite=True)
    assert (out / EXPORT_INFO).exists() and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_failed_save_leaves_nothing_and_restores_the_weights(run_dir, tiny_organism, tmp_path, monkeypatch):
    before = weights_hash(tiny_organism)

    def half_save(folder, **kwargs):
        (folder / "model_index.json").write_text("{}")
        assert float(count_zeros_live(tiny_organism)) > 0.4  # the pipeline is pruned while it saves
        raise OSError("disk full")

    monkeypatch.setattr(tiny_organism, "save_pretrained", half_save)
    with pytest.raises(OSError, match="disk full"):
        export_pruned(run_dir, 0.5, tmp_path / "out", nm="2:4", pipe=tiny_organism)
    assert list(tmp_path.iterdir()) == []
    assert weights_hash(tiny_organism) == before


def count_zeros_live(pipe) -> float:
    weights = [r.weight for r in select(pipe, "text_encoder")]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_count_zeros_reads_the_files(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "unet").mkdir()
    save_file({"a": torch.tensor([0.0, 1.0, 0.0, 2.0]), "ids": torch.zeros(3, dtype=torch.int64)},
              str(tmp_path / "unet" / "m.safetensors"))
    assert count_zeros(tmp_path) == {"unet": {"zeros": 2, "numel": 4, "sparsity": 0.5}}


def test_cli_exports_and_refuses_bad_input(run_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", str(run_dir.path), "--sparsity", "text_encoder=0.5", "unet=0.5", "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert read_export_info(out)["sparsity"] == {"text_encoder": 0.5, "unet": 0.5}
    assert main(["export", str(run_dir.path), "--sparsity", "0.5", "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(run_dir.path), "--sparsity", "0.9", "-o", str(tmp_path / "y")]) == 2
    assert "outside the levels the run covered" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--sparsity", "0.5", "-o", str(tmp_path / "z")]) == 2
    assert "not an sdprobe run" in capsys.readouterr().err
    with pytest.raises(RunError, match="not an sdprobe export"):
        read_export_info(tmp_path)


def test_parse_sparsity():
    assert parse_sparsity(["0.35"]) == 0.35
    assert parse_sparsity(["text_encoder=0.475", "unet=0.35"]) == {"text_encoder": 0.475, "unet": 0.35}
    for bad, message in ((["x"], "a number or"), (["unet"], "a number or"), (["0.3", "unet=0.2"], "COMPONENT=VALUE"),
                         (["unet=a"], "COMPONENT=VALUE"), (["unet=0.1", "unet=0.2"], "twice")):
        with pytest.raises(ValueError, match=message):
            parse_sparsity(bad)
