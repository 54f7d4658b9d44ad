"""Pruning: scorers that rank weight entries, and progressive masks that prune and restore them exactly.

Methods (one scorer per file): magnitude (Han et al. 2015), Wanda (Sun et al. 2023), OWL layer-wise sparsity
(Yin et al. 2023), N:M semi-structured (Mishra et al. 2021) and random scores (the control).

Example:
    >>> from sdprobe.prune import make_scorer, mask_from_scorer
    >>> refs = select(pipe, "text_encoder")
    >>> with mask_from_scorer(refs, make_scorer("magnitude"), max_sparsity=0.6) as mask:
    ...     for s in (0.40, 0.45, 0.50):
    ...         mask.set_sparsity(s)
"""

from sdprobe.prune.base import Allocation, LazyScores, Scorer
from sdprobe.prune.factory import METHODS, make_scorer, mask_from_scorer, prune
from sdprobe.prune.layout import GROUP_KINDS
from sdprobe.prune.magnitude import MagnitudeScorer
from sdprobe.prune.masks import ProgressiveMask
from sdprobe.prune.nm import NMScorer
from sdprobe.prune.owl import OwlAllocation, OwlScorer
from sdprobe.prune.random import RandomScorer
from sdprobe.prune.storage import STORES
from sdprobe.prune.wanda import InputNorms, WandaScorer

__all__ = [
    "Allocation", "Scorer", "LazyScores", "STORES", "METHODS", "GROUP_KINDS", "make_scorer", "mask_from_scorer",
    "prune", "ProgressiveMask",
    "MagnitudeScorer", "WandaScorer", "InputNorms", "RandomScorer", "OwlScorer", "OwlAllocation", "NMScorer",
]
