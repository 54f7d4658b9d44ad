"""Progressive sweeps on a tiny untrained organism: the run directory, fixed noise, refinement, resume, exact restore
and bad input.

The organism's images are noise, so most tests use the ``distance`` metric (0 when an image equals the unpruned
one). Refinement is tested with an analytic metric that reads the text encoder's actual zero fraction and "breaks"
above a known sparsity, so the right brackets are known by hand.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import sdprobe.generate as generate_module
import sdprobe.sweep.run as sweep_run
from fixtures_weights import weights_hash
from sdprobe.architecture import select
from sdprobe.errors import RunError
from sdprobe.generate import GenerationConfig, generate
from sdprobe.io import image_grid
from sdprobe.runs import RunDir, level_name
from sdprobe.sweep import ComponentPlan, DenseImages, SweepConfig, run_sweep, sweep_prompts
from sdprobe.world import MEANINGS

PROMPTS = ["a red circle", "a small blue square", "a large green triangle in the top left"]
FAST = GenerationConfig(steps=2, batch_size=2)  # two batches for three prompts: batching must not matter
TE = {"text_encoder": ComponentPlan(["text_encoder"])}
BREAK_AT = {"early": 0.4325, "late": 0.5325}  # each column of the analytic metric fails above its sparsity
RESOLUTION = 0.005


def tiny_config(**kw) -> SweepConfig:
    base = dict(model="tiny", components=TE, start=0.0, stop=0.4, step=0.2, refine=None, prompts=PROMPTS,
                n_samples=2, metrics=["distance"], generation=FAST)
    return SweepConfig(**{**base, **kw})


def scope_sparsity(pipe) -> float:
    """Zero fraction of the text encoder's Linear weights, read from the live model."""
    weights = [r.weight for r in select(pipe, "text_encoder")]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


class BreaksAboveMetric:
    """Per column of ``BREAK_AT``: 1.0 per image while the text encoder's Linear weights are at most that share
    zero, then 0.0.

    It ignores the images and records the sparsity it saw, so tests can compare the table with the live model.
    """

    name = "breaks"
    higher_is_better = {column: True for column in BREAK_AT}

    def __init__(self, pipe):
        self.pipe, self.seen = pipe, []

    def score(self, prompts, images, reference=None) -> pd.DataFrame:
        s = scope_sparsity(self.pipe)
        self.seen.append(s)
        return pd.DataFrame({c: np.full(len(prompts), float(s <= at)) for c, at in BREAK_AT.items()})


def with_breaks_metric(monkeypatch, pipe) -> BreaksAboveMetric:
    metric = BreaksAboveMetric(pipe)
    real = sweep_run.make_metrics
    monkeypatch.setattr(sweep_run, "make_metrics",
                        lambda names, *options: [metric if n == "breaks" else real([n], *options)[0] for n in names])
    return metric


def interrupt_on_call(monkeypatch, k: int) -> None:
    """Make the sweep's k-th call of ``generate`` (1-based; call 1 makes the reference images) raise Ctrl-C."""
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    monkeypatch.setattr(sweep_run, "generate", flaky)


# -- the run directory -----------------------------------------------------------------------------------------------

