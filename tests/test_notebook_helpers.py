"""The library's notebook helpers and how result objects show themselves in Jupyter (``_repr_html_``)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from fixtures_runs import XSS, write_bias, write_sweep
from PIL import Image

from sdprobe.errors import RunError
from sdprobe.notebook import Picture, plot_curves, sample_grid, show_images
from sdprobe.runs import RunDir


def _size(picture: Picture) -> tuple[int, int]:
    assert isinstance(picture, Picture) and picture._repr_png_() == picture.png
    return Image.open(io.BytesIO(picture.png)).size


def test_show_images_lays_out_a_grid_and_refuses_bad_shapes(tmp_path):
    images = np.random.default_rng(0).random((6, 32, 32, 3))
    images[0, 0, 0, 0] = np.nan  # a collapsed model's NaN pixels are shown, not fatal
    wide = _size(show_images(images, [f"prompt {i}\nread: x" for i in range(6)], columns=3))
    tall = _size(show_images(images, columns=2))
    assert wide[0] > tall[0] and tall[1] > wide[1] * 0.9  # 3 columns x 2 rows against 2 x 3
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        show_images(images[..., 0])
    with pytest.raises(ValueError, match="2 titles for 6 images"):
        show_images(images, ["a", "b"])
    assert show_images(images).save(tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_curves_draws_a_finished_or_running_sweep_and_names_unknown_metrics(tmp_path):
    done = write_sweep(tmp_path / "done", samples=False, layers=False, critical=False)
    running = write_sweep(tmp_path / "running", state="running", samples=False, layers=False, critical=False,
                          thresholds=False)
    assert _size(plot_curves(done, n_boot=20))[0] > _size(plot_curves(RunDir(running), ["color"], n_boot=20))[0]
    with pytest.raises(ValueError, match="colour not in .*its metrics: color, shape"):
        plot_curves(done, ["colour"])
    empty = write_sweep(tmp_path / "empty", levels=[], state="running", samples=False, layers=False, critical=False,
                        thresholds=False)
    with pytest.raises(RunError, match="no evaluated levels"):
        plot_curves(empty)


def test_sample_grid_has_one_row_per_level(tmp_path):
    path = write_sweep(tmp_path / "s", levels=[0.0, 0.5], layers=False, critical=False)
    two = _size(sample_grid(path))
    one = _size(sample_grid(path, levels=[0.5]))
    assert two[1] > one[1]
    with pytest.raises(RunError, match="levels with one: 0, 0.5"):
        sample_grid(path, levels=[0.9])
    bare = write_sweep(tmp_path / "bare", levels=[0.0], samples=False, layers=False, critical=False)
    with pytest.raises(RunError, match="keeps no sample images"):
        sample_grid(bare)


def test_a_run_shows_its_state_and_thresholds_and_escapes_user_strings(tmp_path):
    path = write_sweep(tmp_path / "r", samples=False, layers=False, critical=False)
    config = json.loads((path / "config.json").read_text())
    config["model"] = XSS
    (path / "config.json").write_text(json.dumps(config))
    card = RunDir(path)._repr_html_()
    assert "finished" in card and "thresholds.csv" in card and "0.450" in card
    assert XSS not in card and "&lt;script" in card
    running = write_sweep(tmp_path / "live", state="running", samples=False, layers=False, critical=False)
    assert "unfinished (running)" in RunDir(running)._repr_html_()


def test_a_collapse_result_shows_its_kind_threshold_and_interval():
    from sdprobe.thresholds import detect

    levels = np.repeat(np.linspace(0, 0.9, 19), 8)
    frame = pd.DataFrame({"level": levels, "seed": np.tile(np.arange(8), 19),
                          "color": np.where(levels < 0.5, 1.0, 1 / 6)
                          + np.random.default_rng(0).normal(0, 0.02, levels.size)})
    result = detect(frame, x="level", y="color", floor=1 / 6, n_boot=50)
    card = result._repr_html_()
    assert result.kind == "sudden" and "color: sudden" in card
    assert f"{result.threshold:.3f} [{result.ci_low:.3f}, {result.ci_high:.3f}]" in card


def test_a_debiasing_result_shows_its_verdict(tmp_path):
    from sdprobe.bias.critical import BiasCriticalResult

    path = write_bias(tmp_path / "bias")
    summary = json.loads(next(path.glob("critical/*/summary.json")).read_text())
    result = BiasCriticalResult(summary=summary, indices={}, search=None, controls=None, distribution=None,
                                explicit=None, dose=None, splits={}, shapes={})
    card = result._repr_html_()
    assert summary["verdict"] in card and "Holm p" in card
