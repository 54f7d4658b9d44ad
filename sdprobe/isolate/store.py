"""Critical sets on disk: ``critical/<meaning>/`` of a run directory, and loading a set back.

Files of one set::

    summary.json          the evidence (see :meth:`CriticalSet.summary`)
    indices.safetensors   qualified weight name -> int64 flat indices of the set
    weights.csv           one row per weight of the set: where it lives, its value, rank and score
    controls.csv          one row per random control: its effect and the accuracy of every meaning
    evaluations.jsonl     the search's evaluation log (what makes ``sdprobe isolate`` resumable)

and, for ``sdprobe isolate --meaning all``, in ``critical/``: ``overlaps.csv`` (pairwise Jaccard overlaps),
``where.csv`` (meaning, component, role, count) and ``skipped.json`` (meanings not isolated, and why).

Example:
    >>> write_critical_set(run.path / "critical" / "color", cs)
    >>> with mask.override(prune=load_critical_set(run.path, "color")):
    ...     images = generate(pipe, prompts, seeds)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sdprobe.errors import RunError
from sdprobe.io import atomic_write_bytes, read_json, write_json
from sdprobe.isolate.critical import CriticalSet
from sdprobe.runs import CRITICAL_DIR

SUMMARY, INDICES, WEIGHTS, CONTROLS, EVALUATIONS = (
    "summary.json", "indices.safetensors", "weights.csv", "controls.csv", "evaluations.jsonl")
OVERLAPS = "overlaps.csv"  # pairwise Jaccard overlaps of the sets, in critical/
WHERE = "where.csv"  # meaning, component, role, count: where every set lives, in critical/


def set_folder(run_dir: Path, meaning: str) -> Path:
    return Path(run_dir) / CRITICAL_DIR / meaning


def weights_table(cs: CriticalSet) -> pd.DataFrame:
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


def controls_table(cs: CriticalSet) -> pd.DataFrame:
    """One row per control: ``control`` (0-based), ``effect``, and the accuracy of each meaning."""
    rows = [{"control": i, "effect": e, **acc} for i, (e, acc) in enumerate(zip(cs.control_effects, cs.control_accuracy))]
    return pd.DataFrame(rows, columns=["control", "effect", *cs.accuracy["lo"].keys()])


def write_critical_set(folder: Path, cs: CriticalSet, extra: dict | None = None) -> Path:
    """Write a set's files (atomically; the summary last, so it marks the set as complete).

    Args:
        folder (Path): ``RUN_DIR/critical/<meaning>``.
        cs (CriticalSet): the set.
        extra (dict | None): more summary keys, e.g. the options the set was made with. Default: None.

    Returns:
        Path: ``folder``.
    """
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {n: idx.to(torch.int64).contiguous() for n, idx in cs.indices().items()}
    atomic_write_bytes(folder / INDICES, save(tensors, metadata={"meaning": cs.meaning}))
    atomic_write_bytes(folder / WEIGHTS, weights_table(cs).to_csv(index=False).encode())
    atomic_write_bytes(folder / CONTROLS, controls_table(cs).to_csv(index=False).encode())
    write_json(folder / SUMMARY, {**cs.summary(), **(extra or {})})
    return folder


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