def test_sweep_writes_the_documented_run_directory(tiny_organism, tmp_path):
    config = tiny_config()
    run = run_sweep(tiny_organism, config, tmp_path / "run", progress=False)
    p = run.path
    levels = [0.0, 0.2, 0.4]
    cfg = json.loads((p / "config.json").read_text())
    assert cfg["kind"] == "sweep" and cfg["method"] == "magnitude"
    assert cfg["components"] == {"text_encoder": {"selectors": ["text_encoder"], "offset": 0.0}}
    assert cfg["higher_is_better"] == {"distance": False} and cfg["generation"]["steps"] == 2
    assert SweepConfig.from_dict(cfg) == config
    assert {"python", "torch", "diffusers"} <= set(json.loads((p / "environment.json").read_text()))
    assert json.loads((p / "status.json").read_text())["state"] == "finished" and run.finished
    assert sorted(f.name for f in (p / "levels").iterdir()) == [f"{level_name(lv)}.parquet" for lv in levels]
    assert run.done_levels() == levels

    table = pd.read_parquet(p / "results.parquet")
    pd.testing.assert_frame_equal(table, pd.read_csv(p / "results.csv"), check_dtype=False)
    for col in ("level", "sparsity_scope", "sparsity_text_encoder", "prompt", "seed", "index", "distance"):
        assert col in table.columns, col
    assert len(table) == len(levels) * len(PROMPTS) and not table.duplicated(["level", "index"]).any()
    prompts, seeds = sweep_prompts(config)
    for level, rows in table.groupby("level"):
        assert rows["prompt"].tolist() == prompts and rows["seed"].tolist() == seeds
        assert rows["index"].tolist() == list(range(len(PROMPTS)))
        scope = rows["sparsity_scope"].iloc[0]
        assert scope == pytest.approx(level, abs=1e-3)
        # embeddings and norms are outside the Linear scope, so the whole component is sparser than nothing and
        # less sparse than its scope
        assert (0 < rows["sparsity_text_encoder"].iloc[0] < scope) if level > 0 else scope == 0
    assert (table.query("level == 0")["distance"] == 0).all()
    assert (table.query("level == 0.4")["distance"] > 0).all()

    layers = pd.read_csv(p / "layers.csv")
    for col in ("level", "qualified_name", "component", "region", "block", "role", "numel", "sparsity"):
        assert col in layers.columns, col
    n_refs = len(select(tiny_organism, "text_encoder"))
    assert layers.groupby("level").size().to_dict() == {lv: n_refs for lv in levels}
    assert (layers["component"] == "text_encoder").all()
    for level, rows in layers.groupby("level"):  # magnitude prunes every matrix to the level (floored)
        assert np.allclose(rows["sparsity"], np.floor(level * rows["numel"]) / rows["numel"])

    assert json.loads((p / "samples.json").read_text()) == {"prompts": prompts[:2], "seeds": seeds[:2]}
    for level in levels:
        strip = np.asarray(Image.open(run.sample_image(level)))
        side = 32 * sweep_run.SAMPLE_SCALE
        assert strip.shape[0] > side and strip.shape[1] > 2 * side  # one row of two images


def test_every_level_uses_the_same_noise_and_level_zero_is_the_unpruned_model(tiny_organism, tmp_path, monkeypatch):
    noise, images = [], []
    real_latents = generate_module.initial_latents

    def spy_latents(*args, **kwargs):
        noise.append(real_latents(*args, **kwargs))
        return noise[-1]

    def spy_generate(*args, **kwargs):
        images.append(generate(*args, **kwargs))
        return images[-1]

    monkeypatch.setattr(generate_module, "initial_latents", spy_latents)
    monkeypatch.setattr(sweep_run, "generate", spy_generate)
    config = tiny_config()
    run = run_sweep(tiny_organism, config, tmp_path / "run", progress=False)
    assert len(images) == 1 + 2  # the dense images (the reference and level 0), then one call per pruned level
    batches = len(noise) // len(images)
    assert batches == 2
    for i in range(batches, len(noise)):
        assert torch.equal(noise[i], noise[i % batches])
    monkeypatch.undo()
    prompts, seeds = sweep_prompts(config)
    unpruned = generate(tiny_organism, prompts, seeds, FAST)
    np.testing.assert_array_equal(images[0], unpruned)  # level 0 is bit-exactly the unpruned model
    assert not np.array_equal(images[2], unpruned)
    assert (run.results().query("level == 0")["distance"] == 0).all()
    strip = np.asarray(Image.open(run.sample_image(0.0)).convert("RGB"))
    grid = image_grid(unpruned[:2], columns=2)
    expected = grid.repeat(sweep_run.SAMPLE_SCALE, axis=0).repeat(sweep_run.SAMPLE_SCALE, axis=1)
    np.testing.assert_array_equal(strip, expected)


