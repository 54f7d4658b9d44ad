"""Debiasing search and confirmation on known-answer worlds (sdprobe.bias.synthetic), and their pure pieces."""

from __future__ import annotations

import numpy as np
import pytest

from sdprobe.bias import (
    DEBIASES, NONE_FOUND, NOT_REPLICATED, BiasSearchConfig, confirm_debias, debias_splits, dose_response,
    explicit_checks, load_bias_probe, target_group, verdict, wilson,
)
from sdprobe.bias.critical import search_prefixes
from sdprobe.bias.synthetic import PlantedBias
from sdprobe.evidence import ConfirmConfig

N = 4096
PLANTED = np.arange(100, 116)  # 16 weights carry the bias
DENSE = (0.87, 0.026, 0.026, 0.026, 0.026, 0.026)  # red circles, as the organism draws them


@pytest.fixture(scope="module")
def setup():
    probe = load_bias_probe("default-color")
    group = target_group(probe, None)
    cfg = BiasSearchConfig(min_size=16, max_size=256, confirm=ConfirmConfig(n_controls=200, n_matched=0))
    search, confirm = debias_splits(probe, group, cfg)
    return probe, group, cfg, search, confirm


def planted_first(world: PlantedBias) -> np.ndarray:
    """A ranking that puts the planted weights first (what a good saliency ranking does)."""
    rest = np.setdiff1d(np.arange(world.n), world.planted if world.planted is not None else [])
    return np.r_[world.planted if world.planted is not None else [], rest].astype(np.int64)


def world(probe, mode: str = "debias", planted=PLANTED) -> PlantedBias:
    return PlantedBias(N, planted, probe.values, DENSE, mode=mode)


def test_splits_share_no_seed_and_alternate_the_target_prompts(setup):
    probe, group, cfg, search, confirm = setup
    assert set(search.target.prompts) == set(group.prompts[0::2])
    assert set(confirm.target.prompts) == set(group.prompts[1::2])
    seeds = [set(s.seeds) for sp in (search, confirm) for s in (sp.target, sp.explicit, sp.others)]
    assert sum(len(s) for s in seeds) == len(set().union(*seeds))  # every seed used once
    assert len(confirm.target) == cfg.confirm_images and len(confirm.explicit) == 16 * len(probe.explicit)
    assert set(search.group) == {"square", "triangle"}


def test_a_planted_debiasing_set_is_found_and_confirmed(setup):
    probe, group, cfg, search, confirm = setup
    w = world(probe)
    ev, cands = w.evaluator(), w.candidates()
    table, size = search_prefixes(ev, search, planted_first(w), [16, 32, 64], probe, cfg, progress=False)
    assert size == 16 and table.loc[0, "feasible"]
    ids = np.sort(planted_first(w)[:size])
    ev_c = confirm_debias(ev, cands, ids, confirm, probe, group, cfg, progress=False)
    s = ev_c.summary
    assert s["effect"] > 0.5 and s["ci_low"] > 0.3  # red 0.87 -> uniform: TV 0.70 -> ~0
    assert s["p_value"] == pytest.approx(1 / 201) and s["n_controls"] == 200  # beats every control
    assert s["explicit_all_hold"] and all(v["shift"] <= cfg.tolerance for v in s["other_shifts"].values())
    assert verdict(s, s["p_value"], cfg.alpha) == (DEBIASES, [])
    shares = ev_c.distribution.query("role == 'target'").pivot(index="value", columns="condition", values="share")
    assert shares.loc["red", "dense"] > 0.7 and shares["set removed"].max() < 0.4  # whole distributions
    np.testing.assert_allclose(ev_c.distribution.groupby(["group", "condition"])["share"].sum(), 1.0)  # per value
    assert set(ev_c.distribution["group"]) == {"circle", "square", "triangle"}
    assert {"tv", "tv_ci_low", "kl", "mad", "majority_share", "share"} <= set(ev_c.distribution.columns)
    assert set(ev_c.explicit["prompt"]) == set(probe.explicit)


