"""The planted organism (``builtin:tiny-shapes-planted``), isolation's positive control: its construction holds
exactly, its planted weights fall where magnitude pruning says, its build is reproducible, and isolation recovers
the planted set end to end."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from sdprobe.architecture import select
from sdprobe.evidence import read_set_file
from sdprobe.models import BUILTINS, load_pipeline
from sdprobe.organism.planted import PlantConfig, color_codes, plant
from sdprobe.prune import MagnitudeScorer, ProgressiveMask
from sdprobe.world import COLORS

PLANTED = BUILTINS["tiny-shapes-planted"]
PROMPTS = [f"a large {c} square at the bottom left" for c in COLORS]


@pytest.fixture(scope="module")
def planted():
    pipe = load_pipeline("builtin:tiny-shapes-planted")
    return pipe, read_set_file(PLANTED / "planted.json")


def encode(pipe, prompts):
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def test_color_codes_keep_layernorm_statistics_and_differ():
    codes = np.array(color_codes(6, 0.15))
    assert np.allclose(codes.sum(1), 0, atol=1e-9)
    assert np.allclose((codes**2).sum(1), 0.15**2)
    assert len(set(np.round(codes[:, 0], 6))) == 6


def test_color_reaches_the_output_only_through_the_planted_weights(planted):
    pipe, truth = planted
    assert truth.kind == "planted" and truth.meaning == "color" and truth.size == 8
    refs = select(pipe, "text_encoder")
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs)) as mask:
        dense = encode(pipe, PROMPTS)
        assert (dense[0] - dense[1]).abs().max() > 1e-2  # the colors differ
        with mask.override(prune=truth.qualified()):
            gone = encode(pipe, PROMPTS)
        assert (gone - gone[:1]).abs().max() < 1e-5  # every color word computes the same thing
        name, idx = next(iter(truth.qualified().items()))
        for keep in range(len(idx)):  # each planted weight alone carries the color
            with mask.override(prune={name: torch.cat([idx[:keep], idx[keep + 1:]])}):
                one = encode(pipe, PROMPTS)
            assert (one[0] - one[1]).abs().max() > 1e-3
        after = encode(pipe, PROMPTS)
    assert torch.equal(after, dense)


def test_magnitude_pruning_removes_the_planted_weights_between_0350_and_0355(planted):
    pipe, truth = planted
    refs = select(pipe, "text_encoder")
    ((name, idx),) = truth.qualified().items()
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs)) as mask:
        between = mask.candidates(0.350, 0.355)
        assert set(idx.tolist()) <= set(between[name].tolist())
        assert not set(idx.tolist()) & set(mask.candidates(0.0, 0.350).get(name, torch.zeros(0)).tolist())


def test_the_build_is_reproducible_and_holds_the_construction(tmp_path):
    cfg = PlantConfig(steps=3, batch_size=8, paths=3)
    a = plant(tmp_path / "a", cfg)
    b = plant(tmp_path / "b", cfg)
    from safetensors.torch import load_file

    wa = load_file(a / "text_encoder" / "model.safetensors")
    wb = load_file(b / "text_encoder" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    truth = read_set_file(a / "planted.json")
    assert truth.size == 3 and (a / "unet").is_dir() and not (tmp_path / "a.tmp").exists()
    pipe = load_pipeline(str(a))
    refs = select(pipe, "text_encoder")
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs)) as mask:
        with mask.override(prune=truth.qualified()):
            gone = encode(pipe, PROMPTS)
    assert (gone - gone[:1]).abs().max() < 1e-5


def test_bad_build_settings():
    with pytest.raises(ValueError, match="sparsity"):
        PlantConfig(sparsity=1.5)
    with pytest.raises(ValueError, match="paths"):
        replace(PlantConfig(), paths=0)
