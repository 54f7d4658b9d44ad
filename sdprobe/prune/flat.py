"""Batched level moves: every weight of one dtype on one device as a view of one flat buffer, so that a move
between two levels is one index over all of them.

Moving a mask tensor by tensor costs a few kernel launches and host-to-device copies per tensor: on a GPU that
is about 50 µs per tensor, 10 ms for SD2's UNet, whatever the number of entries that change. A
:class:`FlatWeights` gives the weights of a dtype one address space. A move then gathers, on the host, each
tensor's changing positions (the rows of its level-major slab, see :mod:`sdprobe.prune.storage`) into one
buffer, copies it over once, and turns them into flat indices on the device with a constant number of kernels:
one ``index_fill_`` prunes, one ``index_copy_`` restores. Moves larger than ``BATCH_ENTRIES`` entries are cut
into batches, so the device's temporaries stay bounded.

Re-homing goes through host memory, weight by weight, so the device never holds a weight twice; on release the
weights get their own storage back the same way (a pipeline saved afterwards has no shared tensors).

Example:
    >>> flat = FlatWeights([r.weight for r in refs])
    >>> flat.offset(refs[0].weight)  # where the first weight starts in the buffer
    0
    >>> flat.release()  # each weight in its own storage again, same values
"""

from __future__ import annotations

from typing import Sequence

import torch

BATCH_ENTRIES = 1 << 22  # entries moved per batch: the device's temporaries stay under 100 MiB
MOVES = ("auto", "tensor", "batched")  # see resolve_moves


def resolve_moves(moves: str, device: torch.device, store) -> str:
    """``"tensor"`` or ``"batched"``: how a mask over weights on ``device`` with ``store`` moves between levels.

    ``"auto"`` batches CUDA weights whose mask data is on the host (``"cpu"`` or ``"disk"`` stores), where launches
    and small copies dominate; elsewhere moving tensor by tensor is as fast and needs no re-homing.

    Raises:
        ValueError: an unknown choice (the message lists the valid ones).
    """
    if moves not in MOVES:
        raise ValueError(f"unknown moves {moves!r}; valid: {', '.join(MOVES)}")
    if moves != "auto":
        return moves
    on_host = store == "disk" or (isinstance(store, torch.device) and store.type == "cpu")
    return "batched" if torch.device(device).type == "cuda" and on_host else "tensor"


