"""``sdprobe isolate`` on run directories: clear errors, and the masks/candidates it builds on a tiny pipeline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures_weights import weights_hash
from sdprobe.cli import main
from sdprobe.errors import RunError
from sdprobe.generate import GenerationConfig
from sdprobe.evidence import ConfirmConfig, Split
from sdprobe.isolate import IsolationConfig, NothingToIsolate, isolate, isolate_all, resolve_window, sudden_meanings
from sdprobe.isolate.evaluator import MaskEvaluator
from sdprobe.isolate.run import DesignError
from sdprobe.isolate.session import candidates_between, open_session, run_split
from sdprobe.metrics import OracleMetric
from sdprobe.isolate.store import split_by_component
from sdprobe.runs import THRESHOLDS, RunDir
from sdprobe.sweep.config import ComponentPlan, SweepConfig

S_LO, S_HI = 0.30, 0.35
PROMPTS = ["a large red circle at the top left", "a small blue square at the bottom right"]
POOL = ["a large green triangle at the top right", "a small cyan circle at the bottom left",
        "a large yellow square at the top left", "a small purple triangle at the top right"]
SMALL = IsolationConfig(n_confirm=4, effect=0.9, power=0.5, confirm=ConfirmConfig(n_controls=200, n_matched=2))


def make_run(path, thresholds: bool = True, method: str = "magnitude") -> RunDir:
    config = SweepConfig(components={"text_encoder": ComponentPlan(["text_encoder.mlp"])}, method=method,
                         stop=0.5, prompts=PROMPTS, generation=GenerationConfig(steps=2, guidance=1.0, batch_size=2))
    run = RunDir.open_or_create(path, {**config.to_dict(), "higher_is_better": {"color": True}})
    for level in (0.0, S_LO, S_HI):
        run.write_level(level, pd.DataFrame({"level": level, "prompt": PROMPTS, "seed": [11, 22], "index": [0, 1],
                                             "color": [1.0, 0.0]}))
    run.finish()
    if thresholds:
        table = pd.DataFrame({"metric": ["color", "shape", "position", "size"],
                              "kind": ["sudden", "gradual", "none", "sudden"], "collapsed": [True, False, False, True],
                              "threshold": [0.33, 0.4, np.nan, 0.33], "ci_low": np.nan, "ci_high": np.nan,
                              "s_lo": [S_LO, 0.35, 0.5, S_LO], "s_hi": [S_HI, 0.4, np.nan, S_HI], "drop": 0.8,
                              "s_hold": [S_LO, 0.3, np.nan, S_LO], "s_fail": [S_HI, 0.45, np.nan, S_HI]})
        table.to_csv(run.path / THRESHOLDS, index=False)
    return run


def test_errors_name_what_to_do(tmp_path, capsys):
    run = make_run(tmp_path / "bare", thresholds=False)
    with pytest.raises(RunError, match=r"no thresholds.csv yet; run `sdprobe thresholds .*bare` first"):
        isolate(run.path, "color")
    assert main(["isolate", str(run.path), "--meaning", "all"]) == 2
    assert "sdprobe thresholds" in capsys.readouterr().err

    run = make_run(tmp_path / "run")
    assert sudden_meanings(run) == ["color", "size"]
    assert (resolve_window(run, "color")["start"], resolve_window(run, "color")["stop"]) == (S_LO, S_HI)
    assert (resolve_window(run, "shape")["start"], resolve_window(run, "shape")["stop"]) == (0.3, 0.45)
    assert resolve_window(run, "shape", "bracket")["stop"] == 0.4
    with pytest.raises(RunError, match="position does not collapse .*kind: none.*: color, shape, size"):
        isolate(run.path, "position", config=SMALL, confirm_pool=POOL)
    with pytest.raises(ValueError, match="unknown meaning 'hue'; valid: color, shape, position, size, all"):
        isolate(run.path, "hue")
    assert main(["isolate", str(run.path), "--meaning", "hue"]) == 2
    assert "unknown meaning 'hue'" in capsys.readouterr().err
    assert main(["isolate", str(run.path), "--meaning", "position"]) == 2
    assert "position does not collapse" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["isolate", str(run.path), "--meaning", "color", "--levels", "tensor,block"])
    assert "unknown level(s) ['block']; valid: tensor, row, column, weight" in capsys.readouterr().err
    # sizes that cannot give the evidence asked for are refused before anything is written
    assert main(["isolate", str(run.path), "--meaning", "color", "--confirm", "16"]) == 2
    assert "use --confirm" in capsys.readouterr().err
    with pytest.raises(DesignError, match="use --controls 39 or more"):
        isolate(run.path, "color", config=IsolationConfig(confirm=ConfirmConfig(n_controls=20)), confirm_pool=POOL)
    with pytest.raises(DesignError, match="use --confirm"):
        isolate(run.path, "color", config=IsolationConfig(n_confirm=16), confirm_pool=POOL)
    assert not (run.path / "critical").exists()
    for bad in (["--window", "0.5,0.2"], ["--alpha", "nan"], ["--effect", "2"]):
        with pytest.raises(SystemExit):
            main(["isolate", str(run.path), "--meaning", "color", *bad])
    assert main(["isolate", "--replicate", str(tmp_path / "missing.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_search_split_is_the_runs_prompts_in_image_order(tmp_path):
    run = make_run(tmp_path / "run")
    assert run_split(run) == Split("search", tuple(PROMPTS), (11, 22))
    assert run_split(run, 1) == Split("search", tuple(PROMPTS[:1]), (11,))


def test_candidates_span_exactly_the_bracket(tmp_path, tiny_organism):
    """mask(s_lo) plus every candidate is mask(s_hi), bit for bit; the evaluator leaves the s_lo state behind."""
    pipe = tiny_organism
    run = make_run(tmp_path / "run")
    dense = weights_hash(pipe)
    with open_session(run.path, pipe=pipe) as session:
        masks = session.masks
        cands, base = candidates_between(session, S_LO, S_HI)
        assert base == {"text_encoder": S_LO} and cands.n > 0
        assert set(cands.names) == {r.qualified_name for r in masks["text_encoder"].refs}
        assert all(cands.info[n]["role"].startswith("mlp.") for n in cands.names)
        # the values recorded are the dense ones, and the prior is the run's (magnitude) score
        dense_w = {n: session.refs[n].weight.detach().clone() for n in cands.names}
        at_lo = weights_hash(pipe)
        with masks["text_encoder"].override(prune=split_by_component(cands.to_dict(cands.all_ids()))["text_encoder"]):
            via_override = weights_hash(pipe)
        masks["text_encoder"].set_sparsity(S_HI)
        assert weights_hash(pipe) == via_override
        masks["text_encoder"].set_sparsity(S_LO)
        assert weights_hash(pipe) == at_lo
        np.testing.assert_array_equal(cands.prior, np.abs(cands.values))
        name = cands.names[0]
        np.testing.assert_array_equal(cands.values[: len(cands.indices[0])],
                                      dense_w[name].flatten()[cands.indices[0]].double().numpy())
        evaluate = MaskEvaluator(pipe, masks, base, cands, Split("s", tuple(PROMPTS), (11, 22)),
                                 session.config.generation, OracleMetric(), ["color", "shape", "position", "size"])
        acc = evaluate(np.arange(min(cands.n, 50)))
        assert set(acc) == {"color", "shape", "position", "size"}
        assert all(v.shape == (2,) and set(v.tolist()) <= {0.0, 1.0} for v in acc.values())
        assert weights_hash(pipe) == at_lo
    assert weights_hash(pipe) == dense


def test_score_prior_is_the_runs_pruning_score(tmp_path, tiny_organism):
    """A random-method run searches by |W| unless asked for its (random) scores, which are then the sweep's own."""
    from sdprobe.prune import make_scorer

    run = make_run(tmp_path / "run", method="random")
    with open_session(run.path, pipe=tiny_organism) as session:
        assert session.prior == "magnitude"
    with open_session(run.path, pipe=tiny_organism, prior="score") as session:
        cands, _ = candidates_between(session, S_LO, S_HI)
        refs = list(session.masks["text_encoder"].refs)
        expected = make_scorer("random", seed=session.config.seed).scores(refs)
        want = np.concatenate([expected[n].flatten()[i].double().numpy() for n, i in zip(cands.names, cands.indices)])
        np.testing.assert_array_equal(cands.prior, want)
        assert not np.array_equal(cands.prior, np.abs(cands.values))
        # candidates_between leaves the masks at s_lo
        assert session.masks["text_encoder"].sparsity == S_LO


