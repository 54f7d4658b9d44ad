"""Weight saliency |W * dscore/dW| and its agreement with a critical weight set.

Saliency is the first-order estimate of how much a score changes when a weight is removed (set to zero):
score(W) - score(W with w_ij = 0) ~ w_ij * dscore/dw_ij. Its absolute value ranks weights by importance.
Papers: Molchanov et al., "Pruning Convolutional Neural Networks for Resource Efficient Inference"
(Taylor criterion), https://arxiv.org/abs/1611.06440; Lee et al., "SNIP", https://arxiv.org/abs/1810.02340

The comparison asks whether the weights a pruning experiment found critical (``critical/<meaning>/
indices.safetensors``: qualified name -> int64 flat indices) are the ones saliency ranks highest among the
same candidates: precision at K = |critical set| and the ROC AUC of saliency for membership (0.5 = chance).

Memory: one gradient tensor per selected weight (the size of those weights) plus one backward pass through
the trajectory per batch of prompts.

Example:
    >>> sal = weight_saliency(score, select(pipe, "text_encoder.mlp"), prompts, seeds)
    >>> metrics = compare_with_critical(sal, load_indices(run / "critical/color/indices.safetensors"), candidates)
    >>> sorted(metrics)
    ['chance', 'k', 'n_candidates', 'precision_at_k', 'rank_overlap']
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from tqdm.auto import tqdm

from sdprobe.architecture import WeightRef
from sdprobe.attribution.score import MeaningScore

SALIENCY_KINDS = ("abs", "signed")


def weight_saliency(score: MeaningScore, refs: Sequence[WeightRef], prompts: Sequence[str], seeds: Sequence[int],
                    values: Sequence[str] | None = None, batch_prompts: int = 4, kind: str = "abs",
                    progress: bool = True) -> dict[str, torch.Tensor]:
    """Saliency of every weight in ``refs`` for the summed score over prompts.

    Args:
        score (MeaningScore): the meaning score.
        refs (Sequence[WeightRef]): weights to score (from :func:`sdprobe.architecture.select`).
        prompts (Sequence[str]): N prompts; seeds (Sequence[int]): N seeds.
        values (Sequence[str], optional): N target values. Default: the value the head reads from each output.
        batch_prompts (int): prompts per backward pass. Default: 4.
        kind (str): ``"abs"`` for |W * grad| or ``"signed"`` for W * grad (the first-order score drop when the
            weight is removed). Default: ``"abs"``.
        progress (bool): show a progress bar. Default: ``True``.

    Returns:
        dict[str, torch.Tensor]: qualified name -> saliency with the weight's shape (CPU, float32).

    The weights are not changed and their ``.grad`` is left untouched (gradients come from ``torch.autograd.grad``).
    """
    if kind not in SALIENCY_KINDS:
        raise ValueError(f"unknown saliency kind {kind!r}; valid: {', '.join(SALIENCY_KINDS)}")
    if len(prompts) != len(seeds):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per prompt")
    traj = score.trajectory
    params = [r.weight for r in refs]
    flags = [p.requires_grad for p in params]
    grads = [torch.zeros_like(p, dtype=torch.float32, device="cpu") for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        for start in tqdm(range(0, len(prompts), batch_prompts), desc="saliency", disable=not progress):
            ids = traj.tokenize(prompts[start : start + batch_prompts])
            noise = traj.noise(seeds[start : start + batch_prompts])
            v = list(values[start : start + len(ids)]) if values is not None else score.predict(ids, noise)
            total = score(ids, noise, score.value_index(v)).sum()
            for acc, g in zip(grads, torch.autograd.grad(total, params, allow_unused=True)):
                if g is not None:
                    acc += g.detach().float().cpu()
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    out = {}
    for r, g in zip(refs, grads):
        s = r.weight.detach().float().cpu() * g
        out[r.qualified_name] = s.abs() if kind == "abs" else s
    return out


def load_indices(path: Path) -> dict[str, torch.Tensor]:
    """Read ``indices.safetensors`` (qualified name -> int64 flat indices) of a critical set."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no critical set at {path}; find one with `sdprobe isolate`")
    return {k: v.long() for k, v in load_file(str(path)).items()}


