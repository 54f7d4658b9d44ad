"""Synthetic run and study directories in the documented layout (see ``sdprobe/runs.py``), for report tests.

The tables are plausible, not real: accuracies follow a logistic collapse at a chosen sparsity plus Bernoulli
noise, drawn from a seeded numpy generator, so every call with the same arguments writes the same files.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from sdprobe.io import atomic_write_bytes, write_json
from sdprobe.runs import level_name
from sdprobe.world.attributes import (
    ATTRIBUTES,
    COLORS,
    MEANINGS,
    PLANTED_BIAS_COLOR,
    PLANTED_BIAS_SHARE,
)

XSS = "<script>alert(1)</script>"
DEFAULT_PROMPTS = ["a red circle in the top left", "a small blue square", "a large green triangle",
                   f"a yellow circle {XSS}"]
LEVELS = [round(x, 4) for x in np.arange(0.0, 0.96, 0.1)]
COLLAPSE_WIDTH = 0.02  # logistic width of synthetic collapses
IMAGE = 16  # pixels per synthetic sample image
ROLES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_bytes(path, df.to_csv(index=False).encode())


def _base(path: Path, kind: str, config: dict, state: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "config.json", {"kind": kind, **config})
    write_json(path / "environment.json", {"python": "3.11.0", "torch": "2.13.0", "sdprobe": "0.1.0", "cuda": None})
    write_json(path / "status.json", {"state": state, "updated": "2025-01-01T00:00:00+00:00"})


def _layer_names(component: str, n_layers: int) -> list[tuple[str, str, str]]:
    if component.startswith("text_encoder"):
        return [(f"{component}.text_model.encoder.layers.{i}.{'self_attn' if r.endswith('proj') else 'mlp'}.{r}.weight",
                 str(i), r) for i in range(n_layers) for r in ROLES]
    return [(f"{component}.down_blocks.{i}.attentions.0.transformer_blocks.0.attn2.{r}.weight", str(i), r)
            for i in range(n_layers) for r in ROLES[:4]]


def write_sweep(path: Path, method: str = "magnitude", component: str = "text_encoder", prompts: list[str] | None = None,
                n_seeds: int = 3, levels: list[float] | None = None, collapse: dict[str, float] | None = None,
                state: str = "finished", thresholds: bool = True, samples: bool = True, layers: bool = True,
                critical: bool = True, n_layers: int = 2, seed: int = 0) -> Path:
    """A sweep run. ``collapse`` maps a meaning to the sparsity where its accuracy falls (default 0.45 for all).

    With ``state="running"`` only the level files are written (no consolidated results), as in a live sweep.
    """
    rng = np.random.default_rng(seed)
    prompts = prompts or DEFAULT_PROMPTS
    levels = LEVELS if levels is None else levels
    collapse = {m: 0.45 for m in MEANINGS} | (collapse or {})
    higher = {**{m: True for m in MEANINGS}, "unreadable": False, "distance": False}
    _base(path, "sweep", {"method": method, "model": "builtin:tiny-shapes", "seed": seed,
                          "components": {component: {"selectors": [component], "offset": 0.0}},
                          "higher_is_better": higher, "generation": {"steps": 4, "guidance": 4.0},
                          "prompts": prompts}, state)
    seeds = [1000 + i for i in range(len(prompts) * n_seeds)]
    frames = []
    names = _layer_names(component, n_layers)
    numel = {n: 64 * 64 for n, _, _ in names}
    layer_rows = []
    for level in levels:
        rows = []
        for i, s in enumerate(seeds):
            prompt = prompts[i % len(prompts)]
            row = {"level": level, "sparsity_scope": level, f"sparsity_{component}": level * 0.98, "prompt": prompt,
                   "seed": s, "index": i}
            for m in MEANINGS:
                p = 0.05 + 0.9 / (1.0 + np.exp((level - collapse[m]) / COLLAPSE_WIDTH))
                row[m] = float(rng.random() < p)
                row[f"read_{m}"] = ATTRIBUTES[m][0] if row[m] else None
            row["unreadable"] = float(rng.random() < level / 2)
            row["distance"] = float(level + rng.normal(0, 0.05))
            rows.append(row)
        frame = pd.DataFrame(rows)
        frames.append(frame)
        atomic_write_bytes(path / "levels" / f"{level_name(level)}.parquet", frame.to_parquet(index=False))
        for name, block, role in names:
            layer_rows.append({"level": level, "qualified_name": name, "component": component, "region": "encoder",
                               "block": block, "role": role, "numel": numel[name],
                               "sparsity": float(np.clip(level + rng.normal(0, 0.03), 0, 1))})
    if state == "finished":
        table = pd.concat(frames, ignore_index=True)
        atomic_write_bytes(path / "results.parquet", table.to_parquet(index=False))
        _write_csv(path / "results.csv", table)
    if layers:
        _write_csv(path / "layers.csv", pd.DataFrame(layer_rows))
    if samples:
        n = len(prompts)
        write_json(path / "samples.json", {"prompts": prompts, "seeds": seeds[:n]})
        for level in levels:
            strip = rng.integers(0, 256, size=(IMAGE, IMAGE * n, 3), dtype=np.uint8)
            atomic_write_bytes(path / "samples" / f"{level_name(level)}.png", _png(strip))
    if thresholds:
        t = [{"metric": m, "kind": "sudden", "collapsed": True, "threshold": collapse[m], "ci_low": collapse[m] - 0.02,
              "ci_high": collapse[m] + 0.02, "s_lo": collapse[m] - 0.05, "s_hi": collapse[m] + 0.05, "drop": 0.85}
             for m in MEANINGS]
        t.append({"metric": "distance", "kind": "gradual", "collapsed": False, "threshold": np.nan, "ci_low": np.nan,
                  "ci_high": np.nan, "s_lo": np.nan, "s_hi": np.nan, "drop": 0.3})
        _write_csv(path / "thresholds.csv", pd.DataFrame(t))
    if critical:
        for j, m in enumerate(MEANINGS[:2]):
            write_critical(path / "critical" / m, m, names, numel, rng, collapse[m])
    return path


def write_critical(path: Path, meaning: str, names: list[tuple[str, str, str]], numel: dict[str, int],
                   rng: np.random.Generator, s: float) -> None:
    """One critical set: summary.json, weights.csv and controls.csv."""
    size = 40
    controls = rng.normal(0.02, 0.01, size=20).tolist()
    picked = rng.integers(0, len(names), size=size)
    weights = pd.DataFrame([{"qualified_name": names[k][0], "component": names[k][0].split(".")[0],
                             "module": names[k][0].rsplit(".", 1)[0], "region": "encoder", "block": names[k][1],
                             "role": names[k][2], "row": int(rng.integers(64)), "col": int(rng.integers(64)),
                             "value": float(rng.normal()), "magnitude": 0.0, "rank": int(rng.integers(1000)),
                             "score": float(rng.random())} for k in picked])
    where = (weights["component"] + "/" + weights["role"]).value_counts().to_dict()
    others = {o: float(rng.uniform(0, 0.1)) for o in MEANINGS if o != meaning}
    direction = {"n_images": 96, "effect": 0.2, "effect_images": 19.2, "ci_low": 0.1, "ci_high": 0.3, "fraction": 0.4,
                 "fraction_low": 0.2, "fraction_high": 0.6, "p_value": 1 / 201, "p_adjusted": 4 / 201,
                 "n_controls": len(controls), "control_mean": float(np.mean(controls)), "stopped_early": False,
                 "matched_p": 1 / 51, "n_matched": 50, "matched_mean": 0.01}
    write_json(path / "summary.json", {
        "meaning": meaning, "verdict": "critical", "window": {"kind": "transition", "start": s - 0.05, "stop": s + 0.05},
        "n_candidates": 5000, "size": size, "fraction_of_candidates": size / 5000, "where": {str(k): int(v) for k, v in where.items()},
        "design": {"alpha": 0.05, "tests": 4, "tests_in_family": 4, "mde": 0.09, "target_power": 0.8},
        "confirmation": {"split": "confirmation", "n_prompts": 96, "selectivity": others,
                         "necessity": {"direction": "necessity", **direction},
                         "sufficiency": {"direction": "sufficiency", **direction}},
        "search": {"split": "search", "n_prompts": 16, "bar": 0.5, "evaluations": 14, "candidate_groups": 6}})
    _write_csv(path / "weights.csv", weights)
    _write_csv(path / "controls.csv", pd.DataFrame([{"direction": d, "family": "random", "control": i, "effect": e}
                                                     for d in ("necessity", "sufficiency")
                                                     for i, e in enumerate(controls)]))


def write_bias(path: Path, state: str = "finished", seed: int = 0) -> Path:
    """A bias run: color distribution of color-less circle prompts, metrics, bias vs sparsity, critical summary."""
    rng = np.random.default_rng(seed)
    _base(path, "bias", {"probes": ["circle-color"], "model": "builtin:tiny-shapes"}, state)
    rest = (1 - PLANTED_BIAS_SHARE) / (len(COLORS) - 1)
    rows = []
    for cond, tilt in (("dense", 0.0), ("text_encoder/magnitude@0.40", 0.3), ("critical-removed", 0.6)):
        shares = np.array([PLANTED_BIAS_SHARE - tilt * 0.5 if c == PLANTED_BIAS_COLOR else rest + tilt * 0.1
                           for c in COLORS])
        shares = shares / shares.sum()
        for c, sh in zip(COLORS, shares):
            rows.append({"condition": cond, "probe": "circle-color", "attribute": "color", "value": c, "share": sh,
                         "ci_low": max(sh - 0.05, 0), "ci_high": min(sh + 0.05, 1),
                         "expected": PLANTED_BIAS_SHARE if c == PLANTED_BIAS_COLOR else rest})
    _write_csv(path / "distribution.csv", pd.DataFrame(rows))
    _write_csv(path / "metrics.csv", pd.DataFrame([
        {"condition": c, "probe": "circle-color", "metric": m, "value": rng.random(), "ci_low": 0.0, "ci_high": 1.0}
        for c in ("dense", "critical-removed") for m in ("share", "mad", "kl")]))
    _write_csv(path / "vs_sparsity.csv", pd.DataFrame([
        {"component": "text_encoder", "method": meth, "level": lv, "probe": "circle-color", "metric": m, "value": v,
         "ci_low": v - 0.05,
         "ci_high": v + 0.05}
        for meth in ("magnitude", "random") for lv in LEVELS for m in ("share", "kl")
        for v in [float(np.clip(0.8 - lv * (0.6 if meth == "magnitude" else 0.2), 0, 1))]]))
    confirmation = {"effect": 0.4, "ci_low": 0.3, "ci_high": 0.5, "p_value": 1 / 201, "n_controls": 200,
                    "control_mean": 0.01, "explicit_all_hold": True, "explicit_failing": [], "tolerance": 0.1,
                    "other_shifts": {"square": {"shift": 0.04, "ci_low": 0.01, "ci_high": 0.08}},
                    "before": {"tv": {"value": 0.63, "ci_low": 0.55, "ci_high": 0.7}},
                    "after": {"tv": {"value": 0.23, "ci_low": 0.15, "ci_high": 0.3}}}
    folder = path / "critical" / "circle"
    write_json(folder / "summary.json", {"meaning": "bias:circle-color/circle", "group": "circle", "probe": "circle-color",
                                         "size": 12, "n_candidates": 4096, "objective": "tv",
                                         "confirmation": confirmation, "p_adjusted": 1 / 201, "family_size": 1,
                                         "verdict": "debiases", "reasons": []})
    _write_csv(folder / "explicit.csv", pd.DataFrame([
        {"prompt": f"a {c} circle", "value": c, "n": 16, "accuracy": 1.0, "ci_low": 0.85, "ci_high": 1.0,
         "dense_accuracy": 1.0, "required": 0.9, "passes": True} for c in COLORS]))
    _write_csv(folder / "dose.csv", pd.DataFrame([
        {"set": name, "alpha": a, "objective": 0.63 - (0.4 * (1 - a) if name == "set" else 0.01)}
        for name in ("set", "control 0") for a in (0.0, 0.5, 1.0)]))
    return path


def write_attribution(path: Path, prompts: list[str] | None = None, state: str = "finished", seed: int = 0,
                      n_seeds: int = 1) -> Path:
    """An attribution run: token (``n_seeds`` images per prompt), neuron and weight-saliency tables."""
    rng = np.random.default_rng(seed)
    prompts = prompts or DEFAULT_PROMPTS
    _base(path, "attribution", {"method": "integrated-gradients", "model": "builtin:tiny-shapes"}, state)
    rows = []
    for p in prompts:
        for s in range(n_seeds):
            for target in ("color", "shape"):
                correct = bool(rng.random() < 0.8)
                for pos, tok in enumerate(p.split()):
                    rows.append({"prompt": p, "seed": 500 + s, "target": target, "position": pos, "token": tok,
                                 "attribution": float(rng.normal()), "top_token_correct": correct})
    _write_csv(path / "tokens.csv", pd.DataFrame(rows))
    _write_csv(path / "neurons.csv", pd.DataFrame([
        {"component": "text_encoder", "layer": f"text_model.encoder.layers.{i % 2}.mlp.fc1", "unit": i,
         "target": t, "attribution": float(rng.normal())} for t in ("color", "shape") for i in range(30)]))
    _write_csv(path / "weights.csv", pd.DataFrame([
        {"meaning": m, "qualified_name": "text_encoder.text_model.encoder.layers.0.mlp.fc1.weight", "flat_index": i,
         "saliency": float(rng.lognormal()), "in_critical_set": bool(i < 10)} for m in ("color", "shape")
        for i in range(200)]))
    _write_csv(path / "overlap.csv", pd.DataFrame([
        {"meaning": m, "k": k, "precision_at_k": float(rng.random()), "rank_overlap": 0.7, "n_candidates": 200}
        for m in ("color", "shape") for k in (1, 10, 100)]))
    return path


def write_study(path: Path, prompts: list[str] | None = None, partial: bool = False) -> Path:
    """A study: te-magnitude, te-wanda, te-random, unet-magnitude, bias and attribution.

    With ``partial=True`` the te-random sweep is still running and ``study.json`` plans a run that is not on disk.
    """
    planned = ["te-magnitude", "te-wanda", "te-random", "unet-magnitude", "bias", "attribution"]
    write_json(path / "study.json", {"model": "builtin:tiny-shapes", "runs": planned + (["joint-magnitude"] if partial else []),
                                     "state": "running" if partial else "finished"})
    write_sweep(path / "te-magnitude", "magnitude", prompts=prompts, seed=1)
    write_sweep(path / "te-wanda", "wanda", prompts=prompts, collapse={"color": 0.55}, critical=False, seed=2)
    write_sweep(path / "te-random", "random", prompts=prompts, collapse={m: 0.85 for m in MEANINGS}, critical=False,
                state="running" if partial else "finished", seed=3)
    write_sweep(path / "unet-magnitude", "magnitude", component="unet", prompts=prompts, critical=False,
                thresholds=False, seed=4)
    write_bias(path / "bias")
    write_attribution(path / "attribution", prompts=prompts)
    return path
