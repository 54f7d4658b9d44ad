"""The per-tensor state of a progressive mask: sorted positions and the original values they hold."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdprobe.architecture import WeightRef
from sdprobe.prune.layout import Group, ascending_order, gather_rows, index_dtype
from sdprobe.prune.storage import MemorySlab, OffloadFile, Slab, sort_device

_EMPTY = MemorySlab(torch.empty(0, 1))
CHUNK_ENTRIES = 1 << 20  # entries moved per step, so a large move's temporaries stay a few MiB


@dataclass(eq=False)
class TensorState:
    """The state of one weight under a mask; the weight is viewed as ``(groups, length)``.

    ``order`` and ``values`` are level-major ``(kmax, groups)`` slabs (see :mod:`sdprobe.prune.storage`): row
    ``i`` holds every group's ``i``-th lowest-scoring position and its original value.
    """

    ref: WeightRef
    groups: int
    length: int
    order: Slab  # (kmax, groups) positions in each group, lowest score first
    values: Slab  # (kmax, groups) original values at those positions
    keys: Slab | None  # (1, kmax) sorted int32 score keys ("global" only)
    k: int = 0  # entries pruned per group now
    high: int = 0  # most entries per group pruned since entry

    @property
    def name(self) -> str:
        return self.ref.qualified_name

    @property
    def kmax(self) -> int:
        return self.order.shape[0]

    @property
    def nbytes(self) -> int:
        return self.order.nbytes + self.values.nbytes + (self.keys.nbytes if self.keys is not None else 0)

    def matrix(self) -> torch.Tensor:
        return self.ref.weight.data.view(self.groups, self.length)

    def cols(self, start: int, stop: int) -> torch.Tensor:
        """Positions ``start:stop`` of every group, ``(groups, n)`` long on the weight's device."""
        rows = self.order.rows(start, stop).to(self.ref.weight.device, non_blocking=True)  # narrow ints cross over
        return rows.long().t()

    def vals(self, start: int, stop: int) -> torch.Tensor:
        """Original values at positions ``start:stop`` of every group, ``(groups, n)`` on the weight's device."""
        return self.values.rows(start, stop).to(device=self.ref.weight.device, non_blocking=True).t()

    def _chunks(self, start: int, stop: int):
        rows = max(1, CHUNK_ENTRIES // self.groups)
        return ((a, min(a + rows, stop)) for a in range(start, stop, rows))

    def prune(self, start: int, stop: int) -> None:
        """Zero sorted positions ``start:stop`` of every group."""
        for a, b in self._chunks(start, stop):
            self.matrix().scatter_(1, self.cols(a, b), 0.0)

    def unprune(self, start: int, stop: int) -> None:
        """Write back the original values of sorted positions ``start:stop`` of every group."""
        for a, b in self._chunks(start, stop):
            self.matrix().scatter_(1, self.cols(a, b), self.vals(a, b))

    def flat_indices(self, start: int, stop: int) -> torch.Tensor:
        """Flat indices into the weight of sorted positions ``start:stop`` of every group, (groups * n,)."""
        offsets = torch.arange(self.groups, device=self.ref.weight.device).unsqueeze(1) * self.length
        return (self.cols(start, stop) + offsets).reshape(-1)

    def sorted_keys(self) -> torch.Tensor:
        """The ascending score keys of the first ``kmax`` entries ("global" only)."""
        return self.keys.array().reshape(-1)

    @classmethod
    def layout(cls, ref: WeightRef, group: Group) -> "TensorState":
        """A shape-only state (nothing sorted or stored yet)."""
        return cls(ref, *group.shape(ref.weight, ref.qualified_name), _EMPTY, _EMPTY, None)

    @classmethod
    @torch.no_grad()
    def sorted(cls, ref: WeightRef, group: Group, scores: torch.Tensor, kmax: int, keys: torch.Tensor | None,
               store: str | torch.device | None, offload: OffloadFile | None = None) -> "TensorState":
        """Sort ``scores`` within each group once and keep the first ``kmax`` positions and their values.

        Args:
            ref (WeightRef): the weight.
            group (Group): the comparison group.
            scores (torch.Tensor): the weight's scores, same shape.
            kmax (int): entries per group prunable up to the mask's highest level.
            keys (torch.Tensor | None): sorted score keys to keep ("global" only).
            store (str | torch.device | None): where to keep positions and values: ``None`` beside the weight,
                a device (host copies of CUDA weights are pinned), or ``"disk"`` (then ``offload`` is the file).
            offload (OffloadFile | None): the file of the ``"disk"`` store.
        """
        t = cls.layout(ref, group)
        where = sort_device(store, ref.weight.device)  # sorting where the result is kept spares the device
        order = ascending_order(scores.reshape(t.groups, t.length).to(where), kmax)  # (G, kmax)
        values = gather_rows(t.matrix().to(where), order)  # (G, kmax), in the weight's dtype
        order = order.to(index_dtype(t.length))
        arrays = [order.t(), values.t()] + ([] if keys is None else [keys.reshape(1, -1).clone()])  # level-major
        del order, values
        if store == "disk":
            slabs = [offload.put(a) for a in arrays]
        else:
            if store is not None:
                pin = store.type == "cpu" and ref.weight.is_cuda
                arrays = [a.to(store).pin_memory() if pin else a.to(store) for a in arrays]
            slabs = [MemorySlab(a) for a in arrays]
        t.order, t.values = slabs[0], slabs[1]
        t.keys = slabs[2] if keys is not None else None
        return t
