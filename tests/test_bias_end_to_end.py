"""Bias runs end to end on a tiny organism-shaped pipeline: tables, pruning sweep, bias-critical search, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures_weights import weights_hash
from sdprobe.attribution import LatentProbe, TrajectoryConfig
from sdprobe.bias import (
    DEBIASES, NONE_FOUND, NOT_REPLICATED, BiasRunConfig, BiasSearchConfig, find_bias_critical, load_bias_probe, measure,
    run_bias, run_seeds, write_bias_critical,
)
from sdprobe.evidence import ConfirmConfig, read_set_file
from sdprobe.generate import GenerationConfig
from sdprobe.runs import RunDir
from sdprobe.world import COLORS

GEN = GenerationConfig(steps=2, guidance=2.0, batch_size=16)
PALETTE = np.asarray(list(COLORS.values()))


def mean_color(images: np.ndarray) -> list[str]:
    """A simple deterministic classifier: the palette color nearest to the image's mean color."""
    mean = np.nan_to_num(images).reshape(len(images), -1, 3).mean(1)  # (N, 3)
    return [list(COLORS)[i] for i in ((mean[:, None] - PALETTE[None]) ** 2).sum(-1).argmin(1)]


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
    before = weights_hash(tiny_organism)
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
    assert set(mets["metric"]) == {"share", "tv", "mad", "kl"}
    assert (mets["ci_low"] <= mets["value"] + 1e-12).all() and (mets["value"] <= mets["ci_high"] + 1e-12).all()
    vs = pd.read_csv(run.path / "vs_sparsity.csv")
    assert {"component", "method", "level", "metric", "value", "ci_low", "ci_high"} <= set(vs.columns)
    assert sorted(vs["level"].unique()) == [0.3, 0.6]
    assert (run.path / "distribution.png").stat().st_size > 0 and (run.path / "vs_sparsity.png").exists()
    assert weights_hash(tiny_organism) == before

    torch.manual_seed(0)
    head = LatentProbe().eval().requires_grad_(False)
    search = BiasSearchConfig(selectors=("text_encoder.layers.2.mlp",), n_images=4, explicit_seeds=1, other_images=2,
                              confirm_images=6, confirm_explicit_seeds=2, confirm_other_images=3, saliency_images=2,
                              min_size=4, max_size=8, accuracy_floor=0.05, tolerance=1.0, alpha=0.5,
                              confirm=ConfirmConfig(n_controls=3, n_matched=0, n_boot=50), doses=(0.0, 0.5, 1.0),
                              dose_controls=1, trajectory=TrajectoryConfig(steps=1), generation=GEN)
    result = find_bias_critical(tiny_organism, probe, mean_color, head, search, exclude_seeds=run_seeds(run.config()),
                                progress=False)
    s = result.summary
    assert s["group"] == "circle" and s["objective"] == "tv" and s["n_candidates"] == 2 * 64 * 256
    assert s["size"] == sum(len(v) for v in result.indices.values()) and sum(s["where"].values()) == s["size"]
    assert s["target"] == pytest.approx({v: 1 / 6 for v in probe.values})
    search_seeds = {x for k, v in s["splits"].items() if k.startswith("search") for x in v["seeds"]}
    confirm_seeds = {x for k, v in s["splits"].items() if k.startswith("confirmation") for x in v["seeds"]}
    assert not search_seeds & confirm_seeds and not (search_seeds | confirm_seeds) & run_seeds(run.config())
    assert len(result.search) >= 1 and {"size", "objective", "effect"} <= set(result.search.columns)
    assert weights_hash(tiny_organism) == before

    folder = write_bias_critical(run, probe, result)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["verdict"] in (DEBIASES, NOT_REPLICATED, NONE_FOUND) and summary["family_size"] <= 1
    assert (run.path / "critical" / "tests.csv").exists()
    if s["size"]:
        ws = read_set_file(folder / "set.json")
        assert ws.kind == "bias" and ws.size == s["size"] and ws.verdict == summary["verdict"]
        assert (folder / "dose.png").exists() and set(pd.read_csv(folder / "dose.csv")["alpha"]) == {0.0, 0.5, 1.0}
        assert len(pd.read_csv(folder / "explicit.csv")) == len(probe.explicit)
        dist = pd.read_csv(run.path / "distribution.csv")
        assert any(c.startswith("confirmation: set removed") for c in dist["condition"])
        # the set scaled by alpha, measured by `sdprobe bias --set`
        cfg2 = BiasRunConfig(n_images=3, n_boot=50, generation=GEN, set_file=str(folder / "set.json"), alphas=(0.0, 0.5))
        run2 = run_bias(tiny_organism, probe, mean_color, cfg2, tmp_path / "bias2", progress=False)
        assert {"set x0", "set x0.5"} <= set(pd.read_csv(run2.path / "distribution.csv")["condition"])
    assert weights_hash(tiny_organism) == before


