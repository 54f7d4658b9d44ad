"""The real-model workflow checked on the organism: thresholds found by clip-attributes (builtin:tiny-shapes-clip)
agree with the oracle's, and fd-clip rises through the collapse. The full comparison, with isolation and
replication by the oracle, is analyses/clip_vs_oracle.py (README, "A CLIP-judged study")."""

from __future__ import annotations

import pandas as pd
import pytest

from sdprobe.generate import GenerationConfig
from sdprobe.models import load_pipeline
from sdprobe.sweep import ComponentPlan, SweepConfig, run_sweep
from sdprobe.thresholds import run_thresholds
from sdprobe.thresholds.table import largest

CLIP = {"clip_path": "builtin:tiny-shapes-clip"}


@pytest.mark.slow
def test_clip_judged_thresholds_agree_with_the_oracle_and_fd_clip_rises(tmp_path):
    pipe = load_pipeline("builtin:tiny-shapes")
    runs = {}
    for name, metrics, options in (("oracle", ["oracle"], {}),
                                   ("clip", ["clip-attributes", "fd-clip"], {"clip-attributes": CLIP, "fd-clip": CLIP})):
        config = SweepConfig(model="builtin:tiny-shapes", components={"text_encoder": ComponentPlan(["text_encoder"])},
                             method="magnitude", start=0.6, stop=0.9, step=0.05, refine=0.01, n_prompts=24, seed=3,
                             n_samples=0, metrics=metrics, metric_options=options, generation=GenerationConfig())
        run = run_sweep(pipe, config, tmp_path / name, progress=False)
        runs[name] = largest(run_thresholds(run.path)).set_index("metric")
    oracle, clip = runs["oracle"], runs["clip"]
    for meaning in ("color", "shape", "position", "size"):
        a, b = oracle.loc[meaning], clip.loc[meaning]
        assert a["kind"] != "none" and b["kind"] != "none", (meaning, a["kind"], b["kind"])
        # the two intervals overlap, and each threshold is within the other's interval widened by one grid step
        assert max(a["ci_low"], b["ci_low"]) <= min(a["ci_high"], b["ci_high"]), (meaning, a.to_dict(), b.to_dict())
        assert a["ci_low"] - 0.01 <= b["threshold"] <= a["ci_high"] + 0.01, (meaning, a["threshold"], b["threshold"])
    sets = pd.read_csv(tmp_path / "clip" / "sets.csv").sort_values("level")
    dense, collapsed = sets["fd_clip"].iloc[0], sets.loc[sets["level"] >= 0.85, "fd_clip"].min()
    assert collapsed > 3 * dense, sets[["level", "fd_clip"]].to_string()
