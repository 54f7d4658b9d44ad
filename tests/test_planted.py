"""The planted organism (``builtin:tiny-shapes-planted``), isolation's positive control: its construction holds
exactly, its planted weights fall where magnitude pruning says, and its build is reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdprobe.architecture import select
from sdprobe.evidence import read_set_file
from sdprobe.models import BUILTINS, load_pipeline
from sdprobe.organism.planted import MERGED, PlantConfig, balanced_codes, canonical, expected_accuracy, path_values, plant
from sdprobe.prune import MagnitudeScorer, ProgressiveMask
from sdprobe.world import COLORS

PLANTED = BUILTINS["tiny-shapes-planted"]
PROMPTS = [f"a large {c} square at the bottom left" for c in COLORS]
SAME = 1e-5  # float noise: the balanced codes have equal mean and variance up to rounding


@pytest.fixture(scope="module")
def planted():
    pipe = load_pipeline("builtin:tiny-shapes-planted")
    return pipe, read_set_file(PLANTED / "planted.json")


def encode(pipe, prompts=PROMPTS) -> torch.Tensor:
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def told_apart(out: torch.Tensor) -> set[frozenset[str]]:
    """The classes of colors whose prompts the encoder maps to the same output."""
    classes = []
    for i, c in enumerate(COLORS):
        for cls in classes:
            if (out[i] - out[list(COLORS).index(next(iter(cls)))]).abs().max() < SAME:
                cls.add(c)
                break
        else:
            classes.append({c})
    return {frozenset(c) for c in classes}


def test_codes_keep_layernorm_statistics_and_each_path_merges_one_pair():
    values = path_values(3)
    codes = balanced_codes(values, 0.1)
    assert np.allclose(codes.sum(1), 0, atol=1e-12) and np.allclose((codes**2).sum(1), (codes**2).sum(1)[0])
    for i, (a, b) in enumerate(MERGED):
        names = canonical(values, (i,))
        assert names[b] == a and sum(names[c] != c for c in COLORS) == 1
    assert all(v == k for k, v in canonical(values, (0, 1)).items())
    assert set(canonical(values, ()).values()) == {"red"}
    acc = expected_accuracy_of(values)
    assert acc == {"none": 1 / 6, "0": 5 / 6, "1": 5 / 6, "0+1": 1.0}


def expected_accuracy_of(values):
    from sdprobe.organism.planted import Plan

    plan = Plan(read=(0, 1), balance=(2, 3), rows=(0, 1), color_ids=tuple(range(6)),
                values=tuple(map(tuple, values[:2].tolist())), codes=())
    return expected_accuracy(plan)


def test_color_reaches_the_output_only_through_the_planted_weights(planted):
    pipe, truth = planted
    assert truth.kind == "planted" and truth.meaning == "color" and truth.size == 2
    ((name, idx),) = truth.qualified().items()
    refs = select(pipe, "text_encoder")
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs)) as mask:
        dense = encode(pipe)
        assert told_apart(dense) == {frozenset([c]) for c in COLORS}  # both paths: six colors
        with mask.override(prune=truth.qualified()):
            assert told_apart(encode(pipe)) == {frozenset(COLORS)}  # no path: one
        for i, pair in enumerate(MERGED[:2]):  # only path i: its pair merges, exactly
            with mask.override(prune={name: torch.cat([idx[:i], idx[i + 1:]])}):
                classes = told_apart(encode(pipe))
            assert frozenset(pair) in classes and len(classes) == 5
        after = encode(pipe)
    assert torch.equal(after, dense)


def test_magnitude_pruning_removes_the_planted_weights_between_0350_and_0355(planted):
    pipe, truth = planted
    refs = select(pipe, "text_encoder")
    ((name, idx),) = truth.qualified().items()
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs)) as mask:
        assert set(idx.tolist()) <= set(mask.candidates(0.350, 0.355)[name].tolist())
        before = mask.candidates(0.0, 0.350).get(name, torch.zeros(0, dtype=torch.long))
        assert not set(idx.tolist()) & set(before.tolist())


def test_the_build_is_reproducible_and_holds_the_construction(tmp_path):
    from safetensors.torch import load_file

    cfg = PlantConfig(steps=3, batch_size=8)
    a = plant(tmp_path / "a", cfg)
    b = plant(tmp_path / "b", cfg)
    wa = load_file(a / "text_encoder" / "model.safetensors")
    wb = load_file(b / "text_encoder" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    truth = read_set_file(a / "planted.json")
    assert truth.size == 2 and (a / "unet").is_dir() and not (tmp_path / "a.tmp").exists()
    pipe = load_pipeline(str(a))
    refs = select(pipe, "text_encoder")
    with ProgressiveMask(refs, MagnitudeScorer().lazy_scores(refs)) as mask:
        with mask.override(prune=truth.qualified()):
            assert told_apart(encode(pipe)) == {frozenset(COLORS)}


def test_bad_build_settings():
    with pytest.raises(ValueError, match="sparsity"):
        PlantConfig(sparsity=1.5)
    with pytest.raises(ValueError, match="paths"):
        PlantConfig(paths=4)


@pytest.mark.slow
def test_isolation_recovers_the_planted_set_end_to_end(tmp_path, planted):
    """The whole pipeline on the planted organism, smaller than analyses/planted_control.py: a sweep finds color's
    sudden collapse between 0.350 and 0.355, the search finds exactly the planted pair, and both directions beat
    every control on fresh prompts and seeds."""
    from sdprobe.evidence import DIRECTIONS, ConfirmConfig
    from sdprobe.isolate import IsolationConfig, isolate
    from sdprobe.sweep import SweepConfig, run_sweep
    from sdprobe.thresholds import run_thresholds
    from sdprobe.thresholds.table import largest

    pipe, truth = planted
    config = SweepConfig(model="builtin:tiny-shapes-planted", start=0.3, stop=0.4, step=0.05, refine=0.005, n_prompts=16)
    run = run_sweep(pipe, config, tmp_path / "run", progress=False)
    color = largest(run_thresholds(run.path)).set_index("metric").loc["color"]
    assert color["kind"] == "sudden"
    assert (color["s_hold"], color["s_fail"]) == (pytest.approx(0.35), pytest.approx(0.355))
    cs = isolate(run.path, "color", pipe, IsolationConfig(n_confirm=16, effect=0.5,
                                                          confirm=ConfirmConfig(n_controls=40, n_matched=0)),
                 progress=False)
    found = {n: sorted(v.tolist()) for n, v in cs.indices().items()}
    assert found == {n: sorted(v.tolist()) for n, v in truth.qualified().items()}  # precision and recall 1
    assert cs.verdict == "critical"
    for d in DIRECTIONS:
        r = cs.confirmation[d]
        assert r.p_value == pytest.approx(1 / 41) and r.p_adjusted == pytest.approx(2 / 41)
        assert r.ci_low > 0.5 and max(r.control_effects) < r.effect


@pytest.mark.slow
def test_a_clip_judged_isolation_finds_the_planted_set_and_the_oracle_confirms_it(tmp_path, planted):
    """The real-model workflow on a known answer: the sweep, its thresholds and the isolation see only
    clip-attributes through builtin:tiny-shapes-clip; the set they find is then judged by the oracle on prompts and
    seeds that neither the search nor CLIP's confirmation used."""
    from sdprobe.evidence import DIRECTIONS, ConfirmConfig
    from sdprobe.isolate import IsolationConfig, isolate, replicate
    from sdprobe.metrics import OracleMetric
    from sdprobe.sweep import SweepConfig, run_sweep
    from sdprobe.thresholds import run_thresholds
    from sdprobe.thresholds.table import largest

    pipe, truth = planted
    config = SweepConfig(model="builtin:tiny-shapes-planted", start=0.3, stop=0.4, step=0.05, refine=0.005, n_prompts=16,
                         metrics=["clip-attributes"],
                         metric_options={"clip-attributes": {"clip_path": "builtin:tiny-shapes-clip"}})
    run = run_sweep(pipe, config, tmp_path / "run", progress=False)
    color = largest(run_thresholds(run.path)).set_index("metric").loc["color"]
    assert color["kind"] == "sudden"
    assert (color["s_hold"], color["s_fail"]) == (pytest.approx(0.35), pytest.approx(0.355))  # as the oracle's
    controls = ConfirmConfig(n_controls=40, n_matched=0)
    cs = isolate(run.path, "color", pipe, IsolationConfig(n_confirm=16, effect=0.5, confirm=controls), progress=False)
    assert cs.summary()["verdict"] == "critical"
    found = {n: sorted(v.tolist()) for n, v in cs.indices().items()}
    assert found == {n: sorted(v.tolist()) for n, v in truth.qualified().items()}
    rep = replicate(run.path / "critical" / "color" / "set.json", pipe=pipe, n_confirm=16, confirm=controls,
                    metric=OracleMetric(), progress=False)
    assert rep.metric == "oracle" and rep.verdict == "critical"
    assert not set(rep.split.seeds) & set(cs.splits["confirmation"].seeds)
    for d in DIRECTIONS:
        assert rep.directions[d].ci_low > 0.5 and rep.directions[d].p_value == pytest.approx(1 / 41)
