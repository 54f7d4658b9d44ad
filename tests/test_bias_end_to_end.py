"""Bias runs end to end on a tiny organism-shaped pipeline: tables, pruning sweep, bias-critical search, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from sdprobe.attribution import LatentProbe, TrajectoryConfig
from sdprobe.bias import (
    BiasRunConfig, BiasSearchConfig, find_bias_critical, load_bias_probe, measure, run_bias, write_bias_critical,
)
from sdprobe.generate import GenerationConfig
from sdprobe.runs import RunDir
from sdprobe.world import COLORS

GEN = GenerationConfig(steps=2, guidance=2.0, batch_size=16)
PALETTE = np.asarray(list(COLORS.values()))


def mean_color(images: np.ndarray) -> list[str]:
    """A simple deterministic classifier: the palette color nearest to the image's mean color."""
    mean = np.nan_to_num(images).reshape(len(images), -1, 3).mean(1)  # (N, 3)
    return [list(COLORS)[i] for i in ((mean[:, None] - PALETTE[None]) ** 2).sum(-1).argmin(1)]


def _state(pipe):
    return {k: v.clone() for c in (pipe.unet, pipe.text_encoder) for k, v in c.state_dict().items()}


def test_measure_is_per_image_and_seeded(tiny_organism):
    probe = load_bias_probe("default-color")
    a = measure(tiny_organism, probe, mean_color, 3, GEN, seed=5, groups=["circle"])
    assert a["probe"].tolist() == ["circle"] * 3 and a["seed"].tolist() == [5, 6, 7]
    assert a["prompt"].tolist() == list(probe.groups[0].prompts[:3])
    pd.testing.assert_frame_equal(a, measure(tiny_organism, probe, mean_color, 3, GEN, seed=5, groups=["circle"]))
    with pytest.raises(ValueError, match="valid: circle, square, triangle"):
        measure(tiny_organism, probe, mean_color, 3, GEN, groups=["hexagon"])


def test_bias_run_with_sparsity_and_critical_weights(tiny_organism, tmp_path):
    probe = load_bias_probe("default-color")
    before = _state(tiny_organism)
    cfg = BiasRunConfig(n_images=6, components=("text_encoder",), methods=("magnitude",), sparsities=(0.3, 0.6),
                        n_boot=200, generation=GEN)
    run = run_bias(tiny_organism, probe, mean_color, cfg, tmp_path / "bias", progress=False)
    assert RunDir.open(run.path, kind="bias").finished
    dist = pd.read_csv(run.path / "distribution.csv")
    assert list(dist.columns[:8]) == ["condition", "probe", "attribute", "value", "share", "ci_low", "ci_high", "expected"]
    assert set(dist["condition"]) == {"dense", "text_encoder/magnitude@0.30", "text_encoder/magnitude@0.60"}
    sums = dist.groupby(["condition", "probe"])["share"].sum()
    np.testing.assert_allclose(sums, 1.0)
    circle = dist[(dist.condition == "dense") & (dist.probe == "circle")].set_index("value")
    assert circle.loc["red", "expected"] == pytest.approx(0.8)
    mets = pd.read_csv(run.path / "metrics.csv")
    assert set(mets["metric"]) == {"share", "mad", "kl"}
    assert (mets["ci_low"] <= mets["value"] + 1e-12).all() and (mets["value"] <= mets["ci_high"] + 1e-12).all()
    vs = pd.read_csv(run.path / "vs_sparsity.csv")
    assert {"component", "method", "level", "metric", "value", "ci_low", "ci_high"} <= set(vs.columns)
    assert sorted(vs["level"].unique()) == [0.3, 0.6]
    assert (run.path / "distribution.png").stat().st_size > 0 and (run.path / "vs_sparsity.png").exists()
    after = _state(tiny_organism)
    assert all(torch.equal(before[k], after[k]) for k in before)

    torch.manual_seed(0)
    head = LatentProbe().eval().requires_grad_(False)
    search = BiasSearchConfig(selectors=("text_encoder.layers.2.mlp",), n_images=4, explicit_seeds=1,
                              saliency_images=2, min_size=4, max_size=8, accuracy_floor=0.05,
                              trajectory=TrajectoryConfig(steps=1), generation=GEN)
    result = find_bias_critical(tiny_organism, probe, mean_color, head, search, progress=False)
    s = result.summary
    for key in ("meaning", "n_candidates", "size", "fraction_of_candidates", "effect", "control_effects", "p_value",
                "beats_all_controls", "where", "bias_before", "bias_after", "unbiased", "moved_fraction",
                "explicit_accuracy"):
        assert key in s
    assert s["size"] in (4, 8) and sum(len(v) for v in result.indices.values()) == s["size"]
    assert len(s["control_effects"]) == 20 and 0 < s["p_value"] <= 1
    assert s["unbiased"] == pytest.approx(1 / 6)
    assert s["n_candidates"] == 2 * 64 * 256
    assert sum(s["where"].values()) == s["size"]
    if not math.isnan(s["moved_fraction"]):
        assert s["moved_fraction"] == pytest.approx((s["bias_before"] - s["bias_after"]) / (s["bias_before"] - 1 / 6))
    after = _state(tiny_organism)
    assert all(torch.equal(before[k], after[k]) for k in before)

    write_bias_critical(run, probe, mean_color, result, tiny_organism, 6, GEN, 0, 200)
    assert json.loads((run.path / "critical" / "summary.json").read_text())["size"] == s["size"]
    assert (run.path / "critical" / "indices.safetensors").exists()
    assert "critical-removed" in set(pd.read_csv(run.path / "distribution.csv")["condition"])
    after = _state(tiny_organism)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_search_needs_explicit_prompts_and_a_biased_value(tiny_organism):
    from sdprobe.bias import parse_bias_probe

    probe = parse_bias_probe({"name": "p", "attribute": "color", "classifier": "oracle",
                              "groups": [{"name": "c", "prompts": ["a circle"]}]})
    with pytest.raises(ValueError, match="biased_value"):
        find_bias_critical(tiny_organism, probe, mean_color, LatentProbe(), BiasSearchConfig(), progress=False)
    with pytest.raises(ValueError, match="at least 20"):
        BiasSearchConfig(n_controls=5)


