"""``sdprobe thresholds`` on CSV curves and run directories, including its error exits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sdprobe.cli import main
from sdprobe.runs import RunDir
from sdprobe.thresholds import metric_columns, run_thresholds, thresholds_table

GRID = np.round(np.arange(0.0, 0.9001, 0.05), 4)


def step_rows(step: float, n_seeds: int = 20, seed: int = 0, x: str = "sparsity", y: str = "metric") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(lv, s, float(rng.random() < (0.9 if lv < step else 0.1))) for lv in GRID for s in range(n_seeds)]
    return pd.DataFrame(rows, columns=[x, "seed", y])


def test_csv_per_seed_rows(tmp_path, capsys):
    step_rows(0.43).to_csv(tmp_path / "curve.csv", index=False)
    out = tmp_path / "t.csv"
    assert main(["thresholds", "--csv", str(tmp_path / "curve.csv"), "--bootstrap", "200", "--out", str(out)]) == 0
    assert "sudden" in capsys.readouterr().out
    row = pd.read_csv(out).iloc[0]
    assert row["metric"] == "metric" and row["kind"] == "sudden" and bool(row["collapsed"])
    assert row["s_lo"] == 0.40 and row["s_hi"] == 0.45 and row["s_lo"] <= row["threshold"] <= row["s_hi"]
    assert row["ci_low"] <= row["threshold"] <= row["ci_high"] and row["n_boot"] == 200


def test_csv_one_row_per_level_lower_is_better(tmp_path, capsys):
    curve = pd.DataFrame({"s": GRID, "err": np.where(GRID < 0.6, 0.02, 0.7)})
    curve.to_csv(tmp_path / "c.csv", index=False)
    args = ["thresholds", "--csv", str(tmp_path / "c.csv"), "--x", "s", "--y", "err", "--out", str(tmp_path / "o.csv")]
    assert main(args + ["--lower-is-better"]) == 0
    row = pd.read_csv(tmp_path / "o.csv").iloc[0]
    assert row["kind"] == "sudden" and row["s_lo"] == 0.55 and row["s_hi"] == 0.6
    assert row["threshold"] == pytest.approx(0.575)
    assert "note: one value per level and no standard error: the interval is the bracket" in capsys.readouterr().out
    assert main(args) == 0  # read as higher-is-better the error only "improves": no collapse, and a hint says why
    assert pd.read_csv(tmp_path / "o.csv").iloc[0]["kind"] == "none"
    out = capsys.readouterr().out
    assert "note: the metric improves along the sweep" in out and "--lower-is-better" in out


def test_csv_set_level_metric_on_a_log_scale(tmp_path, capsys):
    levels = np.round(np.arange(0.0, 0.9001, 0.025), 4)
    fid = np.exp(np.log(18) + np.log(300 / 18) / (1 + np.exp(-(levels - 0.6) / 0.03)))
    pd.DataFrame({"sparsity": levels, "fid": fid, "fid_se": 0.05 * fid}).to_csv(tmp_path / "fid.csv", index=False)
    args = ["thresholds", "--csv", str(tmp_path / "fid.csv"), "--y", "fid", "--lower-is-better", "--bootstrap", "200",
            "--out", str(tmp_path / "o.csv")]
    assert main(args + ["--log"]) == 0
    row = pd.read_csv(tmp_path / "o.csv").iloc[0]
    assert row["scale"] == "log" and row["ci_method"] == "normal+bracket" and abs(row["threshold"] - 0.6) < 0.0125
    assert main(args) == 0
    assert pd.read_csv(tmp_path / "o.csv").iloc[0]["threshold"] > row["threshold"] + 0.0125  # linear: late


@pytest.mark.parametrize("extra, message", [
    (["--y", "nope"], "'nope' is not in the table"),
    (["--y", "label"], "'label' is not numeric"),
    (["--x", "half"], "2 level(s)"),
])
def test_csv_bad_input_exits_2(tmp_path, capsys, extra, message):
    table = step_rows(0.43).assign(label="x")
    table["half"] = (table["sparsity"] > 0.5).astype(float)  # a column with only two distinct values
    table.to_csv(tmp_path / "c.csv", index=False)
    assert main(["thresholds", "--csv", str(tmp_path / "c.csv"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_too_few_levels_missing_csv_and_no_input_exit_2(tmp_path, capsys):
    step_rows(0.43).query("sparsity < 0.1").to_csv(tmp_path / "c.csv", index=False)
    assert main(["thresholds", "--csv", str(tmp_path / "c.csv")]) == 2
    assert "2 level(s)" in capsys.readouterr().err
    assert main(["thresholds", "--csv", str(tmp_path / "missing.csv")]) == 2
    assert main(["thresholds"]) == 2
    assert "either RUN_DIR or --csv" in capsys.readouterr().err


def make_run(path, levels=GRID) -> RunDir:
    """A sweep run in the on-disk layout of ``sdprobe.runs``: color collapses at 0.43, unreadable rises at 0.6."""
    run = RunDir.open_or_create(path, {"method": "magnitude",
                                       "higher_is_better": {"color": True, "unreadable": False, "distance": False}})
    rng = np.random.default_rng(0)
    for lv in levels:
        n = 16
        run.write_level(lv, pd.DataFrame({
            "level": lv, "sparsity_scope": lv * 0.99, "sparsity_text_encoder": lv * 0.8,
            "prompt": ["a red circle"] * n, "seed": np.arange(n), "index": np.arange(n),
            "color": (rng.random(n) < (0.9 if lv < 0.43 else 0.1)).astype(float),
            "size": np.nan,  # no prompt states a size
            "unreadable": (rng.random(n) < (0.05 if lv < 0.6 else 0.9)).astype(float),
            "distance": lv * 0.3 + 0.01 * rng.random(n),
            "read_color": ["red"] * n,
        }))
    return run


def test_run_dir_writes_thresholds_csv(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["thresholds", str(run.path), "--bootstrap", "100"]) == 0
    table = run.thresholds()
    assert list(table["metric"]) == ["color", "unreadable", "distance"]  # no bookkeeping, strings or empty columns
    rows = table.set_index("metric")
    assert rows.loc["color", "kind"] == "sudden"
    assert (rows.loc["color", "s_lo"], rows.loc["color", "s_hi"]) == (0.4, 0.45)
    assert rows.loc["unreadable", "kind"] == "sudden" and not rows.loc["unreadable", "higher_is_better"]
    assert rows.loc["unreadable", "s_hi"] == 0.6
    assert rows.loc["distance", "kind"] == "gradual"  # a linear rise in distance
    assert "color" in capsys.readouterr().out

    assert main(["thresholds", str(run.path), "--metrics", "color", "--floors", "color=0.125", "--bootstrap", "0"]) == 0
    assert list(run.thresholds()["metric"]) == ["color"] and run.thresholds().loc[0, "floor"] == 0.125


def test_run_dir_uses_declared_floors_and_set_level_metrics(tmp_path):
    run = RunDir.open_or_create(tmp_path / "run", {"method": "magnitude", "metrics": ["oracle", "fid"]})
    rng = np.random.default_rng(0)
    for lv in GRID:
        fid = 18.0 if lv < 0.6 else 250.0
        run.write_level(lv, pd.DataFrame({
            "level": lv, "prompt": ["a red circle"] * 16, "seed": np.arange(16), "index": np.arange(16),
            "color": (rng.random(16) < (0.9 if lv < 0.43 else 0.0)).astype(float)}),
            sets={"fid": fid, "fid_se": 0.03 * fid, "n_images": 16})
    assert "fid" not in run.results().columns  # stored once per level, not copied onto image rows
    assert run.sets()["fid"].tolist()[0] == 18.0 and len(run.sets()) == len(GRID)
    table = run_thresholds(run.path, n_boot=100).set_index("metric")
    assert table.loc["color", "floor"] == pytest.approx(1 / 6) and table.loc["color", "floor_source"] == "given"
    assert table.loc["fid", "scale"] == "log" and not table.loc["fid", "higher_is_better"]
    assert table.loc["fid", "ci_method"] == "normal+bracket" and table.loc["fid", "kind"] == "sudden"
    assert table.loc["fid", "s_lo"] == 0.55 and table.loc["fid", "s_hi"] == 0.6


def test_run_dir_errors(tmp_path, capsys):
    empty = RunDir.open_or_create(tmp_path / "empty", {"method": "magnitude"})
    assert main(["thresholds", str(empty.path)]) == 2
    assert "run `sdprobe sweep`" in capsys.readouterr().err
    assert main(["thresholds", str(tmp_path / "nothing")]) == 2
    assert "not an sdprobe run" in capsys.readouterr().err
    run = make_run(tmp_path / "run", levels=GRID[:2])
    assert main(["thresholds", str(run.path)]) == 2
    assert "metric 'color'" in capsys.readouterr().err and not (run.path / "thresholds.csv").exists()
    run = make_run(tmp_path / "run2")
    assert main(["thresholds", str(run.path), "--metrics", "colour"]) == 2
    assert "colour" in capsys.readouterr().err
    assert main(["thresholds", str(run.path), "--floors", "color:0.1"]) == 2
    assert main(["thresholds", str(run.path), "--lower-is-better"]) == 2


def test_library_table_matches_metric_columns(tmp_path):
    table = make_run(tmp_path / "run").results()
    assert metric_columns(table) == ["color", "size", "unreadable", "distance"]
    with pytest.raises(ValueError, match="no direction.*'color'"):
        thresholds_table(table, ["color"], {"unreadable": False})
    with pytest.raises(ValueError, match="metric 'size'"):
        thresholds_table(table, ["size"], {"size": True})
