"""Meaning metrics as plug-ins: prompt suites, the clip-attributes reader, fd-clip, agreement with the oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sdprobe.errors import SdprobeError
from sdprobe.metrics.registry import declared_quantities, make_metrics, meaning_metric
from sdprobe.suites import SuiteError, load_suite, read_prompts
from sdprobe.world import MEANINGS, format_prompt, render_batch, sample_specs

SUITE = """
name = "mini"
[attributes.object]
values = ["dog", "cat"]
template = "a photo of a {value}"
[attributes.color]
values = ["red", "blue", "green"]
template = "a photo of a {value} {object}"

[[prompts]]
prompt = "a photo of a red dog"
object = "dog"
color = "red"

[[prompts]]
prompt = "a photo of a cat"
object = "cat"
"""


@pytest.fixture
def suite_file(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text(SUITE)
    return path


def test_a_suite_file_labels_its_prompts_and_describes_every_value(suite_file):
    suite = load_suite(suite_file)
    assert suite.meanings == ("object", "color") and suite.prompts == ["a photo of a red dog", "a photo of a cat"]
    assert suite.stated("a photo of a red dog") == {"object": "dog", "color": "red"}
    assert suite.descriptions("a photo of a red dog", "color") == {
        "red": "a photo of a red dog", "blue": "a photo of a blue dog", "green": "a photo of a green dog"}
    assert read_prompts(suite_file) == suite.prompts
    with pytest.raises(SuiteError, match="not in the prompt suite"):
        suite.stated("a photo of a horse")
    with pytest.raises(SuiteError, match="labels no 'count'"):
        suite.check(suite.prompts, ["count"])
    with pytest.raises(SuiteError, match="none of the 1 prompts states 'color'"):
        suite.check(["a photo of a cat"], ["color"])


def test_the_organism_suite_is_its_grammar():
    suite = load_suite("builtin:tiny-shapes")
    assert suite.meanings == MEANINGS and suite.prompts == []
    assert suite.stated("a small blue square at the top left") == {
        "color": "blue", "shape": "square", "position": "top left", "size": "small"}
    assert suite.descriptions("a circle", "shape") == {"circle": "a circle", "square": "a square",
                                                       "triangle": "a triangle"}
    with pytest.raises(SuiteError, match="cannot label"):
        suite.stated("a zebra on a beach")
    with pytest.raises(SuiteError, match="unknown built-in prompt suite"):
        load_suite("builtin:nope")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('values = ["dog", "cat"]', 'values = ["dog"]'), "at least 2 distinct strings"),
    (lambda s: s.replace('template = "a photo of a {value}"\n', 'template = "a photo"\n'), "containing {value}"),
    (lambda s: s.replace('color = "red"', 'color = "mauve"'), "color = 'mauve', which is not among"),
    (lambda s: s.replace('object = "dog"\ncolor', 'color'), r"lacks the field\(s\) \['object'\]"),
    (lambda s: s + '\n[[prompts]]\nprompt = "a photo of a cat"\nobject = "cat"\n', "listed twice"),
    (lambda s: s.replace('[[prompts]]\nprompt = "a photo of a cat"\nobject = "cat"',
                         '[[prompts]]\nprompt = "a photo of a cat"\nmood = "calm"'), "states none of the attributes"),
    (lambda s: s.split("[[prompts]]")[0], "lists no"),
    (lambda s: s + "\n[[[", "not valid TOML"),
])
def test_malformed_suites_are_refused_naming_the_entry(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(SUITE))
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


def test_the_shipped_compositional_suite_loads_with_every_category():
    suite = load_suite("analyses/prompts/compositional.toml")
    stated = [set(suite.stated(p)) for p in suite.prompts]
    assert len(suite.prompts) >= 250
    for meaning in ("object", "color", "count", "position"):
        assert sum(meaning in s for s in stated) >= 16, meaning
    suite.check(suite.prompts, list(suite.meanings))  # every template field is present


# --- clip-attributes --------------------------------------------------------------------------------------------
def test_clip_attributes_columns_follow_the_prompts(tiny_clip):
    metric = meaning_metric("clip-attributes", {"clip_path": str(tiny_clip)})
    prompts = ["a red circle", "a small shape at the top left", "a large blue square at the bottom right"]
    images = np.random.default_rng(0).random((3, 32, 32, 3)).astype(np.float32)
    table = metric.score(prompts, images)
    assert metric.meanings == MEANINGS
    assert np.isnan(table.loc[0, "position"]) and pd.isna(table.loc[0, "read_position"])
    for i, prompt in enumerate(prompts):
        stated = metric.suite.stated(prompt)
        for m in MEANINGS:
            if m in stated:
                assert table.loc[i, m] == float(table.loc[i, f"read_{m}"] == stated[m])
                assert (table.loc[i, f"margin_{m}"] >= 0) == bool(table.loc[i, m])
    assert metric.quantities["color"].floor == pytest.approx(1 / 6) and metric.quantities["size"].floor == 0.5


def test_clip_attributes_declares_its_columns_without_loading_clip(suite_file):
    declared = declared_quantities(["clip-attributes"], {"clip-attributes": {"suite": str(suite_file)}})
    assert set(declared) == {"object", "color"} and declared["color"].floor == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="reads images with CLIP: give a CLIP model"):
        make_metrics(["clip-attributes"])
    with pytest.raises(ValueError, match="does not judge meanings"):
        meaning_metric("clipscore")


def test_clip_readers_refuse_folders_that_are_not_clip(tmp_path, tiny_organism):
    with pytest.raises(SdprobeError, match="not found"):
        meaning_metric("clip-attributes", {"clip_path": str(tmp_path / "missing")})
    with pytest.raises(SdprobeError, match="no config.json"):
        meaning_metric("clip-attributes", {"clip_path": str(tmp_path)})
    tiny_organism.text_encoder.save_pretrained(tmp_path / "te")  # a transformers folder of another kind
    with pytest.raises(SdprobeError, match="not a CLIP model|does not hold a CLIP model"):
        meaning_metric("clip-attributes", {"clip_path": str(tmp_path / "te")})


def test_the_shipped_clip_reads_rendered_shapes():
    """builtin:tiny-shapes-clip reads the world's renders (its card reports agreement on generated images)."""
    metric = meaning_metric("clip-attributes", {"clip_path": "builtin:tiny-shapes-clip"})
    rng = np.random.default_rng(123)
    specs = sample_specs(300, rng)
    prompts = [format_prompt(s) for s in specs]
    table = metric.score(prompts, render_batch([s.complete(rng) for s in specs], rng))
    accuracy = table[list(MEANINGS)].mean()
    assert accuracy["color"] >= 0.95 and accuracy["shape"] >= 0.9 and accuracy["size"] >= 0.9, accuracy.to_dict()
    assert accuracy["position"] >= 0.9, accuracy.to_dict()