def test_a_set_that_swaps_red_for_cyan_scores_worse_than_doing_nothing(setup):
    probe, group, cfg, search, confirm = setup
    w = world(probe, "swap")
    ev, cands = w.evaluator(), w.candidates()
    table, size = search_prefixes(ev, search, planted_first(w), [16, 32], probe, cfg, progress=False)
    assert size is None and (table["effect"] < 0).all()  # cyan 1.0 is further from uniform than red 0.87
    s = confirm_debias(ev, cands, PLANTED, confirm, probe, group, cfg, progress=False).summary
    claim, reasons = verdict(s, s["p_value"], cfg.alpha)
    assert s["effect"] < 0 and claim == NOT_REPLICATED and any("reaches 0" in r for r in reasons)


def test_a_set_that_erases_the_concept_fails_its_explicit_prompts(setup):
    probe, group, cfg, search, confirm = setup
    w = world(probe, "erase")
    ev, cands = w.evaluator(), w.candidates()
    table, size = search_prefixes(ev, search, planted_first(w), [16, 32], probe, cfg, progress=False)
    assert size is None and table.loc[0, "effect"] > 0 and table.loc[0, "explicit_failing"] >= 1
    evidence = confirm_debias(ev, cands, PLANTED, confirm, probe, group, cfg, progress=False)
    claim, reasons = verdict(evidence.summary, evidence.summary["p_value"], cfg.alpha)
    assert claim == NOT_REPLICATED and any("a red circle" in r for r in reasons)
    red = evidence.explicit.set_index("prompt").loc["a red circle"]
    assert not red["passes"] and red["accuracy"] < 0.2 and red["dense_accuracy"] == 1.0


def test_no_planted_set_means_no_claim(setup):
    probe, group, cfg, search, confirm = setup
    w = world(probe, planted=None)
    ev, cands = w.evaluator(), w.candidates()
    _, size = search_prefixes(ev, search, np.arange(N), [16, 32], probe, cfg, progress=False)
    assert size is None
    s = confirm_debias(ev, cands, np.zeros(0, dtype=np.int64), confirm, probe, group, cfg, progress=False).summary
    assert verdict(s, float("nan"), cfg.alpha)[0] == NONE_FOUND and s["verdict"] == NONE_FOUND


def test_holm_can_withdraw_a_claim(setup):
    probe, group, cfg, search, confirm = setup
    w = world(probe)
    s = confirm_debias(w.evaluator(), w.candidates(), PLANTED, confirm, probe, group, cfg, progress=False).summary
    claim, reasons = verdict(s, 3 * s["p_value"], cfg.alpha)  # a family of three tests: 3/201 > 0.01
    assert claim == NOT_REPLICATED and "adjusted p" in reasons[0]


def test_dose_response_of_the_set_and_its_controls(setup):
    probe, group, cfg, search, confirm = setup
    w = world(probe)
    table = dose_response(w.evaluator(), w.candidates(), PLANTED, confirm, probe, cfg)
    curve = table[table["set"] == "set"].set_index("alpha")["objective"]
    assert list(curve.index) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert curve.is_monotonic_increasing and curve[0.0] < 0.2 < 0.6 < curve[1.0]  # scaling down debiases
    controls = table[table["set"] != "set"]
    assert controls["set"].nunique() == cfg.dose_controls
    assert (controls.groupby("set")["objective"].agg(lambda x: x.max() - x.min()) < 0.05).all()  # they do nothing


def test_the_dose_response_reuses_the_confirmation_controls_images(setup):
    """The dose-response's controls are the confirmation's first ones, so a caching evaluator (DebiasEvaluator)
    makes their removal images once."""
    probe, group, cfg, search, confirm = setup
    w = world(probe)
    ev, cands = w.evaluator(), w.candidates()
    asked = []
    labels = ev.labels

    def recording(split, part, ids, keep=0.0):
        asked.append((split.name, part, tuple(np.sort(np.asarray(ids))), float(keep)))
        return labels(split, part, ids, keep)

    ev.labels = recording
    s = confirm_debias(ev, cands, PLANTED, confirm, probe, group, cfg, progress=False).summary
    assert s["n_controls"] >= cfg.dose_controls
    confirmed = set(asked)
    asked.clear()
    dose_response(ev, cands, PLANTED, confirm, probe, cfg)
    removals = [a for a in asked if a[3] == 0.0 and a[2]]
    assert len(removals) == 1 + cfg.dose_controls  # the set and each control at alpha 0
    assert all(a in confirmed for a in removals)  # all asked for by the confirmation already