class FlatWeights:
    """Weights of one dtype on one device re-homed as views of one flat buffer (see the module docstring).

    Args:
        weights (Sequence[torch.nn.Parameter]): distinct, contiguous weights of one dtype on one device.
    """

    def __init__(self, weights: Sequence[torch.nn.Parameter]) -> None:
        weights = list(weights)
        if len({id(w) for w in weights}) != len(weights):
            raise ValueError("a weight is listed twice; re-homing needs distinct weights")
        if len({(w.dtype, w.device) for w in weights}) != 1:
            raise ValueError("re-homed weights must share one dtype and one device")
        self.weights = weights
        self.dtype, self.device = weights[0].dtype, weights[0].device
        self._offsets: dict[int, int] = {}
        total = 0
        for w in weights:
            self._offsets[id(w)] = total
            total += w.numel()
        self.numel = total
        self.buffer = self._gather_into_buffer()

    @torch.no_grad()
    def _gather_into_buffer(self) -> torch.Tensor:
        host = [w.data.to("cpu", copy=True) for w in self.weights]  # the device holds each weight once
        for w in self.weights:
            w.data = torch.empty(0, dtype=self.dtype, device=self.device)
        try:
            buffer = torch.empty(self.numel, dtype=self.dtype, device=self.device)
        except BaseException:  # e.g. out of memory: the weights go back where they were
            for w, h in zip(self.weights, host):
                w.data = h.to(self.device)
            raise
        for w, h in zip(self.weights, host):
            start = self._offsets[id(w)]
            view = buffer[start:start + h.numel()]
            view.copy_(h.reshape(-1))
            w.data = view.view(h.shape)
        return buffer

    def offset(self, weight: torch.Tensor) -> int:
        """Where ``weight`` starts in the flat buffer."""
        return self._offsets[id(weight)]

    @torch.no_grad()
    def release(self) -> None:
        """Give every weight its own storage back (same values) and free the flat buffer."""
        if self.buffer is None:
            return
        host = self.buffer.to("cpu", copy=True)
        shapes = [w.shape for w in self.weights]
        for w in self.weights:
            w.data = torch.empty(0, dtype=self.dtype, device=self.device)
        self.buffer = None
        for w, shape in zip(self.weights, shapes):
            start = self._offsets[id(w)]
            w.data = host[start:start + shape.numel()].view(shape).to(self.device, copy=True)

    # --- moves -------------------------------------------------------------------------------------------------
    def prune(self, segments: list[tuple]) -> None:
        """Zero the entries of ``segments``: ``(state, start, stop)``, sorted positions ``start:stop`` of every
        group of a :class:`~sdprobe.prune.state.TensorState` whose weight is in this buffer."""
        for batch in _batches(segments):
            self.buffer.index_fill_(0, self._indices(batch), 0)

    def unprune(self, segments: list[tuple]) -> None:
        """Write back the original values of the entries of ``segments`` (as in :meth:`prune`)."""
        for batch in _batches(segments):
            values = _staged([s.values.rows(a, b).reshape(-1) for s, a, b in batch], self.dtype, self.device)
            self.buffer.index_copy_(0, self._indices(batch), values)

    def _indices(self, batch: list[tuple]) -> torch.Tensor:
        """Flat indices of a batch's entries, built on the device from one copy of the positions.

        A segment's rows ``a:b`` of a level-major ``(kmax, G)`` slab list entry ``e`` at group ``e % G``, so its flat
        index is ``offset + (e % G) * L + position``.
        """
        positions = _staged([s.order.rows(a, b).reshape(-1) for s, a, b in batch], torch.int32, self.device)
        counts = [(b - a) * s.groups for s, a, b in batch]
        starts = [0]
        for c in counts[:-1]:
            starts.append(starts[-1] + c)
        table = torch.tensor([[self.offset(s.ref.weight), s.groups, s.length, start, n]
                              for (s, _, _), start, n in zip(batch, starts, counts)], dtype=torch.int64)
        table = table.to(self.device)  # one small copy: offset, G, L, first entry and entries of each segment
        segment = torch.repeat_interleave(torch.arange(len(batch), device=self.device), table[:, 4],
                                          output_size=sum(counts))
        index = table[:, 0][segment]
        if any(s.groups > 1 for s, _, _ in batch):
            entry = torch.arange(sum(counts), device=self.device) - table[:, 3][segment]
            index += entry.remainder_(table[:, 1][segment]).mul_(table[:, 2][segment])
        return index.add_(positions)


def _batches(segments: list[tuple]):
    """Cut segments (``(state, start, stop)``) into batches of at most ``BATCH_ENTRIES`` entries (a segment larger
    than that is cut by rows)."""
    batch, size = [], 0
    for s, a, b in segments:
        rows = max(1, BATCH_ENTRIES // s.groups)
        while a < b:
            stop = min(b, a + rows, a + max(1, (BATCH_ENTRIES - size) // s.groups))
            batch.append((s, a, stop))
            size += (stop - a) * s.groups
            a = stop
            if size >= BATCH_ENTRIES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def _staged(parts: list[torch.Tensor], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Concatenate host (or device) tensors as ``dtype`` and move them to ``device`` in one copy; from pinned
    memory for a GPU (torch's caching host allocator keeps the buffer until the copy is done)."""
    n = sum(p.numel() for p in parts)
    cuda = torch.device(device).type == "cuda"
    host = torch.empty(n, dtype=dtype, pin_memory=cuda)
    at = 0
    for p in parts:
        host[at:at + p.numel()].copy_(p.to("cpu") if p.device.type != "cpu" else p)
        at += p.numel()
    return host.to(device, non_blocking=cuda)