def test_refinement_brackets_the_known_collapse_to_the_resolution(tiny_organism, tmp_path, monkeypatch):
    metric = with_breaks_metric(monkeypatch, tiny_organism)
    config = tiny_config(start=0.3, stop=0.6, step=0.05, refine=RESOLUTION, metrics=["breaks"], n_samples=0)
    run = run_sweep(tiny_organism, config, tmp_path / "run", progress=False)
    table = run.results()
    done = run.done_levels()
    grid = config.grid()
    assert set(grid) <= set(done) and len(done) > len(grid)
    for at in BREAK_AT.values():
        holds = max(lv for lv in done if lv <= at)
        fails = min(lv for lv in done if lv > at)
        assert fails - holds <= RESOLUTION + 1e-9
    bisections = int(np.ceil(np.log2(config.step / RESOLUTION)))
    assert len(done) - len(grid) <= len(BREAK_AT) * bisections  # bisection, not a fine grid
    per_level = table.groupby("level")[[*BREAK_AT, "sparsity_scope"]].first()
    for column, at in BREAK_AT.items():
        assert per_level[column].tolist() == [float(lv <= at) for lv in per_level.index]
    # the sparsity the table reports is the one the live model had while the images were scored
    assert np.allclose(sorted(metric.seen), sorted(per_level["sparsity_scope"]), atol=1e-12)
    assert not list(run.path.glob("samples/*.png"))  # n_samples=0 saves no strips


def test_grid_ends_at_stop_when_the_step_does_not_land_on_it():
    assert SweepConfig(start=0.3, stop=0.6, step=0.05).grid() == [0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
    assert SweepConfig(start=0.0, stop=0.95, step=0.1).grid() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
                                                                   0.95]


# -- resume and exact restore ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [3, 10], ids=["during-grid", "mid-refinement-round"])
def test_resume_after_kill_matches_an_uninterrupted_run(tiny_organism, tmp_path, monkeypatch, k):
    # generate calls: 1 = the dense images (reference and level 0), 2..8 = the 7 pruned grid levels 0.3..0.6, 9 and
    # 10 = the first refinement round, which bisects both brackets (0.40, 0.45) and (0.50, 0.55); k = 10 kills the
    # sweep between those two levels
    with_breaks_metric(monkeypatch, tiny_organism)
    config = tiny_config(start=0.3, stop=0.6, step=0.05, refine=RESOLUTION, metrics=["breaks", "distance"])
    assert config.grid() == [0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
    before = weights_hash(tiny_organism)
    whole = run_sweep(tiny_organism, config, tmp_path / "whole", progress=False)
    assert weights_hash(tiny_organism) == before
    assert {0.425, 0.525} <= set(whole.done_levels())

    interrupt_on_call(monkeypatch, k)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny_organism, config, tmp_path / "resumed", progress=False)
    assert weights_hash(tiny_organism) == before  # restored on the way out of the interrupted sweep
    partial = RunDir(tmp_path / "resumed")
    assert partial.state() == "running" and not (partial.path / "results.parquet").exists()
    assert len(partial.done_levels()) == k - 1  # level 0 and the levels of calls 2..k-1 are kept

    monkeypatch.setattr(sweep_run, "generate", generate)
    resumed = run_sweep(tiny_organism, config, tmp_path / "resumed", progress=False)
    assert weights_hash(tiny_organism) == before
    a, b = whole.results(), resumed.results()
    assert not b.duplicated(["level", "index"]).any()
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(whole.layers().sort_values(["level", "qualified_name"], ignore_index=True),
                                  resumed.layers().sort_values(["level", "qualified_name"], ignore_index=True))
    assert sorted(p.name for p in (whole.path / "samples").iterdir()) == \
        sorted(p.name for p in (resumed.path / "samples").iterdir())


