"""The SD2 recipe, meanings on: clip-attributes thresholds, isolation and a CLIP bias probe, end to end on tiny random
SD2-shaped components and a tiny random CLIP. It proves the plumbing a user with SD2 relies on, not any finding."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from sdprobe.study import load_study_config, run_study, study_config_from_dict
from sdprobe.zoo import build_pipeline, save_tiny_clip

RECIPE = Path(__file__).resolve().parents[1] / "analyses" / "sd2-study.toml"


@pytest.mark.slow
def test_the_sd2_recipe_runs_meanings_end_to_end(tmp_path):
    model = tmp_path / "sd2"
    build_pipeline("sd2", "tiny", seed=0).save_pretrained(model, safe_serialization=True)
    clip = save_tiny_clip(tmp_path / "clip")
    recipe = load_study_config(RECIPE)
    assert recipe.metrics[0] == "clip-attributes" and recipe.isolation and recipe.bias
    data = recipe.quick().to_dict()
    data.update(model=str(model), device="cpu", dtype="float32", n_prompts=32)
    for options in data["metric_options"].values():
        options["clip_path"] = str(clip)  # the user's CLIP in the recipe
    data["generation"].update(steps=2, batch_size=8)
    data["sweeps"] = [dict(s, start=0.3, stop=0.6, step=0.15, refine=None) for s in data["sweeps"][:2]]
    data["isolation"].update(window=[0.3, 0.45], search_prompts=8, confirm_prompts=8, controls=40, matched=1,
                             effect=0.9, max_evaluations=6)
    data["bias"].update(n_images=4, sparsities=[0.4])
    out = tmp_path / "study"
    run_study(study_config_from_dict(data), out, progress=False)

    state = json.loads((out / "study.json").read_text())
    assert state["state"] == "finished"
    assert {k: v["status"] for k, v in state["stages"].items() if k != "isolation"} == {
        "sweep:te-magnitude": "done", "sweep:te-wanda": "done", "bias": "done", "report": "done"}
    assert state["stages"]["isolation"]["status"] in ("done", "skipped")
    results = pd.read_parquet(out / "te-magnitude" / "results.parquet")
    for meaning in ("object", "color", "count", "position"):  # one accuracy column per meaning of the suite
        assert meaning in results and results[meaning].notna().any(), meaning
    assert (out / "te-magnitude" / "sets.csv").exists() and "fd_clip" in pd.read_csv(out / "te-magnitude" / "sets.csv")
    thresholds = pd.read_csv(out / "te-magnitude" / "thresholds.csv")
    assert {"object", "color", "count", "position", "clip_score"} <= set(thresholds["metric"])
    # isolation judged color with clip-attributes on prompts of the suite the sweep did not use
    logged = out / "te-magnitude" / "critical" / "color"
    note = state["stages"]["isolation"]["note"]
    assert logged.exists() or "color" in note, note
    bias = json.loads((out / "bias" / "config.json").read_text())
    assert bias["probe"] == "occupations"
