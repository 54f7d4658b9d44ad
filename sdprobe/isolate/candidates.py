"""The universe of an isolation search: candidate weights flattened into item ids, and their group hierarchy.

A critical-set search works on *items* ``0 .. n-1``, one per candidate weight (a flat index into one weight
tensor). Items are numbered tensor by tensor, in the order the tensors were given, and by increasing flat index
inside a tensor. Groups of items form the levels of the search hierarchy:

    ``tensor``  all candidates of one weight tensor
    ``row``     all candidates of one output unit (row of the weight viewed as a matrix)
    ``column``  all candidates of one input feature (input channel for a Conv2d weight)
    ``weight``  one candidate

Example:
    >>> cands = CandidateSet.from_tensors({"unet.a.weight": torch.tensor([0, 5])}, {"unet.a.weight": (2, 4)})
    >>> [g.tolist() for g in cands.groups("row")]
    [[0], [1]]
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

LEVELS = ("tensor", "row", "column", "weight")  # valid hierarchy levels, coarsest first


def as_ids(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """Item ids as a sorted, duplicate-free int64 array (the canonical form of a subset)."""
    return np.unique(np.asarray(ids, dtype=np.int64))


@dataclass
class CandidateSet:
    """Candidate weights of a search.

    Attributes:
        names (list[str]): qualified weight names (``WeightRef.qualified_name``), one per tensor.
        shapes (list[tuple[int, ...]]): the full shape of each weight tensor.
        indices (list[torch.LongTensor]): sorted flat indices of the candidates in each tensor.
        prior (np.ndarray): (n,) float, the cheap prior of each item; higher = more likely critical
            (e.g. the pruning score, ``|W|`` or Wanda's ``|W| * ||X||``). Default: all zeros (item order).
        values (np.ndarray | None): (n,) the original weight values, for ``weights.csv``. Default: None.
        info (dict[str, dict]): per tensor name, where it lives (``sdprobe.architecture.describe`` plus
            ``module``). Default: the component read from the name.
    """

    names: list[str]
    shapes: list[tuple[int, ...]]
    indices: list[torch.Tensor]
    prior: np.ndarray | None = None
    values: np.ndarray | None = None
    info: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (len(self.names) == len(self.shapes) == len(self.indices)):
            raise ValueError(f"got {len(self.names)} names, {len(self.shapes)} shapes and {len(self.indices)} index tensors")
        if len(set(self.names)) != len(self.names):
            raise ValueError("tensor names must be unique")
        self.shapes = [tuple(int(d) for d in s) for s in self.shapes]
        self.indices = [torch.as_tensor(i, dtype=torch.long).flatten().sort().values for i in self.indices]
        for name, shape, idx in zip(self.names, self.shapes, self.indices):
            if len(idx) and (int(idx[0]) < 0 or int(idx[-1]) >= math.prod(shape)):
                raise ValueError(f"flat indices of {name} fall outside its shape {shape}")
            if len(idx) != len(torch.unique(idx)):
                raise ValueError(f"flat indices of {name} repeat an entry")
        counts = np.array([len(i) for i in self.indices], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (T+1,) item id ranges per tensor
        self.tensor_of = np.repeat(np.arange(len(self.names)), counts)  # (n,) tensor of each item
        self.flat = (torch.cat(self.indices).numpy() if self.n else np.zeros(0)).astype(np.int64)  # (n,) flat index
        self.prior = np.zeros(self.n) if self.prior is None else np.asarray(self.prior, dtype=np.float64)
        if self.prior.shape != (self.n,):
            raise ValueError(f"prior has shape {self.prior.shape}, expected ({self.n},)")
        if self.values is not None:
            self.values = np.asarray(self.values, dtype=np.float64)
            if self.values.shape != (self.n,):
                raise ValueError(f"values has shape {self.values.shape}, expected ({self.n},)")
        self.info = {n: {"component": n.split(".")[0], **self.info.get(n, {})} for n in self.names}

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_tensors(cls, candidates: Mapping[str, torch.Tensor], shapes: Mapping[str, Sequence[int]],
                     prior: Mapping[str, torch.Tensor] | None = None, weights: Mapping[str, torch.Tensor] | None = None,
                     info: Mapping[str, dict] | None = None) -> "CandidateSet":
        """Build from per-tensor flat indices (e.g. ``ProgressiveMask.candidates(s_lo, s_hi)``).

        Args:
            candidates (Mapping[str, LongTensor]): qualified name -> flat indices; empty tensors are dropped.
            shapes (Mapping[str, Sequence[int]]): qualified name -> full weight shape.
            prior (Mapping[str, Tensor] | None): qualified name -> score tensor of the weight's shape (higher =
                more likely critical). Default: None (all items equal; the search keeps item order).
            weights (Mapping[str, Tensor] | None): qualified name -> original weight values, for reporting.
            info (Mapping[str, dict] | None): qualified name -> location (component, module, region, block, role).

        Returns:
            CandidateSet: items in the order of ``candidates``.
        """
        names = [n for n, idx in candidates.items() if len(idx)]
        missing = [n for n in names if n not in shapes]
        if missing:
            raise ValueError(f"no shape given for {', '.join(missing)}")
        idx = [torch.as_tensor(candidates[n], dtype=torch.long).flatten().sort().values for n in names]

        def gather(source: Mapping[str, torch.Tensor] | None) -> np.ndarray | None:
            if source is None:
                return None
            parts = [source[n].detach().flatten()[i.to(source[n].device)].double().cpu().numpy() for n, i in zip(names, idx)]
            return np.concatenate(parts) if parts else np.zeros(0)

        return cls(names, [tuple(shapes[n]) for n in names], idx, prior=gather(prior), values=gather(weights),
                   info=dict(info or {}))

    # -- sizes and lookup ---------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of candidate weights (items)."""
        return int(self.offsets[-1])

    def all_ids(self) -> np.ndarray:
        return np.arange(self.n, dtype=np.int64)

    def tensor_ids(self, t: int) -> np.ndarray:
        """Item ids of tensor ``t``."""
        return np.arange(self.offsets[t], self.offsets[t + 1], dtype=np.int64)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row (output unit) of each item."""
        per_row = np.array([math.prod(s[1:]) for s in self.shapes], dtype=np.int64)
        return self.flat[ids] // per_row[self.tensor_of[ids]]

    def columns(self, ids: np.ndarray) -> np.ndarray:
        """Column (input feature; input channel of a Conv2d kernel) of each item."""
        ins = np.array([s[1] if len(s) > 1 else 1 for s in self.shapes], dtype=np.int64)
        kernel = np.array([math.prod(s[2:]) for s in self.shapes], dtype=np.int64)
        t = self.tensor_of[ids]
        return (self.flat[ids] // kernel[t]) % ins[t]

    # -- hierarchy ----------------------------------------------------------------------------------------------
    def groups(self, level: str, within: np.ndarray | None = None) -> list[np.ndarray]:
        """Partition items into the groups of one hierarchy level, most promising first.

        Args:
            level (str): one of ``tensor``, ``row``, ``column``, ``weight``.
            within (np.ndarray | None): restrict to these item ids. Default: all items.

        Returns:
            list[np.ndarray]: sorted item ids of each group, ordered by the group's highest prior (descending),
            ties by the group's first item.
        """
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; valid: {', '.join(LEVELS)}")
        ids = self.all_ids() if within is None else as_ids(within)
        if len(ids) == 0:
            return []
        t = self.tensor_of[ids]
        sub = {"tensor": np.zeros_like(ids), "row": self.rows(ids) if level == "row" else None,
               "column": self.columns(ids) if level == "column" else None, "weight": ids}[level]
        order = np.lexsort((ids, sub, t))  # by tensor, then sub-group, then item
        ids, keys = ids[order], np.stack([t[order], sub[order]], axis=1)
        starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
        groups = np.split(ids, starts[1:])
        best = np.array([self.prior[g].max() for g in groups])
        first = np.array([g[0] for g in groups])
        return [groups[i] for i in np.lexsort((first, -best))]

    # -- conversion ---------------------------------------------------------------------------------------------
    def to_dict(self, ids: Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        """Item ids -> ``{qualified name: LongTensor of flat indices}`` (tensors without items are left out)."""
        ids = as_ids(ids)
        out = {}
        for t in np.unique(self.tensor_of[ids]):
            mine = ids[self.tensor_of[ids] == t]
            out[self.names[t]] = torch.from_numpy(self.flat[mine].copy())
        return out

    def from_dict(self, subset: Mapping[str, torch.Tensor]) -> np.ndarray:
        """``{qualified name: flat indices}`` -> item ids; every entry must be a candidate."""
        ids = []
        for name, flat in subset.items():
            if name not in self.names:
                raise ValueError(f"{name} has no candidate weights in this set")
            t = self.names.index(name)
            mine = self.flat[self.offsets[t]:self.offsets[t + 1]]
            flat = np.asarray(torch.as_tensor(flat).cpu().numpy(), dtype=np.int64)
            pos = np.searchsorted(mine, flat)
            ok = (pos < len(mine)) & (mine[np.minimum(pos, len(mine) - 1)] == flat)
            if not ok.all():
                raise ValueError(f"{int((~ok).sum())} indices of {name} are not candidates")
            ids.append(pos + self.offsets[t])
        return as_ids(np.concatenate(ids)) if ids else np.zeros(0, dtype=np.int64)

    def per_tensor_counts(self, ids: np.ndarray) -> dict[int, int]:
        """Number of items of ``ids`` in each tensor (tensor position -> count)."""
        t, c = np.unique(self.tensor_of[as_ids(ids)], return_counts=True)
        return {int(a): int(b) for a, b in zip(t, c)}

    def fingerprint(self) -> str:
        """A hash of the names, shapes and candidate indices: equal iff two sets number the same weights alike."""
        h = hashlib.sha256()
        for name, shape, idx in zip(self.names, self.shapes, self.indices):
            h.update(f"{name}:{shape}:".encode())
            h.update(idx.numpy().astype("<i8").tobytes())
        return h.hexdigest()
