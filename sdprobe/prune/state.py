"""The per-tensor state of a progressive mask: sorted positions and the original values they hold."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sdprobe.architecture import WeightRef
from sdprobe.prune.layout import Group, index_dtype

_EMPTY = torch.empty(1, 0)


@dataclass(eq=False)
class TensorState:
    """The state of one weight under a mask; the weight is viewed as ``(groups, length)``."""

    ref: WeightRef
    groups: int
    length: int
    order: torch.Tensor  # (groups, kmax) positions in each group, lowest score first
    values: torch.Tensor  # (groups, kmax) original values at those positions
    keys: torch.Tensor | None  # (kmax,) sorted int32 score keys ("global" only)
    k: int = 0  # entries pruned per group now
    high: int = 0  # most entries per group pruned since entry

    @property
    def name(self) -> str:
        return self.ref.qualified_name

    @property
    def kmax(self) -> int:
        return self.order.shape[1]

    def matrix(self) -> torch.Tensor:
        return self.ref.weight.data.view(self.groups, self.length)

    def flat_indices(self, start: int, stop: int) -> torch.Tensor:
        """Flat indices into the weight of sorted positions ``start:stop`` of every group, (groups * n,)."""
        device = self.ref.weight.device
        cols = self.order[:, start:stop].to(device=device, dtype=torch.long)
        offsets = torch.arange(self.groups, device=device).unsqueeze(1) * self.length
        return (cols + offsets).reshape(-1)

    @classmethod
    def layout(cls, ref: WeightRef, group: Group) -> "TensorState":
        """A shape-only state (nothing sorted or stored yet)."""
        return cls(ref, *group.shape(ref.weight, ref.qualified_name), _EMPTY, _EMPTY, None)

    @classmethod
    @torch.no_grad()
    def sorted(cls, ref: WeightRef, group: Group, scores: torch.Tensor, kmax: int, keys: torch.Tensor | None,
               store: torch.device | None) -> "TensorState":
        """Sort ``scores`` within each group once and keep the first ``kmax`` positions and their values.

        Args:
            ref (WeightRef): the weight.
            group (Group): the comparison group.
            scores (torch.Tensor): the weight's scores, same shape.
            kmax (int): entries per group prunable up to the mask's highest level.
            keys (torch.Tensor | None): sorted score keys to keep ("global" only).
            store (torch.device | None): where to keep positions and values; ``None``: beside the weight.
                Host copies of CUDA weights are pinned.
        """
        t = cls.layout(ref, group)
        order = torch.argsort(scores.reshape(t.groups, t.length), dim=1, stable=True)[:, :kmax]  # (G, kmax)
        values = t.matrix().gather(1, order)  # (G, kmax), in the weight's dtype
        order = order.to(index_dtype(t.length))
        if store is not None:
            pin = store.type == "cpu" and ref.weight.is_cuda
            order, values = (x.to(store).pin_memory() if pin else x.to(store) for x in (order, values))
        t.order, t.values = order.contiguous(), values.contiguous()
        t.keys = None if keys is None else keys.clone()
        return t