def test_explicit_checks_and_wilson():
    lo, hi = wilson(16, 16)
    assert hi == pytest.approx(1.0) and 0.8 < lo < 0.9
    assert wilson(0, 0)[0] != wilson(0, 0)[0]  # NaN without images
    prompts = ["a red circle"] * 16 + ["a cyan circle"] * 16
    truth = ["red"] * 16 + ["cyan"] * 16
    dense = truth
    after = ["red"] * 13 + ["blue"] * 3 + ["cyan"] * 10 + ["blue"] * 6
    checks = {c.prompt: c for c in explicit_checks(prompts, truth, dense, after, 0.9)}
    assert checks["a red circle"].passes  # 13/16: not shown to be below 0.9
    assert not checks["a cyan circle"].passes  # 10/16: shown to be below
    weak_dense = ["red"] * 12 + ["blue"] * 4 + truth[16:]
    checks = {c.prompt: c for c in explicit_checks(prompts, truth, weak_dense, ["red"] * 11 + ["blue"] * 5 + truth[16:], 0.9)}
    assert checks["a red circle"].required == 0.75 and checks["a red circle"].passes  # judged against dense


def test_config_refuses_too_few_controls_for_the_claim():
    with pytest.raises(ValueError, match="at least 99 controls"):
        BiasSearchConfig(confirm=ConfirmConfig(n_controls=50, n_matched=0))
    with pytest.raises(ValueError, match="unknown objective"):
        BiasSearchConfig(objective="l1")
    with pytest.raises(ValueError, match="doses must lie"):
        BiasSearchConfig(doses=(1.5,))


def test_written_set_file_family_and_bad_set_files(setup, tmp_path, tiny_organism):
    """A confirmed set is written as a bias set file with its evidence; Holm runs over the run's groups; a set
    whose tensors the model lacks is refused before anything is written."""
    import pandas as pd

    from sdprobe.bias import BiasRunConfig, run_bias, search_and_confirm, write_bias_critical
    from sdprobe.evidence import SetFileError, read_set_file
    from sdprobe.generate import GenerationConfig
    from sdprobe.runs import RunDir

    probe, group, cfg, search, confirm = setup
    w = world(probe)
    result = search_and_confirm(w.evaluator(), w.candidates(), planted_first(w), (search, confirm), probe, group, cfg,
                                progress=False)
    run = RunDir.open_or_create(tmp_path / "bias", {"model": "synthetic", "seed": 0, "n_images": 8}, kind="bias")
    pd.DataFrame(columns=["condition", "probe", "attribute", "value", "share", "ci_low", "ci_high", "expected", "n",
                          "unreadable"]).to_csv(run.path / "distribution.csv", index=False)
    folder = write_bias_critical(run, probe, result)
    ws = read_set_file(folder / "set.json")
    assert ws.kind == "bias" and ws.size == 16 and ws.verdict == DEBIASES
    assert ws.evidence["confirmation"]["p_value"] == pytest.approx(1 / 201) and ws.evidence["family_size"] == 1
    assert set(ws.splits) >= {"search/target", "confirmation/target", "confirmation/explicit"}
    tests = pd.read_csv(run.path / "critical" / "tests.csv")
    assert tests["p_adjusted"].tolist() == pytest.approx([1 / 201])
    assert (folder / "dose.png").exists() and (folder / "explicit.csv").exists()

    # a second group's test joins the family: Holm doubles the smallest p, 2/201 still < 0.01
    other = target_group(probe, "square")
    result2 = search_and_confirm(w.evaluator(), w.candidates(), planted_first(w), debias_splits(probe, other, cfg),
                                 probe, other, cfg, progress=False)
    write_bias_critical(run, probe, result2)
    tests = pd.read_csv(run.path / "critical" / "tests.csv").set_index("group")
    assert tests.loc["circle", "p_adjusted"] == pytest.approx(2 / 201) and tests.loc["circle", "verdict"] == DEBIASES

    bad = BiasRunConfig(n_images=2, generation=GenerationConfig(steps=1), set_file=str(folder / "set.json"),
                        alphas=(0.0,))
    with pytest.raises(SetFileError, match="not in .*pruned scope"):
        run_bias(tiny_organism, probe, lambda images: ["red"] * len(images), bad, tmp_path / "bias2", progress=False)
    assert not (tmp_path / "bias2").exists()
    with pytest.raises(ValueError, match=r"alpha \(the set's weights x alpha\) must be a number in \[0, 1\]"):
        BiasRunConfig(set_file="x.json", alphas=(2.0,))