def test_untrained_pipeline_has_nothing_to_isolate(tmp_path, tiny_organism):
    """An untrained organism reads nothing, before or after: the measured accuracies do not cross any bar."""
    run = make_run(tmp_path / "run")
    dense = weights_hash(tiny_organism)
    with pytest.raises(NothingToIsolate, match="must lie in between"):
        isolate(run.path, "color", pipe=tiny_organism, config=SMALL, confirm_pool=POOL, progress=False)
    assert weights_hash(tiny_organism) == dense
    log = run.path / "critical" / "color" / "search.jsonl"
    assert len(log.read_text().splitlines()) == 1 + 2  # header, nothing removed, everything removed
    assert not (run.path / "critical" / "color" / "summary.json").exists()
    with pytest.raises(ValueError, match="unknown prior 'grad'; valid: score, magnitude"):
        IsolationConfig(prior="grad")
    with pytest.raises(DesignError, match="--confirm-prompts"):
        isolate(run.path, "color", pipe=tiny_organism, config=SMALL, progress=False)


def test_isolate_all_reports_skipped_meanings(tmp_path, tiny_organism):
    run = make_run(tmp_path / "run")
    report = isolate_all(run.path, pipe=tiny_organism, config=SMALL, confirm_pool=POOL, progress=False)
    assert report.sets == {} and sorted(report.skipped) == ["color", "size"]
    assert all("must lie in between" in why for why in report.skipped.values())
    root = run.path / "critical"
    assert json.loads((root / "skipped.json").read_text()) == report.skipped
    assert list(pd.read_csv(root / "overlaps.csv").columns) == ["meaning_a", "meaning_b", "size_a", "size_b",
                                                               "intersection", "jaccard", "windows_overlap"]
    assert list(pd.read_csv(root / "where.csv").columns) == ["meaning", "component", "role", "count"]