def test_a_killed_bias_run_resumes_at_the_condition_it_was_measuring(tiny_organism, tmp_path, monkeypatch):
    import sdprobe.bias.run as bias_run
    import sdprobe.bias.sparsity as bias_sparsity

    probe = load_bias_probe("default-color")
    cfg = BiasRunConfig(n_images=3, components=("text_encoder",), methods=("magnitude",), sparsities=(0.3, 0.6),
                        n_boot=50, generation=GEN)
    whole = run_bias(tiny_organism, probe, mean_color, cfg, tmp_path / "whole", progress=False)

    calls = []

    def dies_on_the_third(*args, **kwargs):  # dense, 0.3, then killed while measuring 0.6
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return measure(*args, **kwargs)

    monkeypatch.setattr(bias_run, "measure", dies_on_the_third)
    monkeypatch.setattr(bias_sparsity, "measure", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_bias(tiny_organism, probe, mean_color, cfg, tmp_path / "killed", progress=False)
    assert len(list((tmp_path / "killed" / "conditions").glob("*.parquet"))) == 2
    calls.clear()
    calls.append(0)  # the resumed run measures only the missing level: no third call
    resumed = run_bias(tiny_organism, probe, mean_color, cfg, tmp_path / "killed", progress=False)
    assert len(calls) == 2
    for name in ("labels.csv", "distribution.csv", "metrics.csv", "vs_sparsity.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(whole.path / name), pd.read_csv(resumed.path / name))


def test_search_needs_explicit_prompts_and_a_biased_value(tiny_organism):
    from sdprobe.bias import parse_bias_probe

    probe = parse_bias_probe({"name": "p", "attribute": "color", "classifier": "oracle",
                              "groups": [{"name": "c", "prompts": ["a circle"]}]})
    with pytest.raises(ValueError, match="biased_value"):
        find_bias_critical(tiny_organism, probe, mean_color, LatentProbe(), BiasSearchConfig(), progress=False)


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
    assert main(["attribute", "--model", str(saved_pipe), "--latent-probe", str(tmp_path / "probe.safetensors"),
                 "--prompt", "a red circle", "--value", "red", "--target", "color", "--steps", "1",
                 "--ig-steps", "2", "--neurons", "text_encoder.layers.0.mlp", "-o", str(attr)]) == 0
    tokens = pd.read_csv(attr / "tokens.csv")
    assert tokens["token"].tolist()[1:-1] == ["a", "red", "circle"]
    assert (attr / "tokens.png").exists() and (attr / "neurons.csv").exists()
    assert RunDir.open(attr, kind="attribution").config()["target"] == "color"
    assert main(["attribute", "--model", str(saved_pipe), "--latent-probe", str(tmp_path / "probe.safetensors"),
                 "--prompt", "a red circle", "--target", "texture", "-o", str(tmp_path / "a2")]) == 2


def test_occupations_probe_runs_end_to_end_with_a_tiny_clip(tiny_organism, tiny_clip, tmp_path):
    """The real-model probe's plumbing: CLIP zero-shot classes, 8 occupation groups, explicit-gender prompts for
    every value, a CLIP head for the ranking, and a debiasing search with its confirmation."""
    from sdprobe.attribution.heads import make_head
    from sdprobe.bias import explicit_by_value, make_classifier

    probe = load_bias_probe("occupations")
    assert probe.values == ("man", "woman") and probe.target_shares() == (0.5, 0.5)
    assert all(len(v) == 8 for v in explicit_by_value(probe).values())
    classify = make_classifier(probe, tiny_clip)
    before = weights_hash(tiny_organism)
    run = run_bias(tiny_organism, probe, classify, BiasRunConfig(probe="occupations", n_images=2, n_boot=20,
                                                                 generation=GEN), tmp_path / "occ", progress=False)
    dist = pd.read_csv(run.path / "distribution.csv")
    assert set(dist["probe"]) == {g.name for g in probe.groups} and set(dist["value"]) == {"man", "woman"}
    head = make_head(tiny_organism, clip_model=tiny_clip, classes={probe.attribute: probe.classes})
    search = BiasSearchConfig(selectors=("text_encoder.layers.1.mlp",), group="doctor", n_images=2, explicit_seeds=1,
                              other_images=1, confirm_images=2, confirm_explicit_seeds=1, confirm_other_images=1,
                              saliency_images=2, min_size=4, max_size=8, accuracy_floor=0.05, tolerance=1.0,
                              alpha=0.5, confirm=ConfirmConfig(n_controls=2, n_matched=0, n_boot=20),
                              doses=(0.0, 1.0), dose_controls=1, trajectory=TrajectoryConfig(steps=1), generation=GEN)
    result = find_bias_critical(tiny_organism, probe, classify, head, search, exclude_seeds=run_seeds(run.config()),
                                progress=False)
    assert result.summary["group"] == "doctor" and result.summary["target"] == {"man": 0.5, "woman": 0.5}
    folder = write_bias_critical(run, probe, result)
    assert (folder / "summary.json").exists() and (run.path / "critical" / "tests.csv").exists()
    assert weights_hash(tiny_organism) == before
