"""Known-answer evaluators: fast synthetic "models" whose critical set is planted, or provably absent.

They stand in for ``generate + read`` in tests and benchmarks, so that a finding-producing method can be checked
against a known answer on every run (positive control: the planted set is recovered; negative control: nothing is
claimed where nothing exists).

A split is a sequence of images ``i``; each image has its own *dependency set* ``D_i`` of ``depth`` candidate
weights (drawn from the image's seed). With a subset ``R`` of the candidates removed, image ``i`` is correct unless

* ``R`` contains the whole planted set ``P`` and the image is susceptible (a ``share`` of images are), or
* ``R`` hits the image's own dependency set ``D_i`` (a diffuse collapse: every image breaks for its own reasons), or
* noise flips it: with probability ``noise`` per (subset, image), decided by a hash, so answers are repeatable.

With ``planted=None`` there is no critical set: a search on one split finds weights that break *those* images'
``D_i``, and they do no more than random weights on another split's images. That is the failure of scoring a set on
the images it was searched on, made exact.

Example:
    >>> world = PlantedWorld(n=10_000, planted=np.arange(5), seed=0)
    >>> evaluate = world.evaluator(world.split(32, seed=1))
    >>> evaluate(np.arange(5))["meaning"].mean()   # the planted set removed: the susceptible share breaks
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

MEANING = "meaning"  # the one column a synthetic evaluator reports


@dataclass
class PlantedWorld:
    """A synthetic meaning over ``n`` candidate weights (see the module docstring).

    Args:
        n (int): candidate weights.
        planted (np.ndarray | None): item ids of the planted critical set; None for a world without one.
        share (float): share of images that break when the whole planted set is removed. Default: 0.5.
        depth (int): size of each image's own dependency set. Default: 8.
        noise (float): per-(subset, image) flip probability of any non-empty removal. Default: 0.02.
        seed (int): seeds the dependency sets. Default: 0.
    """

    n: int
    planted: np.ndarray | None = None
    share: float = 0.5
    depth: int = 8
    noise: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        self.planted = None if self.planted is None else np.unique(np.asarray(self.planted, dtype=np.int64))

    def split(self, n_images: int, seed: int) -> np.ndarray:
        """(n_images,) image seeds of a split; different seeds give independent images."""
        return np.random.default_rng([self.seed, seed]).integers(0, 2**62, size=n_images)

    def _images(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, depth) dependency sets and (N,) susceptibility of a split's images."""
        deps = np.zeros((len(images), self.depth), dtype=np.int64)
        susceptible = np.zeros(len(images), dtype=bool)
        for i, s in enumerate(images):
            rng = np.random.default_rng(int(s))
            deps[i] = rng.choice(self.n, size=self.depth, replace=False)
            susceptible[i] = rng.random() < self.share
        return deps, susceptible

    def evaluator(self, images: np.ndarray):
        """``evaluate(removed ids) -> {"meaning": (N,) correctness}`` on the images of a split."""
        deps, susceptible = self._images(images)
        planted, image_keys = self.planted, np.asarray(images, dtype=np.uint64)

        def evaluate(ids: np.ndarray) -> dict[str, np.ndarray]:
            ids = np.unique(np.asarray(ids, dtype=np.int64))
            removed = np.zeros(self.n, dtype=bool)
            removed[ids] = True
            all_planted = planted is not None and len(planted) > 0 and bool(removed[planted].all())
            broken = (susceptible & all_planted) | removed[deps].any(axis=1)  # (N,)
            if len(ids) and self.noise > 0:
                key = int.from_bytes(hashlib.sha256(ids.astype("<i8").tobytes()).digest()[:8], "little")
                flips = np.random.default_rng([key, *image_keys.tolist()[:1]]).random(len(images)) < self.noise
                broken ^= flips
            return {MEANING: (~broken).astype(float)}

        return evaluate
