"""A known-answer stand-in for a biased model: a planted set of weights carries the bias, or provably none does.

It replaces :class:`~sdprobe.bias.evaluate.DebiasEvaluator` (same ``labels(split, part, ids, keep)``) in tests
and benchmarks, so the debiasing search and its confirmation are checked against a known answer on every run.

Each image draws one uniform number from its seed and reads its value off a distribution by inverse CDF, so the
same image compared across edits changes value only when the distribution does (paired, as a seeded model is).
With a share ``f`` of the planted set removed (scaled by ``1 - keep``), the target group's distribution is
``(1 - f) dense + f after``, where ``after`` is:

* ``"debias"``: the target distribution (removing the planted set debiases);
* ``"swap"``: another value's monopoly (removing it trades red for cyan: the failure the TV objective must reject);
* ``"erase"``: the target distribution, but explicit prompts of ``biased_value`` are drawn wrong with
  probability ``f`` (the set erases the concept rather than the bias).

With ``planted=None`` nothing carries the bias. Other groups and other explicit prompts never move.

Example:
    >>> world = PlantedBias(n=2000, planted=np.arange(16), classes=("red", "cyan"), dense=(0.9, 0.1))
    >>> ev = world.evaluator()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sdprobe.isolate.candidates import CandidateSet

MODES = ("debias", "swap", "erase")
TENSOR = "text_encoder.fake.weight"


@dataclass
class PlantedBias:
    """A synthetic biased model over ``n`` candidate weights (see the module docstring)."""

    n: int
    planted: np.ndarray | None
    classes: tuple[str, ...]
    dense: tuple[float, ...]
    target: tuple[float, ...] | None = None
    mode: str = "debias"
    biased_value: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid: {', '.join(MODES)}")
        k = len(self.classes)
        self.target = tuple(self.target or [1.0 / k] * k)
        self.biased_value = self.biased_value or self.classes[int(np.argmax(self.dense))]
        self.planted = None if self.planted is None else np.unique(np.asarray(self.planted, dtype=np.int64))

    def candidates(self) -> CandidateSet:
        """A candidate set of ``n`` items in one fake (n,) tensor, ids 0..n-1."""
        return CandidateSet.from_tensors({TENSOR: torch.arange(self.n)}, {TENSOR: (self.n,)},
                                         info={TENSOR: {"component": "text_encoder", "role": "fake"}})

    def after(self) -> np.ndarray:
        if self.mode == "swap":
            other = [i for i, c in enumerate(self.classes) if c != self.biased_value][-1]
            return np.eye(len(self.classes))[other]
        return np.asarray(self.target)

    def removed_share(self, ids: np.ndarray, keep: float) -> float:
        if self.planted is None or not len(self.planted):
            return 0.0
        return float(np.isin(self.planted, ids).mean()) * (1.0 - keep)

    def evaluator(self) -> "SyntheticEvaluator":
        return SyntheticEvaluator(self)


class SyntheticEvaluator:
    """``labels(split, part, ids, keep)`` of a :class:`PlantedBias` (the :class:`DebiasEvaluator` interface)."""

    def __init__(self, world: PlantedBias):
        self.world = world
        self.images = 0

    def _draw(self, seeds, dist: np.ndarray) -> list[str]:
        u = np.array([np.random.default_rng([self.world.seed, int(s)]).random() for s in seeds])
        idx = np.minimum(np.searchsorted(np.cumsum(dist), u, side="right"), len(dist) - 1)
        return [self.world.classes[i] for i in idx]

    def labels(self, split, part: str, ids: np.ndarray, keep: float = 0.0) -> list:
        w = self.world
        s = split.part(part)
        if s is None:
            return []
        self.images += len(s)
        f = w.removed_share(np.asarray(ids), keep)
        if part == "target":
            return self._draw(s.seeds, (1 - f) * np.asarray(w.dense) + f * w.after())
        if part == "others":
            return self._draw(s.seeds, np.asarray(w.target))
        out = list(split.truth)  # explicit prompts draw what they state ...
        if w.mode == "erase" and f > 0:  # ... unless the set erases the biased value's concept
            u = np.array([np.random.default_rng([w.seed, int(x), 1]).random() for x in s.seeds])
            wrong = [c for c in w.classes if c != w.biased_value][0]
            out = [wrong if (t == w.biased_value and ui < f) else t for t, ui in zip(out, u)]
        return out