def test_sweeps_sharing_dense_images_make_them_once_and_give_the_same_results(tiny_organism, tmp_path, monkeypatch):
    calls = []

    def counting(pipe, prompts, seeds, config):
        calls.append(len(prompts))
        return generate(pipe, prompts, seeds, config)

    monkeypatch.setattr(sweep_run, "generate", counting)
    alone = run_sweep(tiny_organism, tiny_config(), tmp_path / "alone", progress=False)
    assert calls == [3, 3, 3]  # dense (reference and level 0), 0.2, 0.4
    calls.clear()
    dense = DenseImages()
    first = run_sweep(tiny_organism, tiny_config(), tmp_path / "first", progress=False, dense=dense)
    second = run_sweep(tiny_organism, tiny_config(method="random", stop=0.2), tmp_path / "second", progress=False,
                       dense=dense)
    assert calls == [3, 3, 3, 3] and dense.generated == 3  # the second sweep made only its pruned level
    pd.testing.assert_frame_equal(alone.results(), first.results())
    pd.testing.assert_frame_equal(alone.results().query("level == 0"), second.results().query("level == 0"))
    calls.clear()
    offset = {"text_encoder": ComponentPlan(["text_encoder"], offset=0.1)}  # level 0 is pruned here: generated
    run_sweep(tiny_organism, tiny_config(components=offset, stop=0.2), tmp_path / "offset", progress=False,
              dense=dense)
    assert calls == [3, 3]


def test_weights_are_restored_when_a_level_fails(tiny_organism, tmp_path, monkeypatch):
    before = weights_hash(tiny_organism)

    def broken_score(*args, **kwargs):
        raise RuntimeError("metric failed")

    monkeypatch.setattr("sdprobe.metrics.distance.DistanceMetric.score", broken_score)
    with pytest.raises(RuntimeError, match="metric failed"):
        run_sweep(tiny_organism, tiny_config(), tmp_path / "run", progress=False)
    assert weights_hash(tiny_organism) == before


@pytest.mark.parametrize("change, key", [
    ({"step": 0.1}, "step"),
    ({"generation": GenerationConfig(steps=3, batch_size=2)}, "generation.steps"),
    ({"method": "random"}, "method"),
])
def test_resume_with_a_different_config_is_refused_naming_the_key(tiny_organism, tmp_path, change, key):
    run_sweep(tiny_organism, tiny_config(stop=0.2), tmp_path / "run", progress=False)
    before = sorted(p.name for p in (tmp_path / "run" / "levels").iterdir())
    with pytest.raises(RunError, match="refusing to resume") as err:
        run_sweep(tiny_organism, tiny_config(stop=0.2, **change), tmp_path / "run", progress=False)
    assert f"\n  {key}: run has" in str(err.value)
    assert sorted(p.name for p in (tmp_path / "run" / "levels").iterdir()) == before


def test_a_folder_that_is_not_a_run_is_refused(tiny_organism, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not an sdprobe run"):
        run_sweep(tiny_organism, tiny_config(), tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# -- bad input -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, message", [
    ({"start": -0.1}, r"start must be a sparsity in \[0, 1\)"),
    ({"stop": 1.0}, r"stop must be a sparsity in \[0, 1\)"),
    ({"start": 1.2, "stop": 1.5}, r"start must be a sparsity in \[0, 1\)"),
    ({"start": float("nan")}, "start must be a finite number, got nan"),
    ({"seed": -1}, r"seed must be an integer in \[0, 9223372036854775807\]"),
    ({"group": "bogus"}, "unknown comparison group 'bogus'"),
    ({"start": 0.5, "stop": 0.3}, r"start \(0.5\) must not exceed stop \(0.3\)"),
    ({"step": 0.0}, "step must be a finite number > 0"),
    ({"step": -0.05}, "step must be a finite number > 0"),
    ({"step": float("inf")}, "step must be a finite number, got inf"),
    ({"refine": 0.0}, "refine resolution must be a finite number > 0"),
    ({"method": "prune-it"}, "unknown method 'prune-it'; valid: magnitude, magnitude-global, wanda"),
    ({"components": {}}, "no component to prune"),
    ({"components": {"vae": ComponentPlan(["vae"])}}, "unknown component 'vae'; valid: text_encoder, text_encoder_2, unet"),
    ({"prompts": []}, "the prompt list is empty"),
    ({"prompts": None, "n_prompts": 0}, "n_prompts must be a positive integer"),
    ({"method": "wanda", "n_calibration": 0}, "wanda needs calibration prompts"),
])
def test_bad_config_is_refused_with_the_valid_choices(kw, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**kw)


