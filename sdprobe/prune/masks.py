"""Progressive, nested, exactly-restoring pruning masks.

Scores are sorted once when the mask is entered. At sparsity ``s`` the pruned set is, in every comparison group
(see :mod:`sdprobe.prune.layout`), the ``floor(f_t(s) * L)`` lowest-scoring entries, where ``f_t(s)`` is the
tensor's fraction: ``s`` itself, an allocation's value (OWL), or the share set by one global threshold. Since
``f_t`` never decreases with ``s``, masks at increasing sparsity are nested, and moving between levels touches
only the entries that change. On exit every weight is restored bit-exactly, also after an exception or a
``KeyboardInterrupt``.

Held data: for each tensor, the original values of the entries prunable up to ``max_sparsity`` (in the
weight's dtype) and their positions inside their group (int16 where a group fits, int32 otherwise); with
``group="global"`` also the int32 score keys of those entries, for the threshold search. ``store`` says where
(see :mod:`sdprobe.prune.storage`): beside the weights (fastest), in host memory (for CUDA weights: the device
holds only the model), or in a temporary file (the process holds only the model and the rows being moved).
Scores are read one tensor at a time, so a lazy mapping of scores (the scorers' own) keeps the peak during the
one-off sort near one tensor's worth. ``moves`` says how a level change reaches the weights: tensor by tensor, or
batched over every weight of a dtype at once (see :mod:`sdprobe.prune.flat`), which spares a GPU hundreds of
small launches per move.

Example:
    >>> refs = select(pipe, "text_encoder")
    >>> with ProgressiveMask(refs, MagnitudeScorer().scores(refs)) as mask:
    ...     for s in (0.30, 0.35, 0.40):
    ...         mask.set_sparsity(s)
    ...         images = generate(pipe, prompts, seeds)
    >>> # weights are back to their dense values here
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator, Mapping

import pandas as pd
import torch
from tqdm.auto import tqdm

from sdprobe.architecture import WeightRef, component_module, describe
from sdprobe.prune.base import Allocation, check_scores
from sdprobe.prune.flat import FlatWeights, resolve_moves
from sdprobe.prune.layout import Group, count, global_counts, parse_group, sortable_keys
from sdprobe.prune.state import TensorState
from sdprobe.prune.storage import OffloadFile, resolve_store, sort_device

log = logging.getLogger(__name__)
LAYER_COLUMNS = ("qualified_name", "component", "region", "block", "role", "numel", "sparsity")  # layer_table()
DEFAULT_MAX_SPARSITY = 0.95  # the highest level a mask can reach; sets how many originals it keeps
_ACTIVE: dict[int, str] = {}  # id(weight) -> qualified name, for every weight under an entered mask


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT (Ctrl-C) until the block ends, then raise the KeyboardInterrupt it would have raised.

    Restoring the weights of SD2 takes seconds; an interrupt in the middle would leave part of the model pruned.
    Only the main thread can install signal handlers: elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


class ProgressiveMask:
    """Prune a set of weights to any sparsity and back, touching only the entries that change.

    Args:
        refs (list[WeightRef]): the weights in scope (see :func:`sdprobe.architecture.select`).
        scores (Mapping[str, torch.Tensor]): ``qualified_name`` -> scores of the weight's shape; higher = pruned
            later (see :mod:`sdprobe.prune`'s scorers). Read once on entry and not kept.
        group (str): comparison group: ``"matrix"``, ``"row"``, ``"global"`` or ``"nm:M"``. Default: ``"matrix"``.
        allocation (Allocation | None): target sparsity -> per-tensor fraction (e.g. OWL); must be non-decreasing
            in the target. ``None``: every tensor is pruned to the target. Not combinable with ``"global"``.
        max_sparsity (float): the highest level :meth:`set_sparsity` accepts, in [0, 1). Default: 0.95.
        store (str | torch.device | None): where positions and original values are kept: ``None`` or
            ``"memory"`` beside each weight; ``"cpu"`` (or another device) there, pinned for CUDA weights;
            ``"disk"`` in an anonymous temporary file; ``"auto"`` host memory for CUDA weights and the
            file otherwise. Default: ``None``.
        moves (str): ``"tensor"`` moves weight by weight; ``"batched"`` re-homes the weights of each dtype into
            one flat buffer while the mask is entered and moves all of them with one index (see
            :mod:`sdprobe.prune.flat`); ``"auto"`` batches CUDA weights with a host store. Default: ``"tensor"``.

    Example:
        >>> with ProgressiveMask(refs, scores, max_sparsity=0.6) as mask:
        ...     mask.set_sparsity(0.5)
        ...     mask.set_sparsity(0.35)  # un-prunes only the entries between the two levels
    """

    def __init__(self, refs: list[WeightRef], scores: Mapping[str, torch.Tensor], group: str = "matrix",
                 allocation: Allocation | None = None, max_sparsity: float = DEFAULT_MAX_SPARSITY,
                 store: str | torch.device | None = None, moves: str = "tensor") -> None:
        refs = list(refs)
        if not refs:
            raise ValueError("no weights to prune; select at least one (see sdprobe.architecture.select)")
        check_scores(refs, scores)
        self.group: Group = parse_group(group)
        if allocation is not None and self.group.kind == "global":
            raise ValueError("an allocation sets per-tensor sparsity, which a global threshold also sets; use "
                             "group 'matrix' or 'row' with an allocation")
        if not 0.0 <= max_sparsity < 1.0:
            raise ValueError(f"max_sparsity must be in [0, 1), got {max_sparsity}")
        self.refs, self.allocation, self.max_sparsity = refs, allocation, float(max_sparsity)
        self.store = resolve_store(store, refs[0].weight.device)
        self.moves = resolve_moves(moves, refs[0].weight.device, self.store)
        self._flat: list[tuple[FlatWeights, list[int]]] = []  # ("batched") each dtype's buffer, its tensors' positions
        self._offload: OffloadFile | None = None
        self._keys: list[torch.Tensor] = []  # each tensor's sorted keys ("global" only)
        self._scores: Mapping[str, torch.Tensor] | None = scores
        self._tensors: list[TensorState] | None = None
        self._by_name: dict[str, TensorState] = {}
        self._position: dict[str, int] = {}
        self._level = 0.0
        self._overrides: list[list] = []  # one record of (tensor, flat indices, saved values) per open override
        self._broken = False  # an update was interrupted: only exiting (which restores) is allowed

    # --- context -----------------------------------------------------------------------------------------
    def __enter__(self) -> "ProgressiveMask":
        if self._tensors is not None or self._scores is None:
            raise RuntimeError("a ProgressiveMask can be entered once; make a new one")
        clash = [r.qualified_name for r in self.refs if id(r.weight) in _ACTIVE]
        if clash:
            raise ValueError(f"{clash[0]} is already under another ProgressiveMask; masks must hold disjoint weights")
        for r in self.refs:
            if not r.weight.is_contiguous():
                raise ValueError(f"{r.qualified_name} is not contiguous; call .contiguous() on the module first")
        if self.store == "disk":
            self._offload = OffloadFile()
        try:
            self._tensors = self._build(self._scores)
        except BaseException:
            self._close_offload()
            raise
        self._keys = [t.sorted_keys() for t in self._tensors] if self.group.kind == "global" else []
        if self.moves == "batched":
            try:
                self._flat = self._rehome()
            except BaseException:
                self._tensors, self._keys = None, []
                self._close_offload()
                raise
        self._by_name = {t.name: t for t in self._tensors}
        self._position = {t.name: i for i, t in enumerate(self._tensors)}
        self._scores = None
        _ACTIVE.update({id(r.weight): r.qualified_name for r in self.refs})
        log.info("progressive mask over %d tensors (%d entries, group %s): %.1f MiB held in %s", len(self.refs),
                 self.numel, self.group.kind, self.stored_bytes() / 2**20, self.store or "memory")
        return self

    def __exit__(self, *exc) -> bool:
        try:
            with deferred_interrupts(), torch.no_grad():  # a second Ctrl-C must not leave the model pruned
                for record in reversed(self._overrides):
                    self._undo(record)
                for t in self._tensors or []:
                    n = t.high if self._broken else t.k
                    t.unprune(0, n)
                for flat, _ in self._flat:
                    flat.release()
        finally:
            self._flat = []
            for r in self.refs:
                _ACTIVE.pop(id(r.weight), None)
            self._tensors, self._by_name, self._overrides, self._level, self._keys = None, {}, [], 0.0, []
            self._close_offload()
        return False

    def _close_offload(self) -> None:
        if self._offload is not None:
            self._offload.close()
            self._offload = None

    # --- moving between levels -----------------------------------------------------------------------------
    @property
    def sparsity(self) -> float:
        """The current level."""
        return self._level

    @property
    def numel(self) -> int:
        """Entries in scope."""
        return sum(r.numel for r in self.refs)

    @torch.no_grad()
    def set_sparsity(self, sparsity: float) -> None:
        """Move to a level, zeroing newly pruned entries and writing back originals of un-pruned ones.

        Args:
            sparsity (float): the target, ``0 <= sparsity <= max_sparsity``.

        Raises:
            ValueError: a level out of range. RuntimeError: outside the ``with`` block or inside an override.
        """
        self._ready()
        if self._overrides:
            raise RuntimeError("close the open override() before changing the level")
        counts = self._counts(sparsity)
        try:
            if self._flat:
                self._move_batched(counts)
            for t, k in zip(self._tensors, counts):
                if k > t.k:
                    t.high = max(t.high, k)
                    if not self._flat:
                        t.prune(t.k, k)
                elif k < t.k and not self._flat:
                    t.unprune(k, t.k)
                t.k = k
        except BaseException:
            self._broken = True
            raise
        self._level = float(sparsity)

    def _move_batched(self, counts: list[int]) -> None:
        """Every dtype's changes in one pruning and one restoring index (see :mod:`sdprobe.prune.flat`)."""
        for flat, members in self._flat:
            for t in (self._tensors[i] for i in members):  # an interrupted move restores up to the new count
                t.high = max(t.high, counts[self._position[t.name]])
            pruned = [(t, t.k, k) for t, k in ((self._tensors[i], counts[i]) for i in members) if k > t.k]
            restored = [(t, k, t.k) for t, k in ((self._tensors[i], counts[i]) for i in members) if k < t.k]
            flat.prune(pruned)
            flat.unprune(restored)

    def _rehome(self) -> list[tuple[FlatWeights, list[int]]]:
        """One flat buffer per dtype and device for the weights in scope."""
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(self._tensors):
            groups.setdefault((t.ref.weight.dtype, t.ref.weight.device), []).append(i)
        made: list[tuple[FlatWeights, list[int]]] = []
        try:
            for members in groups.values():
                made.append((FlatWeights([self._tensors[i].ref.weight for i in members]), members))
        except BaseException:
            for flat, _ in made:
                flat.release()
            raise
        return made

    # --- queries -------------------------------------------------------------------------------------------
    def pruned_indices(self, name: str, sparsity: float) -> torch.Tensor:
        """Flat indices (ascending, LongTensor on the weight's device) of ``name`` pruned at ``sparsity``."""
        t = self._tensor(name)
        k = self._counts(sparsity)[self._position[name]]
        return t.flat_indices(0, k).sort().values

    def candidates(self, lo: float, hi: float) -> dict[str, torch.Tensor]:
        """Flat indices pruned at ``hi`` but not at ``lo``, per tensor (ascending; empty where none)."""
        self._ready()
        if lo > hi:
            raise ValueError(f"lo ({lo}) must not exceed hi ({hi})")
        k_lo, k_hi = self._counts(lo), self._counts(hi)
        return {t.name: t.flat_indices(a, b).sort().values for t, a, b in zip(self._tensors, k_lo, k_hi)}

    def stored_bytes(self) -> int:
        """Bytes of original values, positions and keys this mask keeps, wherever its store is."""
        return sum(t.nbytes for t in self._tensors or [])

    def memory_bytes(self) -> int:
        """Bytes this mask keeps in memory (beside the weights or on the host); 0 with the ``"disk"`` store."""
        return 0 if self.store == "disk" else self.stored_bytes()

    def layer_table(self, sparsity: float) -> pd.DataFrame:
        """One row per tensor: qualified_name, component, region, block, role, numel, sparsity (at ``sparsity``)."""
        self._ready()
        counts = self._counts(sparsity)
        rows = [{"qualified_name": t.name, **describe(t.ref), "numel": t.ref.numel,
                 "sparsity": k * t.groups / t.ref.numel} for t, k in zip(self._tensors, counts)]
        return pd.DataFrame(rows, columns=list(LAYER_COLUMNS))

    @torch.no_grad()
    def stats(self, pipe) -> dict:
        """Sparsity now, measured by counting zeros.

        Returns:
            dict: ``sparsity`` (the level), ``scope_numel``, ``scope_sparsity`` (zeros / entries in scope),
            ``scope_pruned`` (entries this mask pruned / entries in scope), ``scope_by_component``
            (component -> zeros / entries in scope) and ``component_sparsity`` (component -> zeros in all of
            its parameters / its parameter count), for the components in scope.
        """
        self._ready()
        zeros: dict[str, int] = {}
        numel: dict[str, int] = {}
        for r in self.refs:
            zeros[r.component] = zeros.get(r.component, 0) + int((r.weight == 0).sum())
            numel[r.component] = numel.get(r.component, 0) + r.numel
        whole = {}
        for c in zeros:
            params = list(component_module(pipe, c).parameters())
            whole[c] = sum(int((p == 0).sum()) for p in params) / sum(p.numel() for p in params)
        return {
            "sparsity": self._level,
            "scope_numel": self.numel,
            "scope_sparsity": sum(zeros.values()) / self.numel,
            "scope_pruned": sum(t.k * t.groups for t in self._tensors) / self.numel,
            "scope_by_component": {c: zeros[c] / numel[c] for c in zeros},
            "component_sparsity": whole,
        }

    # --- overrides -----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def override(self, prune: Mapping[str, torch.Tensor] | None = None,
                 restore: Mapping[str, torch.Tensor] | None = None, keep: float = 0.0) -> Iterator["ProgressiveMask"]:
        """Temporarily prune extra entries and/or restore pruned ones, relative to the current level.

        Args:
            prune (Mapping[str, LongTensor] | None): qualified name -> flat indices to zero.
            restore (Mapping[str, LongTensor] | None): qualified name -> flat indices, pruned at the current
                level, to give back their original values.
            keep (float): the share of their current value the ``prune`` entries keep, in [0, 1]: 0 removes them,
                0.5 halves them (a dose-response of the set). Default: 0.

        Raises:
            ValueError: an unknown name, an index out of range, an index in both sets, a restore index that
                is not pruned at the current level, or ``keep`` outside [0, 1].

        Example:
            >>> with mask.override(restore=mask.candidates(0.50, 0.55)):
            ...     images = generate(pipe, prompts, seeds)  # pruned at 0.55 except the candidates
        """
        self._ready()
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"keep must be in [0, 1], got {keep}")
        prune, restore = dict(prune or {}), dict(restore or {})
        plan = []  # (tensor, flat indices, new values or None for zeros)
        for name, idx in prune.items():
            t = self._tensor(name)
            idx = self._indices(t, idx)
            if name in restore and bool(torch.isin(idx, self._indices(t, restore[name])).any()):
                raise ValueError(f"{name}: an index is both pruned and restored")
            plan.append((t, idx, None))
        for name, idx in restore.items():
            t = self._tensor(name)
            idx = self._indices(t, idx)
            plan.append((t, idx, self._originals(t, idx)))
        record: list = []
        self._overrides.append(record)
        try:
            with torch.no_grad():
                for t, idx, new in plan:
                    flat = t.ref.weight.data.view(-1)
                    record.append((t, idx, flat[idx].clone()))
                    if new is None:
                        flat[idx] = flat[idx] * keep if keep else 0
                    else:
                        flat[idx] = new
            yield self
        finally:
            with deferred_interrupts(), torch.no_grad():
                self._undo(record)

    def _undo(self, record: list) -> None:
        if not any(r is record for r in self._overrides):
            return  # already undone (the mask exited first)
        for t, idx, saved in reversed(record):
            t.ref.weight.data.view(-1)[idx] = saved
        self._overrides = [r for r in self._overrides if r is not record]

    def _indices(self, t: TensorState, idx: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(idx, device=t.ref.weight.device).long().reshape(-1)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= t.ref.numel):
            raise ValueError(f"{t.name}: flat indices must be in [0, {t.ref.numel})")
        return idx

    def _originals(self, t: TensorState, idx: torch.Tensor) -> torch.Tensor:
        """Original values of currently pruned flat indices ``idx``."""
        pruned = t.flat_indices(0, t.k)
        if idx.numel() == 0:
            return t.ref.weight.data.view(-1)[idx]
        if pruned.numel() == 0:
            raise ValueError(f"{t.name}: nothing is pruned at the current level, so nothing can be restored")
        ordered, perm = pruned.sort()
        pos = torch.searchsorted(ordered, idx).clamp(max=ordered.numel() - 1)
        if not bool((ordered[pos] == idx).all()):
            raise ValueError(f"{t.name}: restore names entries that are not pruned at the current level")
        return t.vals(0, t.k).reshape(-1)[perm[pos]]

    # --- internals -----------------------------------------------------------------------------------------
    def _ready(self) -> None:
        if self._tensors is None:
            raise RuntimeError("use the ProgressiveMask inside a `with` block")
        if self._broken:
            raise RuntimeError("a level change was interrupted; leave the `with` block to restore the weights")

    def _tensor(self, name: str) -> TensorState:
        self._ready()
        if name not in self._by_name:
            raise ValueError(f"{name!r} is not in this mask's scope (e.g. {next(iter(self._by_name))})")
        return self._by_name[name]

    def _check_level(self, sparsity: float) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        if sparsity > self.max_sparsity:
            raise ValueError(f"sparsity {sparsity} exceeds this mask's max_sparsity {self.max_sparsity}; "
                             "make the mask with a higher max_sparsity")

    def _fractions(self, sparsity: float) -> list[float]:
        if self.allocation is None:
            return [float(sparsity)] * len(self.refs)
        given = self.allocation(float(sparsity))
        out = []
        for r in self.refs:
            if r.qualified_name not in given:
                raise ValueError(f"the allocation gives no sparsity for {r.qualified_name}")
            f = float(given[r.qualified_name])
            if not 0.0 <= f <= 1.0:
                raise ValueError(f"the allocation gives {r.qualified_name} sparsity {f}, outside [0, 1]")
            out.append(f)
        return out

    def _counts(self, sparsity: float) -> list[int]:
        """Entries pruned per group of each tensor at ``sparsity``."""
        self._check_level(sparsity)
        if self.group.kind == "global":
            self._ready()
            return global_counts(self._keys, count(sparsity, self.numel))
        layouts = self._tensors or [TensorState.layout(r, self.group) for r in self.refs]
        counts = [count(f, t.length) for f, t in zip(self._fractions(sparsity), layouts)]
        for t, k in zip(self._tensors or [], counts):
            if k > t.kmax:
                raise ValueError(f"the allocation gives {t.name} more sparsity at {sparsity} than at max_sparsity "
                                 f"{self.max_sparsity}; allocations must not decrease with the target")
        return counts

    @torch.no_grad()
    def _build(self, scores: Mapping[str, torch.Tensor]) -> list[TensorState]:
        layouts = [TensorState.layout(r, self.group) for r in self.refs]
        if self.group.kind == "global":
            where = [sort_device(self.store, t.ref.weight.device) for t in layouts]
            keys = [self._held(torch.sort(sortable_keys(scores[t.name].reshape(-1).to(w) + 0.0), stable=True).values)
                    for t, w in zip(layouts, where)]  # a stable sort of integers is torch's parallel radix sort
            kmax = global_counts(keys, count(self.max_sparsity, self.numel))
        else:
            kmax, keys = self._counts(self.max_sparsity), [None] * len(layouts)
        bar = tqdm(layouts, desc="sorting scores", unit="tensor", disable=None, leave=False)
        return [TensorState.sorted(t.ref, self.group, scores[t.name], k, None if key is None else key[:k], self.store,
                                   self._offload) for t, k, key in zip(bar, kmax, keys)]

    def _held(self, keys: torch.Tensor) -> torch.Tensor:
        """All sorted keys of a tensor while the global counts are found: memory-mapped with the disk store."""
        return self._offload.put(keys.reshape(1, -1)).array().reshape(-1) if self._offload else keys