def test_replicate_retests_a_saved_set_on_new_prompts_and_refuses_other_models(tmp_path, tiny_organism):
    from sdprobe.evidence import SetFileError, WeightSet, read_set_file, write_set_file
    from sdprobe.isolate import replicate

    run = make_run(tmp_path / "run")
    dense = weights_hash(tiny_organism)
    with open_session(run.path, pipe=tiny_organism) as session:
        cands, _ = candidates_between(session, S_LO, S_HI)
        some = cands.to_dict(np.arange(3))
        shapes = {n: tuple(session.refs[n].weight.shape) for n in some}
    search = run_split(run)
    ws = WeightSet(kind="critical", model="builtin:tiny-shapes", meaning="color", method="magnitude",
                   sweep=run.config(), window={"kind": "given", "start": S_LO, "stop": S_HI}, weights=some,
                   shapes=shapes, splits={"search": search})
    path = write_set_file(tmp_path / "set.json", ws)
    result = replicate(path, pipe=tiny_organism, n_confirm=3, pool=POOL, confirm=ConfirmConfig(n_controls=5, n_matched=2),
                       progress=False)
    assert weights_hash(tiny_organism) == dense
    assert set(result.directions) == {"necessity", "sufficiency"} and len(result.split) == 3
    assert not set(result.split.prompts) & set(PROMPTS) and not set(result.split.seeds) & {11, 22}
    assert result.verdict in ("critical", "no replicable critical set")
    assert all(r.n_controls >= 1 and not np.isnan(r.p_adjusted) for r in result.directions.values())
    card = result._repr_html_()
    assert result.verdict in card and "3 new prompts and seeds" in card and "necessity" in card
    # a set naming tensors the model does not have is refused, naming them
    other = read_set_file(path)
    other.weights = {"text_encoder.nowhere.weight": torch.tensor([0])}
    other.shapes = {"text_encoder.nowhere.weight": (4, 4)}
    write_set_file(tmp_path / "other.json", other)
    with pytest.raises(SetFileError, match="nowhere.weight.*not in"):
        replicate(tmp_path / "other.json", pipe=tiny_organism, n_confirm=3, pool=POOL, progress=False)
    assert weights_hash(tiny_organism) == dense


@pytest.mark.slow
def test_organism_negative_control_a_window_without_collapse_yields_no_set(tmp_path, capsys):
    """On the trained organism, the text encoder at 0.10..0.15 keeps every meaning: isolation must say that
    nothing replicates (here: nothing is even found on the search split), not invent a set."""
    from sdprobe.models import load_pipeline
    from sdprobe.world import format_prompt, sample_specs

    prompts = [format_prompt(s) for s in sample_specs(8, np.random.default_rng(0))]
    config = SweepConfig(components={"text_encoder": ComponentPlan(["text_encoder"])}, stop=0.5, prompts=prompts,
                         generation=GenerationConfig(steps=10, guidance=2.0, batch_size=8))
    run = RunDir.open_or_create(tmp_path / "run", {**config.to_dict(), "higher_is_better": {"color": True}})
    run.write_level(0.0, pd.DataFrame({"level": 0.0, "prompt": prompts, "seed": list(range(8)), "index": range(8),
                                       "color": 1.0}))
    run.finish()
    pd.DataFrame({"metric": ["color"], "kind": ["none"], "threshold": [np.nan], "s_lo": [0.5], "s_hi": [np.nan],
                  "s_hold": [np.nan], "s_fail": [np.nan]}).to_csv(run.path / THRESHOLDS, index=False)
    pipe = load_pipeline("builtin:tiny-shapes", device="cpu")
    pool = [format_prompt(s) for s in sample_specs(64, np.random.default_rng(1))]
    cfg = IsolationConfig(window=(0.10, 0.15), n_confirm=16, effect=0.5, confirm=ConfirmConfig(n_matched=5))
    with pytest.raises(NothingToIsolate, match="on the search split"):
        isolate(run.path, "color", pipe=pipe, config=cfg, confirm_pool=pool, progress=False)
    assert not (run.path / "critical" / "color" / "summary.json").exists()


