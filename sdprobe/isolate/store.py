"""Critical sets on disk: ``critical/<meaning>/`` of a run directory, and loading a set back.

Files of one set::

    summary.json          the evidence, each number under the split it comes from (see CriticalSet.summary)
    set.json              the shareable weight-set file (format: sdprobe.evidence.setfile)
    indices.safetensors   qualified weight name -> int64 flat indices of the set
    weights.csv           one row per weight of the set: where it lives, its value, rank and score
    controls.csv          one row per control: direction, family (random, matched), effect
    search.jsonl          the search split's evaluation log (what makes ``sdprobe isolate`` resumable)
    confirmation.jsonl    the confirmation split's per-image evaluation log

and, in ``critical/``: ``tests.csv`` (every test of the run with its raw and Holm-adjusted p and the verdicts),
``overlaps.csv`` (pairwise Jaccard overlaps), ``where.csv`` (meaning, component, role, count) and
``skipped.json`` (meanings with no set found on the search split, and why).

Example:
    >>> write_critical_set(run.path / "critical" / "color", cs, set_file)
    >>> with mask.override(prune=load_critical_set(run.path, "color")):
    ...     images = generate(pipe, prompts, seeds)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sdprobe.errors import RunError
from sdprobe.evidence import DIRECTIONS, WeightSet, holm, read_set_file, write_set_file
from sdprobe.io import atomic_write_bytes, read_json, write_json
from sdprobe.isolate.critical import verdict_of as _verdict
from sdprobe.runs import CRITICAL_DIR

SUMMARY, SET_FILE, INDICES, WEIGHTS, CONTROLS = (
    "summary.json", "set.json", "indices.safetensors", "weights.csv", "controls.csv")
SEARCH_LOG, CONFIRM_LOG = "search.jsonl", "confirmation.jsonl"
TESTS = "tests.csv"  # every (meaning, direction) test of the run, raw and adjusted p, in critical/
OVERLAPS = "overlaps.csv"  # pairwise Jaccard overlaps of the sets, in critical/
WHERE = "where.csv"  # meaning, component, role, count: where every set lives, in critical/


def set_folder(run_dir: Path, meaning: str) -> Path:
    return Path(run_dir) / CRITICAL_DIR / meaning


def weights_table(cs) -> pd.DataFrame:
    """One row per weight of the set: qualified_name, component, module, region, block, role, row, col (the
    weight viewed as a matrix: out x rest), value, magnitude, rank (of ``|value|`` among all candidates,
    0 = smallest), score (the search prior)."""
    cands, ids = cs.candidates, cs.ids
    values = cands.values if cands.values is not None else np.full(cands.n, np.nan)
    magnitude = np.abs(values)
    rank = np.empty(cands.n, dtype=np.int64)
    rank[np.argsort(magnitude, kind="stable")] = np.arange(cands.n)
    per_row = np.array([int(np.prod(s[1:])) for s in cands.shapes], dtype=np.int64)[cands.tensor_of[ids]]
    names = [cands.names[t] for t in cands.tensor_of[ids]]
    info = [cands.info[n] for n in names]
    return pd.DataFrame({
        "qualified_name": names,
        "component": [i["component"] for i in info],
        "module": [i.get("module", n.split(".", 1)[-1].removesuffix(".weight")) for i, n in zip(info, names)],
        "region": [i.get("region", "other") for i in info],
        "block": [i.get("block", -1) for i in info],
        "role": [i.get("role", "other") for i in info],
        "row": cands.flat[ids] // per_row,
        "col": cands.flat[ids] % per_row,
        "value": values[ids],
        "magnitude": magnitude[ids],
        "rank": rank[ids],
        "score": cands.prior[ids],
    })


def controls_table(cs) -> pd.DataFrame:
    """One row per control: ``direction``, ``family`` (random, matched), ``control`` (0-based), ``effect``."""
    rows = [{"direction": d, "family": fam, "control": i, "effect": e}
            for d, r in cs.confirmation.items()
            for fam, effects in (("random", r.control_effects), ("matched", r.matched_effects))
            for i, e in enumerate(effects)]
    return pd.DataFrame(rows, columns=["direction", "family", "control", "effect"])


def write_critical_set(folder: Path, cs, set_file: WeightSet, extra: dict | None = None) -> Path:
    """Write a set's files (atomically; the summary last, so it marks the set as complete).

    Args:
        folder (Path): ``RUN_DIR/critical/<meaning>``.
        cs (CriticalSet): the set with its evidence.
        set_file (WeightSet): its shareable description (written as ``set.json``).
        extra (dict | None): more summary keys, e.g. the options the set was made with. Default: None.
    """
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {n: idx.to(torch.int64).contiguous() for n, idx in cs.indices().items()}
    atomic_write_bytes(folder / INDICES, save(tensors, metadata={"meaning": cs.meaning}))
    atomic_write_bytes(folder / WEIGHTS, weights_table(cs).to_csv(index=False).encode())
    atomic_write_bytes(folder / CONTROLS, controls_table(cs).to_csv(index=False).encode())
    write_set_file(folder / SET_FILE, set_file)
    write_json(folder / SUMMARY, {**cs.summary(), **(extra or {})})
    return folder


def verdict_of(summary: dict) -> str:
    """The verdict of a saved summary (see :func:`sdprobe.isolate.critical.verdict_of`)."""
    return _verdict(summary.get("confirmation", {}), summary.get("design", {}).get("alpha", 0.05))


def adjust_family(run_dir: Path) -> pd.DataFrame:
    """Holm–Bonferroni over every (meaning x direction) test saved in the run; rewrites each set's adjusted p and
    verdict (summary and set file) and ``critical/tests.csv``.

    Returns:
        pandas.DataFrame: meaning, direction, effect, ci_low, ci_high, p_value, p_adjusted, verdict.
    """
    meanings = saved_meanings(run_dir)
    summaries = {m: read_json(set_folder(run_dir, m) / SUMMARY) for m in meanings}
    keys = [(m, d) for m in meanings for d in DIRECTIONS if d in summaries[m].get("confirmation", {})]
    raw = [summaries[m]["confirmation"][d]["p_value"] for m, d in keys]
    adjusted = holm([float("nan") if p is None else p for p in raw])
    for (m, d), p in zip(keys, adjusted):
        summaries[m]["confirmation"][d]["p_adjusted"] = p
    rows = []
    for m in meanings:
        s = summaries[m]
        s["verdict"] = verdict_of(s)
        s["design"]["tests_in_family"] = len(keys)
        write_json(set_folder(run_dir, m) / SUMMARY, s)
        path = set_folder(run_dir, m) / SET_FILE
        if path.exists():
            ws = read_set_file(path)
            ws.verdict, ws.evidence = s["verdict"], evidence_of(s)
            write_set_file(path, ws)
        for d in DIRECTIONS:
            c = s.get("confirmation", {}).get(d)
            if c:
                rows.append({"meaning": m, "direction": d, "effect": c["effect"], "ci_low": c["ci_low"],
                             "ci_high": c["ci_high"], "fraction": c["fraction"], "p_value": c["p_value"],
                             "p_adjusted": c["p_adjusted"], "n_controls": c["n_controls"],
                             "matched_p": c["matched_p"], "verdict": s["verdict"]})
    table = pd.DataFrame(rows, columns=["meaning", "direction", "effect", "ci_low", "ci_high", "fraction", "p_value",
                                        "p_adjusted", "n_controls", "matched_p", "verdict"])
    atomic_write_bytes(Path(run_dir) / CRITICAL_DIR / TESTS, table.to_csv(index=False).encode())
    return table


def evidence_of(summary: dict) -> dict:
    """The part of a summary a set file carries: design, confirmation numbers, search diagnostics."""
    conf = {k: v for k, v in summary.get("confirmation", {}).items()}
    for d in DIRECTIONS:
        if d in conf:
            conf[d] = {k: v for k, v in conf[d].items() if k not in ("control_effects", "matched_effects")}
    search = {k: v for k, v in summary.get("search", {}).items() if k != "steps"}
    return {"design": summary.get("design", {}), "confirmation": conf, "search": search}


def load_critical_set(run_dir: Path, meaning: str) -> dict[str, torch.Tensor]:
    """The weights of a saved critical set, as ``{qualified name: LongTensor of flat indices}``.

    Args:
        run_dir (Path): the sweep run directory.
        meaning (str): e.g. ``"color"``.

    Returns:
        dict[str, torch.Tensor]: pass it to ``ProgressiveMask.override(prune=...)`` (split per component when a
        run prunes several components) to remove the set, or ``restore=...`` to bring it back.

    Raises:
        RunError: the run has no complete set for ``meaning`` (the message lists the sets it has).
    """
    from safetensors.torch import load_file

    folder = set_folder(run_dir, meaning)
    if not (folder / SUMMARY).exists() or not (folder / INDICES).exists():
        have = saved_meanings(run_dir)
        raise RunError(f"{run_dir} has no critical set for {meaning!r} (it has: {', '.join(have) or 'none'}); "
                       f"run `sdprobe isolate {run_dir} --meaning {meaning}` first")
    return {n: t.to(torch.long) for n, t in load_file(folder / INDICES).items()}


def load_summary(run_dir: Path, meaning: str) -> dict:
    return read_json(set_folder(run_dir, meaning) / SUMMARY)


def saved_meanings(run_dir: Path) -> list[str]:
    """Meanings with a complete critical set in ``run_dir``."""
    root = Path(run_dir) / CRITICAL_DIR
    return sorted(p.name for p in root.iterdir() if (p / SUMMARY).exists()) if root.exists() else []


def split_by_component(subset: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{qualified name: idx}`` -> ``{component: {qualified name: idx}}`` (one override per component mask)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, idx in subset.items():
        out.setdefault(name.split(".")[0], {})[name] = idx
    return out
