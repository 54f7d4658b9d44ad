"""Comparison groups: which entries of a weight compete for pruning, and how many are pruned at a level.

A weight of ``numel`` entries is viewed as a ``(G, L)`` matrix of G groups of L entries each; at per-tensor
fraction ``f`` the ``floor(f * L)`` lowest-scoring entries of *every* group are pruned.

    ``"matrix"``  one group per tensor (G=1, L=numel): a threshold per weight matrix (the SD2 study).
    ``"row"``     one group per output unit (G=rows): Wanda's per-output comparison.
    ``"nm:M"``    M consecutive input weights of a row (L=M): N:M semi-structured sparsity.
    ``"global"``  one group per tensor, with per-tensor fractions set by a single threshold across all
                  tensors (see :func:`global_counts`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

GROUP_KINDS = ("matrix", "row", "global", "nm:M")
FLOOR_SLACK = 1e-6  # absorbs binary rounding of decimal levels before flooring, e.g. 0.29 * 100 = 28.999999999999996
INT16_MAX = torch.iinfo(torch.int16).max


@dataclass(frozen=True)
class Group:
    """A parsed comparison group: ``kind`` in matrix/row/global/nm and ``m`` for N:M."""

    kind: str
    m: int = 0

    def shape(self, weight: torch.Tensor, name: str) -> tuple[int, int]:
        """``(G, L)``: the number of groups and entries per group of ``weight``."""
        numel, rows = weight.numel(), weight.shape[0]
        if self.kind in ("matrix", "global"):
            return 1, numel
        if self.kind == "row":
            return rows, numel // rows
        if (numel // rows) % self.m:
            raise ValueError(f"{name} has rows of {numel // rows} weights, not a multiple of M={self.m} "
                             f"(group nm:{self.m})")
        return numel // self.m, self.m


def parse_group(group: str) -> Group:
    """Parse ``"matrix"``, ``"row"``, ``"global"`` or ``"nm:M"`` (M an integer >= 2)."""
    if group in ("matrix", "row", "global"):
        return Group(group)
    if isinstance(group, str) and group.startswith("nm:") and group[3:].isdigit() and int(group[3:]) >= 2:
        return Group("nm", int(group[3:]))
    raise ValueError(f"unknown comparison group {group!r}; valid: {', '.join(GROUP_KINDS)} (M an integer >= 2)")


def count(fraction: float, length: int) -> int:
    """How many of ``length`` entries a fraction prunes: ``floor(fraction * length)``."""
    return min(length, int(math.floor(fraction * length + FLOOR_SLACK)))


def index_dtype(length: int) -> torch.dtype:
    """The smallest dtype that holds column indices of a group of ``length`` entries."""
    return torch.int16 if length <= INT16_MAX + 1 else torch.int32


def sortable_keys(values: torch.Tensor) -> torch.Tensor:
    """Map float32 values to int32 keys with the same order (for an exact threshold search)."""
    bits = values.float().contiguous().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def ascending_order(scores: torch.Tensor, kmax: int | None = None) -> torch.Tensor:
    """The stable ascending order of each row of ``scores`` (G, L), its first ``kmax`` columns (G, kmax).

    A single row on the CPU (a per-matrix or per-tensor group) is sorted as int32 keys that order like the floats
    (:func:`sortable_keys`; ``-0.0`` is first made ``0.0``, which compares equal to it). torch sorts a 1-D integer
    tensor stably with a parallel radix sort, so the one-off sort uses every core, where a float row sorts on one.
    Several rows (per-row groups) are sorted in parallel across rows; CUDA tensors keep the device's own sort.
    Both give the same order as ``torch.argsort(scores, dim=1, stable=True)``.
    """
    kmax = scores.shape[1] if kmax is None else kmax
    if scores.shape[0] == 1 and scores.device.type == "cpu":
        keys = sortable_keys(scores.reshape(-1) + 0.0)
        return torch.sort(keys, stable=True).indices[:kmax].reshape(1, -1)
    return torch.argsort(scores, dim=1, stable=True)[:, :kmax]


GATHER_CHUNK = 1 << 22  # entries per task of a parallel gather


def gather_rows(matrix: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``matrix.gather(1, order)``, with the single row of a per-matrix group read by every torch thread.

    Reading a weight in sorted order is random access, which torch does on one thread; split into chunks, the
    reads run in parallel (torch releases the GIL), and the result is the same.
    """
    threads = torch.get_num_threads()
    if matrix.shape[0] != 1 or matrix.device.type != "cpu" or threads < 2 or order.numel() < 2 * GATHER_CHUNK:
        return matrix.gather(1, order)
    from concurrent.futures import ThreadPoolExecutor

    src, idx = matrix.reshape(-1), order.reshape(-1)
    out = torch.empty(idx.numel(), dtype=matrix.dtype)
    bounds = [(a, min(a + GATHER_CHUNK, idx.numel())) for a in range(0, idx.numel(), GATHER_CHUNK)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda ab: torch.index_select(src, 0, idx[ab[0]:ab[1]], out=out[ab[0]:ab[1]]), bounds))
    return out.reshape(1, -1)


def global_counts(keys: list[torch.Tensor], rank: int) -> list[int]:
    """Per-tensor counts of the ``rank`` lowest entries across all tensors.

    The global order is (score, tensor position, position in the tensor's sorted order), so ties are broken
    deterministically and the counts are non-decreasing in ``rank`` (masks stay nested).

    Args:
        keys (list[torch.Tensor]): each tensor's ascending int32 score keys (:func:`sortable_keys`); a prefix
            suffices if it holds all entries up to the largest rank asked for.
        rank (int): how many entries are pruned in all.

    Returns:
        list[int]: how many of those lie in each tensor.
    """
    if rank <= 0:
        return [0] * len(keys)
    nonempty = [k for k in keys if k.numel()]
    lo, hi = min(int(k[0]) for k in nonempty), max(int(k[-1]) for k in nonempty)
    while lo < hi:  # smallest key x with at least `rank` entries <= x
        mid = (lo + hi) // 2
        probe = torch.tensor([mid], dtype=torch.int32)
        le = sum(int(torch.searchsorted(k, probe.to(k.device), right=True)) for k in keys)
        lo, hi = (lo, mid) if le >= rank else (mid + 1, hi)
    x = torch.tensor([lo], dtype=torch.int32)
    less = [int(torch.searchsorted(k, x.to(k.device))) for k in keys]
    equal = [int(torch.searchsorted(k, x.to(k.device), right=True)) - n for k, n in zip(keys, less)]
    left = rank - sum(less)
    out = []
    for n, e in zip(less, equal):
        take = min(e, left)
        out.append(n + take)
        left -= take
    return out