def test_a_set_is_judged_by_its_own_metric_or_by_another(tmp_path, tiny_organism, tiny_clip):
    """Meaning metrics are plug-ins: a set found through clip-attributes is re-judged by it by default (with the
    CLIP and suite its sweep recorded), and by the oracle when asked."""
    from sdprobe.evidence import WeightSet, write_set_file
    from sdprobe.isolate import replicate
    from sdprobe.isolate.session import default_metric
    from sdprobe.metrics.clip_attributes import ClipAttributesMetric

    run = make_run(tmp_path / "run")
    with open_session(run.path, pipe=tiny_organism) as session:
        cands, _ = candidates_between(session, S_LO, S_HI)
        some = cands.to_dict(np.arange(2))
        shapes = {n: tuple(session.refs[n].weight.shape) for n in some}
    sweep = {**run.config(), "metrics": ["clip-attributes"],
             "metric_options": {"clip-attributes": {"clip_path": str(tiny_clip)}}}
    ws = WeightSet(kind="critical", model="builtin:tiny-shapes", meaning="color", method="magnitude", sweep=sweep,
                   window={"kind": "given", "start": S_LO, "stop": S_HI}, weights=some, shapes=shapes,
                   splits={"search": run_split(run)}, metric="clip-attributes")
    path = write_set_file(tmp_path / "set.json", ws)
    small = dict(pipe=tiny_organism, n_confirm=3, pool=POOL, confirm=ConfirmConfig(n_controls=5, n_matched=1),
                 progress=False)
    assert replicate(path, **small).summary()["metric"] == "clip-attributes"
    assert replicate(path, metric=OracleMetric(), **small).summary()["metric"] == "oracle"
    # an isolation judges with the meaning metric its sweep measured
    assert isinstance(default_metric(run), OracleMetric)
    config = json.loads((run.path / "config.json").read_text())
    (run.path / "config.json").write_text(json.dumps({**config, "metrics": ["clip-attributes", "distance"],
                                                      "metric_options": sweep["metric_options"]}))
    assert isinstance(default_metric(RunDir.open(run.path)), ClipAttributesMetric)


def test_sudden_window_reads_the_largest_sudden_event(tmp_path, capsys):
    """A meaning whose largest event is a gradual decline can still hold a sudden step: window "sudden" searches
    that step, and "all" with it takes every meaning that has one."""
    run = make_run(tmp_path / "run", thresholds=False)
    table = pd.DataFrame({
        "metric": ["color", "color", "color", "shape", "position"], "event": [1, 2, 3, 1, 1],
        "largest": [True, False, False, True, True], "kind": ["gradual", "sudden", "sudden", "gradual", "sudden"],
        "collapsed": True, "threshold": [0.2, 0.33, 0.45, 0.4, 0.3], "ci_low": np.nan, "ci_high": np.nan,
        "drop": [0.6, 0.3, 0.1, 0.5, 0.4], "s_lo": [0.1, S_LO, 0.44, 0.35, 0.25], "s_hi": [0.3, S_HI, 0.46, 0.4, 0.3],
        "s_hold": [0.05, S_LO, 0.42, 0.3, 0.25], "s_fail": [0.3, S_HI, 0.48, 0.45, 0.32]})
    table.to_csv(run.path / THRESHOLDS, index=False)
    assert (resolve_window(run, "color")["start"], resolve_window(run, "color")["stop"]) == (0.05, 0.3)
    w = resolve_window(run, "color", "sudden")  # the larger of the two sudden steps, not the gradual decline
    assert (w["kind"], w["start"], w["stop"], w["collapse"], w["threshold"]) == ("sudden", S_LO, S_HI, "sudden", 0.33)
    assert resolve_window(run, "position", "sudden")["stop"] == 0.32  # largest event already sudden: same window
    assert sudden_meanings(run) == ["position"]
    assert sudden_meanings(run, any_event=True) == ["color", "position"]
    with pytest.raises(RunError, match="shape has no sudden collapse .*largest event: gradual.*with one: color, "
                                       "position; or use --window transition"):
        resolve_window(run, "shape", "sudden")
    assert IsolationConfig(window="sudden").window == "sudden"
    with pytest.raises(ValueError, match="unknown window 'steep'; valid: transition, bracket, sudden"):
        IsolationConfig(window="steep")
    assert main(["isolate", str(run.path), "--meaning", "shape", "--window", "sudden"]) == 2
    assert "shape has no sudden collapse" in capsys.readouterr().err