def _flatten(saliency: Mapping[str, torch.Tensor], chosen: Mapping[str, torch.Tensor]) -> tuple[np.ndarray, list]:
    parts, keys = [], []
    for name, idx in chosen.items():
        if name not in saliency:
            raise ValueError(f"{name} has candidates but no saliency; saliency covers: {', '.join(saliency)}")
        flat = saliency[name].reshape(-1)
        parts.append(flat[idx.long()].numpy())
        keys += [(name, int(i)) for i in idx.tolist()]
    return (np.concatenate(parts) if parts else np.zeros(0)), keys


def compare_with_critical(saliency: Mapping[str, torch.Tensor], critical: Mapping[str, torch.Tensor],
                          candidates: Mapping[str, torch.Tensor]) -> dict:
    """How well saliency finds a critical set among its candidates.

    Args:
        saliency (Mapping[str, Tensor]): qualified name -> saliency (any shape; read flat).
        critical (Mapping[str, Tensor]): qualified name -> int64 flat indices of the critical set.
        candidates (Mapping[str, Tensor]): qualified name -> int64 flat indices of the candidates the set was
            chosen from (must contain the critical set).

    Returns:
        dict: ``k`` (critical set size), ``precision_at_k`` (share of the K most salient candidates that are
        critical; chance = k / n_candidates), ``rank_overlap`` (ROC AUC of saliency for membership: the
        probability that a critical weight outranks a non-critical candidate, ties half), ``chance``,
        ``n_candidates``.

    Raises:
        ValueError: a critical weight that is not a candidate, or an empty set.

    Example:
        >>> compare_with_critical({"w": torch.tensor([3., 2., 1.])}, {"w": torch.tensor([0])},
        ...                       {"w": torch.tensor([0, 1, 2])})["precision_at_k"]
        1.0
    """
    values, keys = _flatten(saliency, candidates)
    position = {k: i for i, k in enumerate(keys)}
    member = np.zeros(len(keys), dtype=bool)
    for name, idx in critical.items():
        for i in idx.tolist():
            j = position.get((name, int(i)))
            if j is None:
                raise ValueError(f"critical weight {name}[{i}] is not among the candidates")
            member[j] = True
    k, n = int(member.sum()), len(keys)
    if k == 0 or k == n:
        raise ValueError(f"need a non-empty critical set smaller than the candidates; got {k} of {n}")
    order = np.argsort(-values, kind="stable")
    precision = float(member[order[:k]].mean())
    ranks = rankdata(values)  # average ranks for ties
    auc = float((ranks[member].sum() - k * (k + 1) / 2) / (k * (n - k)))
    return {"k": k, "precision_at_k": precision, "rank_overlap": auc, "chance": k / n, "n_candidates": n}


def saliency_table(saliency: Mapping[str, torch.Tensor], critical: Mapping[str, torch.Tensor] | None,
                   meaning: str, top: int) -> pd.DataFrame:
    """The ``top`` most salient weights of each tensor plus every critical one: ``meaning, qualified_name, flat_index,
    saliency, in_critical_set``."""
    names, flats, vals = [], [], []
    for name, s in saliency.items():
        flat = s.reshape(-1)
        keep = set(torch.topk(flat, min(top, flat.numel())).indices.tolist())
        if critical is not None and name in critical:
            keep |= set(critical[name].tolist())
        for i in sorted(keep):
            names.append(name)
            flats.append(i)
            vals.append(float(flat[i]))
    crit = {(n, int(i)) for n, idx in (critical or {}).items() for i in idx.tolist()}
    table = pd.DataFrame({"meaning": meaning, "qualified_name": names, "flat_index": flats, "saliency": vals})
    table["in_critical_set"] = [(n, i) in crit for n, i in zip(names, flats)]
    return table.sort_values("saliency", ascending=False).reset_index(drop=True)
