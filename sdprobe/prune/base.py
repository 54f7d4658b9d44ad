"""The scorer interface shared by every pruning method.

A *scorer* ranks the entries of weight tensors: ``scores(refs)`` returns, for each :class:`WeightRef`, a float32
tensor of the weight's shape where a higher score means "more important, pruned later". Which entries compete
with each other is the scorer's default comparison ``group`` (see :mod:`sdprobe.prune.layout`); a scorer that
also decides how much of each tensor to prune at a target sparsity (OWL) exposes an ``allocation``.

Example:
    >>> scorer = MagnitudeScorer()
    >>> scores = scorer.scores(select(pipe, "text_encoder"))
    >>> with ProgressiveMask(refs, scores, group=scorer.group, allocation=scorer.allocation) as mask:
    ...     mask.set_sparsity(0.5)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Iterator, Mapping

import torch

from sdprobe.architecture import WeightRef

Allocation = Callable[[float], Mapping[str, float]]
"""Target sparsity -> the fraction of each tensor (by qualified name) to prune. Must be non-decreasing in the
target for every tensor, so that masks at increasing sparsity stay nested."""


class Scorer(ABC):
    """Base class of pruning scorers.

    Attributes:
        name (str): the method's identifier, e.g. ``"magnitude"``.
        group (str): the comparison group a :class:`ProgressiveMask` uses with these scores by default:
            ``"matrix"``, ``"row"``, ``"global"`` or ``"nm:M"``.
        allocation (Allocation | None): per-tensor sparsity as a function of the target, or ``None`` for a
            uniform fraction in every tensor.
    """

    name: str = ""
    group: str = "matrix"
    allocation: Allocation | None = None

    @abstractmethod
    def scores(self, refs: list[WeightRef]) -> dict[str, torch.Tensor]:
        """Importance of every entry of each weight.

        Args:
            refs (list[WeightRef]): the weights to score (see :func:`sdprobe.architecture.select`).

        Returns:
            dict[str, torch.Tensor]: ``ref.qualified_name`` -> float32 tensor of the weight's shape, on the
            weight's device; higher = more important (pruned last).
        """

    def lazy_scores(self, refs: list[WeightRef]) -> Mapping[str, torch.Tensor]:
        """The same scores, each computed from the weights when it is read (see :class:`LazyScores`).

        A :class:`~sdprobe.prune.ProgressiveMask` reads them one tensor at a time when it is entered, so only
        one tensor's scores exist at once. The weights must not change between this call and that read.
        Scorers that cannot score one tensor at a time return :meth:`scores`.
        """
        return self.scores(refs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, group={self.group!r})"


class LazyScores(Mapping):
    """A read-only mapping ``qualified_name -> scores`` that computes each tensor's scores when it is read.

    Args:
        refs (list[WeightRef]): the weights scored.
        score (Callable[[WeightRef], torch.Tensor]): the scores of one weight.

    Example:
        >>> lazy = LazyScores(refs, lambda r: r.weight.detach().abs().float())
        >>> lazy[refs[0].qualified_name]  # computed now, not kept
    """

    def __init__(self, refs: list[WeightRef], score: Callable[[WeightRef], torch.Tensor]) -> None:
        self._refs = {r.qualified_name: r for r in refs}
        self._score = score

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._score(self._refs[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)


def check_scores(refs: list[WeightRef], scores: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` unless ``scores`` holds one finite tensor of the right shape for each ref."""
    names = [r.qualified_name for r in refs]
    if len(set(names)) != len(names):
        raise ValueError("the same weight is selected twice; pass each WeightRef once")
    missing = [n for n in names if n not in scores]
    if missing:
        raise ValueError(f"no scores for {len(missing)} weight(s), e.g. {missing[0]}")
    for ref in refs:
        s = scores[ref.qualified_name]
        if tuple(s.shape) != tuple(ref.weight.shape):
            raise ValueError(f"scores of {ref.qualified_name} have shape {tuple(s.shape)}, the weight "
                             f"{tuple(ref.weight.shape)}")
        if not bool(torch.isfinite(s).all()):
            raise ValueError(f"scores of {ref.qualified_name} contain NaN or infinity")