@pytest.mark.parametrize("selectors, message", [
    (["text_encoder.nonsense"], "unknown filter 'nonsense' in selector 'text_encoder.nonsense'; valid for text_encoder: "),
    (["text_encoder_2"], "name a component this pipeline lacks; it has: text_encoder, unet"),
    (["unet.attn2"], r"selectors \['unet.attn2'\] of component 'text_encoder' select weights of \['unet'\]"),
])
def test_bad_selector_is_refused_before_anything_is_written(tiny_organism, tmp_path, selectors, message):
    config = tiny_config(components={"text_encoder": ComponentPlan(selectors)})
    before = weights_hash(tiny_organism)
    with pytest.raises(ValueError, match=message):
        run_sweep(tiny_organism, config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # a corrected command can reuse the folder
    assert weights_hash(tiny_organism) == before


def test_wanda_sweep_calibrates_on_its_prompts_and_restores(tiny_organism, tmp_path):
    before = weights_hash(tiny_organism)
    run = run_sweep(tiny_organism, tiny_config(method="wanda", n_calibration=2, stop=0.2), tmp_path / "run",
                    progress=False)
    assert run.done_levels() == [0.0, 0.2] and weights_hash(tiny_organism) == before


def test_nan_images_count_as_unreadable(tiny_organism, tmp_path, monkeypatch):
    def nan_images(pipe, prompts, seeds, config):
        return np.full((len(prompts), 32, 32, 3), np.nan, dtype=np.float32)

    monkeypatch.setattr(sweep_run, "generate", nan_images)
    config = tiny_config(prompts=None, n_prompts=4, metrics=["oracle", "distance"], refine=RESOLUTION)
    run = run_sweep(tiny_organism, config, tmp_path / "run", progress=False)
    table = run.results()
    assert run.finished and len(table) == 3 * 4
    assert (table["unreadable"] == 1.0).all()
    assert (table["distance"] == 1.0).all()  # NaN images are maximally far from the reference
    for meaning in MEANINGS:
        stated = table[meaning].notna()
        assert (table.loc[stated, meaning] == 0.0).all()  # an unreadable image gets no attribute right
        assert table[f"read_{meaning}"].isna().all()
    assert table["color"].notna().any()  # grammar prompts state colors, so the accuracy columns are exercised
    assert run.sample_image(0.0).exists()


def test_a_level_added_to_a_finished_run_is_in_its_results(tmp_path):
    """Refinement may add levels to a finished run (a resumed sweep under new rules): the consolidated table must
    not hide them."""
    run = RunDir.open_or_create(tmp_path / "run", {"method": "magnitude"})
    rows = lambda lv: pd.DataFrame({"level": [lv], "prompt": ["a circle"], "seed": [0], "index": [0], "color": [1.0]})  # noqa: E731
    for lv in (0.0, 0.5):
        run.write_level(lv, rows(lv))
    assert len(run.finish()) == 2 and run.finished
    run.write_level(0.25, rows(0.25))
    assert not run.finished and sorted(run.results()["level"]) == [0.0, 0.25, 0.5]
    assert sorted(run.finish()["level"]) == [0.0, 0.25, 0.5]
    assert sorted(RunDir.open(run.path).results()["level"]) == [0.0, 0.25, 0.5]
