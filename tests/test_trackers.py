"""Runs reach TensorBoard and MLflow as local files: metrics per level, thresholds, sample images and the report,
read back with each tracker's own reader. Trackers stay off unless asked for."""

from __future__ import annotations

import pytest
from fixtures_runs import LEVELS, write_study, write_sweep

from sdprobe.cli import main
from sdprobe.report.load import load_run
from sdprobe.trackers import TrackerError, log_run, open_tracker, parse_spec, step_of


@pytest.fixture()
def sweep(tmp_path):
    path = write_sweep(tmp_path / "te-magnitude", critical=False)
    report = tmp_path / "report.html"
    report.write_text("<!DOCTYPE html><title>r</title>")
    return path, report


def _means(path):
    results = load_run(path).table("results")
    return results.groupby("level")["color"].mean()


def test_tensorboard_gets_levels_thresholds_images_and_the_report(sweep, tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    path, report = sweep
    with open_tracker(f"tensorboard:{tmp_path / 'tb'}") as tracker:
        log_run(path, tracker, report=report)
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "te-magnitude"),
                                             size_guidance={event_accumulator.IMAGES: 0, event_accumulator.SCALARS: 0})
    acc.Reload()
    color = acc.Scalars("color")
    means = _means(path)
    assert [e.step for e in color] == [step_of(lv) for lv in means.index]
    assert [e.value for e in color] == pytest.approx(means.tolist(), abs=1e-6)
    assert acc.Scalars("threshold/color")[0].value == pytest.approx(0.45)  # the fixture's collapse
    assert [e.step for e in acc.Images("samples")] == [step_of(lv) for lv in LEVELS]
    assert (tmp_path / "tb" / "te-magnitude" / "report.html").read_text() == report.read_text()


def test_mlflow_file_store_gets_params_metrics_and_artifacts(sweep, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    path, report = sweep
    with open_tracker(f"mlflow:{tmp_path / 'mlruns'}") as tracker:
        log_run(path, tracker, report=report)
        uri = tracker.uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sdprobe").experiment_id])
    assert run.info.run_name == "te-magnitude" and run.info.status == "FINISHED"
    assert run.data.params["method"] == "magnitude"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "color"))
    means = _means(path)
    assert [s for s, _ in history] == [step_of(lv) for lv in means.index]
    assert [v for _, v in history] == pytest.approx(means.tolist())
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "thresholds.csv", "samples"} <= artifacts
    assert len(client.list_artifacts(run.info.run_id, "samples")) == len(LEVELS)


def test_sdprobe_track_logs_every_run_of_a_study(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    study = write_study(tmp_path / "study")
    assert main(["track", str(study), "--to", f"tensorboard:{tmp_path / 'tb'}"]) == 0
    logged = sorted(p.name for p in (tmp_path / "tb").iterdir())
    assert logged == sorted(["attribution", "bias", "te-magnitude", "te-random", "te-wanda", "unet-magnitude"])


@pytest.mark.parametrize("spec", ["tensorboard", "wandb:runs/x", "mlflow:", ":runs/x"])
def test_a_bad_spec_names_what_is_allowed(spec):
    with pytest.raises(TrackerError, match="tensorboard, mlflow"):
        parse_spec(spec)


def test_trackers_are_off_by_default():
    from sdprobe.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["sweep", "-o", "x"]).tracker is None
    assert parser.parse_args(["study", "-o", "x"]).tracker is None
