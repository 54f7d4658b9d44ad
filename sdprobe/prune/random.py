"""Random scores: the control every method is compared against.

A seeded uniform draw ranks entries with no regard for the model, so weights that matter only because of
*how many* are pruned (not *which*) show up here too. Scores are drawn on the CPU from one generator, tensor by
tensor in the order of ``refs``, so they do not depend on the device.
"""

from __future__ import annotations

import torch

from sdprobe.architecture import WeightRef
from sdprobe.prune.base import Scorer


class RandomScorer(Scorer):
    """Score = uniform random in [0, 1), from a seeded generator.

    Args:
        seed (int): seeds the generator; the same seed and refs give the same scores. Default: 0.
        group (str): the comparison group. Default: ``"matrix"``.

    Example:
        >>> a = RandomScorer(seed=1).scores(refs)
        >>> b = RandomScorer(seed=1).scores(refs)  # equal to a
    """

    name = "random"

    def __init__(self, seed: int = 0, group: str = "matrix") -> None:
        self.seed = int(seed)
        self.group = group

    def scores(self, refs: list[WeightRef]) -> dict[str, torch.Tensor]:
        gen = torch.Generator("cpu").manual_seed(self.seed)
        return {r.qualified_name: torch.rand(r.weight.shape, generator=gen).to(r.weight.device) for r in refs}
