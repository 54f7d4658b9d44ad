"""Loading run directories and the summaries a report derives from them (hand-checkable inputs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import LEVELS, write_study, write_sweep

from sdprobe.errors import RunError
from sdprobe.io import write_json
from sdprobe.report import compute
from sdprobe.report.load import RunData, StudyData, discover, load_run


def _run(results: pd.DataFrame, config: dict | None = None) -> RunData:
    return RunData(path=None, name="r", kind="sweep", config=config or {}, environment={}, state="finished",
                   tables={"results": results})


def test_bootstrap_mean_constant_values_have_a_zero_width_band():
    mean, lo, hi = compute.bootstrap_mean(np.ones(10), None, np.random.default_rng(0), n_boot=200)
    assert (mean, lo, hi) == (1.0, 1.0, 1.0)


def test_bootstrap_mean_weights_clusters_by_size_and_resamples_whole_clusters():
    values = np.array([1.0, 1.0, 1.0, 0.0])
    clusters = np.array([7, 7, 7, 9])
    mean, lo, hi = compute.bootstrap_mean(values, clusters, np.random.default_rng(0), n_boot=2000, ci=0.9)
    assert mean == pytest.approx(0.75)
    # two clusters: every resample is {7,7}, {7,9} or {9,9} -> means 1, 0.75, 0 only
    assert lo == pytest.approx(0.0) and hi == pytest.approx(1.0)


def test_bootstrap_mean_rejects_bad_coverage_and_handles_empty():
    with pytest.raises(ValueError, match="ci must be in"):
        compute.bootstrap_mean(np.ones(3), None, np.random.default_rng(0), ci=1.5)
    assert all(np.isnan(compute.bootstrap_mean(np.array([]), None, np.random.default_rng(0))))


def test_curve_summary_means_ignore_nan_and_count_values():
    results = pd.DataFrame({
        "level": [0.0] * 4 + [0.5] * 4,
        "seed": [1, 2, 3, 4] * 2,
        "color": [1, 1, 1, np.nan, 1, 0, 0, 1],
        "shape": [1, 0, 1, 0, 0, 0, 0, 0],
    })
    s = compute.curve_summary(results, ["color", "shape"], n_boot=500).set_index(["metric", "level"])
    assert s.loc[("color", 0.0), "mean"] == 1.0 and s.loc[("color", 0.0), "n"] == 3
    assert s.loc[("color", 0.5), "mean"] == 0.5 and s.loc[("shape", 0.0), "mean"] == 0.5
    assert s.loc[("shape", 0.5), "mean"] == 0.0
    assert (s["ci_low"] <= s["mean"]).all() and (s["mean"] <= s["ci_high"]).all()
    assert s.loc[("color", 0.5), "ci_low"] < 0.5 < s.loc[("color", 0.5), "ci_high"]


def test_metric_columns_put_meanings_first_and_skip_bookkeeping():
    results = pd.DataFrame({"level": [0.0], "sparsity_scope": [0.0], "sparsity_unet": [0.0], "prompt": ["p"],
                            "seed": [1], "index": [0], "distance": [0.1], "size": [1.0], "color": [1.0],
                            "read_color": ["red"], "unreadable": [0.0]})
    assert compute.metric_columns(_run(results)) == ["color", "size", "distance", "unreadable"]
    declared = {"distance": False, "shape": True, "color": True}  # shape absent from the table
    assert compute.metric_columns(_run(results, {"higher_is_better": declared})) == ["color", "distance"]


def test_layer_matrix_aggregates_by_numel_when_there_are_too_many_tensors():
    layers = pd.DataFrame({"level": [0.5, 0.5, 0.5], "qualified_name": ["a", "b", "c"],
                           "component": ["te"] * 3, "region": ["enc"] * 3, "block": ["0", "0", "1"],
                           "role": ["fc1"] * 3, "numel": [1, 3, 5], "sparsity": [0.0, 1.0, 0.2]})
    m, rows = compute.layer_matrix(layers, max_rows=3)
    assert rows == "tensor" and m.loc["b", 0.5] == 1.0
    m, rows = compute.layer_matrix(layers, max_rows=2)
    assert rows == "group"
    assert m.loc["te/enc/0/fc1", 0.5] == pytest.approx(0.75)  # (0*1 + 1*3) / 4
    assert m.loc["te/enc/1/fc1", 0.5] == pytest.approx(0.2)


@pytest.mark.parametrize("max_rows", [10, 1], ids=["tensors", "groups"])
def test_layer_matrix_columns_are_levels_in_ascending_order(max_rows):
    levels = [0.5, 0.6, 0.525, 0.55, 0.5125]  # evaluation order: grid, then refinement rounds
    layers = pd.DataFrame({"level": levels * 2, "qualified_name": ["a"] * 5 + ["b"] * 5, "component": ["te"] * 10,
                           "region": ["enc"] * 10, "block": ["0"] * 10, "role": ["fc1"] * 10, "numel": [1] * 10,
                           "sparsity": levels * 2})
    m, _ = compute.layer_matrix(layers, max_rows=max_rows)
    assert list(m.columns) == sorted(levels)
    assert (m.to_numpy() == np.array(sorted(levels))).all()


def test_critical_density_is_count_over_numel(tmp_path):
    run = load_run(write_sweep(tmp_path / "run", levels=[0.0, 0.5]))
    matrix, normalised = compute.critical_density(run)
    assert normalised
    layers = run.table("layers").drop_duplicates("qualified_name").set_index("qualified_name")["numel"]
    for c in run.critical:
        counts = c.weights["qualified_name"].value_counts()
        for name, n in counts.items():
            assert matrix.loc[name, c.meaning] == pytest.approx(n / layers[name])
        assert (matrix[c.meaning] * layers.reindex(matrix.index)).sum() == pytest.approx(len(c.weights))


def test_critical_density_falls_back_to_counts_without_sizes(tmp_path):
    run = load_run(write_sweep(tmp_path / "run", levels=[0.0], layers=False))
    matrix, normalised = compute.critical_density(run)
    assert not normalised
    assert matrix.sum().tolist() == [len(c.weights) for c in run.critical]


def test_comparisons_group_methods_of_the_same_scope(tmp_path):
    study = discover([write_study(tmp_path / "study")])[0]
    groups = compute.comparisons(study.runs)
    assert len(groups) == 1
    assert groups[0].scope == "text_encoder"
    assert sorted(r.config["method"] for r in groups[0].runs) == ["magnitude", "random", "wanda"]


def test_threshold_cell_and_scope_label():
    row = pd.Series({"kind": "sudden", "threshold": 0.4123, "ci_low": 0.4, "ci_high": 0.43})
    assert compute.threshold_cell(row) == "0.412 [0.400, 0.430] sudden"
    assert compute.threshold_cell(pd.Series({"kind": "none", "threshold": np.nan})) == "none"
    config = {"components": {"unet": {"selectors": ["unet"], "offset": 0.0},
                             "text_encoder": {"selectors": ["text_encoder"], "offset": 0.125}}}
    assert compute.scope_label(config) == "text_encoder+0.125 & unet"


def test_discover_finds_runs_and_studies(tmp_path):
    run_dir = write_sweep(tmp_path / "single", levels=[0.0], critical=False)
    study_dir = write_study(tmp_path / "study")
    single, study = discover([run_dir, study_dir])
    assert isinstance(single, RunData) and single.kind == "sweep" and not single.partial
    assert isinstance(study, StudyData)
    assert sorted(r.name for r in study.runs) == ["attribution", "bias", "te-magnitude", "te-random", "te-wanda",
                                                  "unet-magnitude"]
    assert not study.partial and study.missing == []


def test_discover_rejects_folders_without_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk" / "deeper").mkdir(parents=True)
    (tmp_path / "junk" / "deeper" / "notes.txt").write_text("hello")
    for bad in (tmp_path / "empty", tmp_path / "junk", tmp_path / "missing"):
        with pytest.raises(RunError, match="sdprobe run|does not exist"):
            discover([bad])
    with pytest.raises(RunError, match="no run directory"):
        discover([])


def test_running_sweep_reads_level_files_and_is_partial(tmp_path):
    run = load_run(write_sweep(tmp_path / "live", levels=[0.0, 0.1], state="running", critical=False))
    assert run.partial and not (run.path / "results.parquet").exists()
    assert sorted(run.table("results")["level"].unique()) == [0.0, 0.1]


def test_study_planning_a_missing_run_is_partial(tmp_path):
    study = discover([write_study(tmp_path / "study", partial=True)])[0]
    assert study.partial and study.missing == ["joint-magnitude"]
    assert [r.name for r in study.runs if r.partial] == ["te-random"]


def test_unreadable_files_become_notes(tmp_path):
    path = write_sweep(tmp_path / "run", levels=LEVELS[:2], critical=False)
    (path / "thresholds.csv").write_bytes(b"\xff\xfe\x00garbage")
    write_json(path / "samples.json", {"prompts": ["a"], "seeds": [1]})
    (path / "samples.json").write_text("{not json")
    run = load_run(path)
    assert run.table("thresholds") is None and run.samples is None
    assert len(run.notes) == 2 and any("thresholds.csv" in n for n in run.notes)