# --- fd-clip ----------------------------------------------------------------------------------------------------
def test_fd_clip_is_zero_for_the_same_set_and_grows_with_damage():
    from sdprobe.metrics.fd_clip import FDCLIPMetric

    rng = np.random.default_rng(1)
    scenes = [s.complete(rng) for s in sample_specs(128, rng)]
    reference = render_batch(scenes, rng)
    metric = FDCLIPMetric("builtin:tiny-shapes-clip", n_boot=5)
    same = metric.score_set(reference, reference)
    assert abs(same["fd_clip"]) < 1e-6 and same["n_images"] == 128
    noise = np.random.default_rng(2).normal(size=reference.shape).astype(np.float32)
    values = [metric.score_set(np.clip(reference + a * noise, 0, 1), reference)["fd_clip"] for a in (0.05, 0.2, 0.5)]
    assert values[0] < values[1] < values[2], values
    assert declared_quantities(["fd-clip"])["fd_clip"].per == "set"


# --- agreement with the oracle ----------------------------------------------------------------------------------
def test_agreement_counts_readings_on_readable_images_and_verdicts_on_all():
    oracle = pd.DataFrame({"unreadable": [0.0, 0.0, 1.0, 0.0], "color": [1.0, 0.0, 0.0, np.nan],
                           "read_color": ["red", "blue", None, "red"]})
    metric = pd.DataFrame({"color": [1.0, 1.0, 0.0, np.nan], "read_color": ["red", "red", "green", "red"]})
    from sdprobe.metrics.agreement import compare

    row = compare(metric, oracle, ["color"]).iloc[0]
    assert (row["n"], row["n_readable"]) == (3, 2)
    assert row["reading"] == 0.5 and row["verdict"] == pytest.approx(2 / 3)
    assert row["metric_accuracy"] == pytest.approx(2 / 3) and row["oracle_accuracy"] == pytest.approx(1 / 3)


# --- bias and attribution read through CLIP ---------------------------------------------------------------------
def test_the_planted_bias_read_by_clip_matches_the_oracle():
    """The default color probe, classified by the shipped CLIP (clip-attributes) instead of the oracle, on the
    organism's color-less circles: both readers see the planted red."""
    from sdprobe.bias import load_bias_probe, make_classifier
    from sdprobe.generate import GenerationConfig, generate
    from sdprobe.models import load_pipeline

    probe = load_bias_probe("default-color")
    prompts = [p for g in probe.groups if g.name == "circle" for p in g.prompts] * 4
    images = generate(load_pipeline("builtin:tiny-shapes"), prompts, list(range(500, 500 + len(prompts))),
                      GenerationConfig())
    by_oracle = make_classifier(probe)(images)
    by_clip = make_classifier(probe, "builtin:tiny-shapes-clip", metric="clip-attributes")(images)
    same = np.mean([a == b for a, b in zip(by_oracle, by_clip) if a is not None])
    assert same >= 0.95, same
    assert by_clip.count("red") / len(by_clip) >= 0.6  # the planted 0.8, within sampling noise


def test_a_clip_head_describes_values_with_the_suite(tiny_organism):
    from sdprobe.attribution.heads import make_head

    head = make_head(tiny_organism, clip_model="builtin:tiny-shapes-clip")
    assert head.attributes["color"] == ("red", "green", "blue", "yellow", "purple", "cyan")
    assert set(head.attributes) == set(MEANINGS)
    with pytest.raises(SuiteError):
        make_head(tiny_organism, clip_model="builtin:tiny-shapes-clip", suite="builtin:nope")


def test_clip_training_runs_a_few_steps_reproducibly(tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPModel, CLIPProcessor

    from sdprobe.organism.train_clip import ClipTrainConfig, train_clip

    cfg = ClipTrainConfig(steps=3, batch_size=8, warmup=1, threads=1)
    for name in ("a", "b"):
        train_clip(tmp_path / name, cfg)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    CLIPModel.from_pretrained(tmp_path / "a")  # a stock CLIP folder, processor included
    CLIPProcessor.from_pretrained(tmp_path / "a")
    assert not (tmp_path / "a.tokenizer").exists() and not (tmp_path / "a.tmp").exists()