@pytest.fixture(scope="module")
def saved_pipe(tiny_organism, tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "tiny"
    tiny_organism.save_pretrained(path, safe_serialization=True)
    return path


def test_cli_bias_and_attribute(saved_pipe, tiny_organism, tmp_path):
    from sdprobe.attribution import ProbeTrainConfig, save_probe, train_probe
    from sdprobe.cli import main

    out = tmp_path / "bias"
    assert main(["bias", "--model", str(saved_pipe), "--images", "3", "--steps", "2", "--bootstrap", "50",
                 "-o", str(out)]) == 0
    assert set(pd.read_csv(out / "metrics.csv")["probe"]) == {"circle", "square", "triangle"}
    assert main(["bias", "--model", str(saved_pipe), "--probe", "nope", "-o", str(tmp_path / "b2")]) == 2

    probe, _ = train_probe(tiny_organism, ProbeTrainConfig(n_train=64, n_valid=16, steps=2, batch_size=16), progress=False)
    save_probe(probe, tmp_path / "probe.safetensors")
    attr = tmp_path / "attr"
    assert main(["attribute", "--model", str(saved_pipe), "--probe", str(tmp_path / "probe.safetensors"),
                 "--prompt", "a red circle", "--value", "red", "--target", "color", "--steps", "1",
                 "--ig-steps", "2", "--neurons", "text_encoder.layers.0.mlp", "-o", str(attr)]) == 0
    tokens = pd.read_csv(attr / "tokens.csv")
    assert tokens["token"].tolist()[1:-1] == ["a", "red", "circle"]
    assert (attr / "tokens.png").exists() and (attr / "neurons.csv").exists()
    assert RunDir.open(attr, kind="attribution").config()["target"] == "color"
    assert main(["attribute", "--model", str(saved_pipe), "--probe", str(tmp_path / "probe.safetensors"),
                 "--prompt", "a red circle", "--target", "texture", "-o", str(tmp_path / "a2")]) == 2
