"""Generate and classify the images a debiasing edit is judged on, for any removed (or scaled) weight set.

A :class:`DebiasSplit` holds one split's images of each kind: the target group's neutral prompts, every explicit
prompt (several seeds each), and the other groups' neutral prompts. :class:`DebiasEvaluator` removes a set inside
a restoring mask override (``keep`` scales it instead, for a dose-response), generates the images of one part of
a split, classifies them, and caches the labels, so the empty set and the found set are generated once however
often they are compared.

Example:
    >>> ev = DebiasEvaluator(pipe, classify, cands, mask, generation)
    >>> ev.labels(split, "target", ids)  # labels of the target group's images with ``ids`` removed
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import numpy as np

from sdprobe.bias.classify import Classifier
from sdprobe.evidence import Split
from sdprobe.generate import GenerationConfig, generate

PARTS = ("target", "explicit", "others")


@dataclass(frozen=True)
class DebiasSplit:
    """One split's images: ``target`` (neutral prompts of the debiased group), ``explicit`` (prompts stating each
    value, with ``truth`` the value each states) and ``others`` (neutral prompts of the other groups, with ``group``
    naming each image's group)."""

    name: str
    target: Split
    explicit: Split
    truth: tuple[str, ...]
    others: Split | None
    group: tuple[str, ...] = ()

    def part(self, name: str) -> Split | None:
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; valid: {', '.join(PARTS)}")
        return getattr(self, name)

    def check_disjoint(self, other: "DebiasSplit") -> None:
        """Raise ValueError when two splits share a seed in any part, or a neutral prompt of the target group."""
        mine = [s for s in (self.target, self.explicit, self.others) if s is not None]
        theirs = [s for s in (other.target, other.explicit, other.others) if s is not None]
        shared = {x for s in mine for x in s.seeds} & {x for s in theirs for x in s.seeds}
        if shared:
            raise ValueError(f"splits {self.name!r} and {other.name!r} share {len(shared)} seed(s)")
        if set(self.target.prompts) & set(other.target.prompts) and len(set(self.target.prompts)) > 1:
            raise ValueError(f"splits {self.name!r} and {other.name!r} share target prompts")

    def to_dict(self) -> dict:
        return {"target": self.target.to_dict(), "explicit": self.explicit.to_dict(), "truth": list(self.truth),
                "others": None if self.others is None else self.others.to_dict(), "group": list(self.group)}


def _key(ids: np.ndarray) -> str:
    return hashlib.sha1(np.sort(np.asarray(ids, dtype=np.int64)).tobytes()).hexdigest()


class DebiasEvaluator:
    """Labels of a split's images with a weight set removed (see the module docstring).

    Args:
        pipe: the pipeline.
        classify (Classifier): images -> values (None when unreadable).
        candidates (CandidateSet): the pool item ids refer to.
        mask (ProgressiveMask): a mask over the candidates' tensors (at sparsity 0), whose override removes sets.
        generation (GenerationConfig): sampler settings.
    """

    def __init__(self, pipe, classify: Classifier, candidates, mask, generation: GenerationConfig):
        self.pipe, self.classify, self.cands, self.mask, self.generation = pipe, classify, candidates, mask, generation
        self.cache: dict[tuple, list] = {}
        self.images = 0  # generated so far (the cost)

    def labels(self, split: DebiasSplit, part: str, ids: np.ndarray, keep: float = 0.0) -> list:
        """Labels of ``split``'s ``part`` with the items ``ids`` removed (scaled by ``keep``); cached."""
        ids = np.asarray(ids, dtype=np.int64)
        key = (split.name, part, _key(ids), float(keep) if len(ids) else 0.0)
        if key not in self.cache:
            s = split.part(part)
            if s is None:
                self.cache[key] = []
            else:
                ctx = (self.mask.override(prune=self.cands.to_dict(ids), keep=keep) if len(ids) and keep < 1.0
                       else contextlib.nullcontext())
                with ctx:
                    images = generate(self.pipe, list(s.prompts), list(s.seeds), self.generation)
                self.images += len(s)
                self.cache[key] = list(self.classify(images))
        return self.cache[key]


def other_groups(ev, split: DebiasSplit, ids: np.ndarray) -> dict[str, tuple[list, list]]:
    """Each other group's labels, dense and with ``ids`` removed (same images): ``{group: (before, after)}``."""
    if split.others is None:
        return {}
    groups = np.asarray(split.group)
    before = np.asarray(ev.labels(split, "others", np.zeros(0, dtype=np.int64)), dtype=object)
    after = np.asarray(ev.labels(split, "others", ids), dtype=object)
    return {g: (list(before[groups == g]), list(after[groups == g])) for g in dict.fromkeys(split.group)}
