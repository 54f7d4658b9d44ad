"""The metric interface of sweeps.

A metric declares each quantity it measures (:class:`Quantity`): its direction, its floor (the worst meaningful
value, e.g. chance accuracy), whether it is measured per image or per set, and the scale collapse detection
should analyse it on. Collapse detection reads these declarations, so a user never has to remember that FID is
lower-is-better and unbounded.

* **Per-image** quantities (accuracy, CLIPScore): :meth:`Metric.score` returns a DataFrame with one row per image
  and one column per quantity (NaN where a quantity does not apply, e.g. color accuracy for a prompt that states
  no color). Per-image rows let thresholds resample seeds; aggregates are NaN-means.
* **Per-set** quantities (FID, KID, FD): :meth:`score_set` returns one value per set of images, and its
  standard error as ``<quantity>_se`` (from a bootstrap over images). Sweeps store them once per level, never
  copied onto image rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

PER = ("image", "set")  # what one value of a quantity describes
SCALES = ("linear", "log")  # how collapse detection analyses it (log for unbounded metrics such as FID)


@dataclass(frozen=True)
class Quantity:
    """What collapse detection must know about one quantity of a metric.

    Attributes:
        higher_is_better (bool): its direction.
        floor (float | None): its worst meaningful value (chance accuracy, all images unreadable), in its own
            units; None when it has no known floor (the user may give one).
        per (str): ``"image"`` (one value per image) or ``"set"`` (one value per set of images).
        scale (str): ``"linear"`` or ``"log"``.
    """

    higher_is_better: bool
    floor: float | None = None
    per: str = "image"
    scale: str = "linear"

    def __post_init__(self):
        if self.per not in PER:
            raise ValueError(f"unknown per {self.per!r}; valid: {', '.join(PER)}")
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; valid: {', '.join(SCALES)}")


def directions(quantities: dict[str, Quantity]) -> dict[str, bool]:
    """Column -> higher_is_better, from a metric's declarations."""
    return {name: q.higher_is_better for name, q in quantities.items()}


@runtime_checkable
class Metric(Protocol):
    name: str  # short identifier, used in configs and run tables
    quantities: dict[str, Quantity]  # column -> declaration; collapse detection reads it
    higher_is_better: dict[str, bool]  # column -> direction (``directions(quantities)``)

    def score(self, prompts: Sequence[str], images: np.ndarray, reference: np.ndarray | None = None) -> pd.DataFrame:
        """Score N images (N, H, W, 3) in [0, 1]; ``reference`` holds the unpruned images for the same seeds.

        A metric whose quantities are all per set implements ``score_set(images, reference) -> dict`` instead. A
        metric that needs ``reference`` says so with a true ``needs_reference`` attribute; sweeps then generate the
        unpruned images once.
        """
        ...


def quantities_of(metric) -> dict[str, Quantity]:
    """A metric's (or metric class's) declarations; a metric that only states ``higher_is_better`` gets per-image,
    linear quantities without a floor."""
    declared = getattr(metric, "quantities", None)
    if declared is not None:
        return dict(declared)
    return {name: Quantity(bool(hib)) for name, hib in metric.higher_is_better.items()}


def set_quantities(metric) -> list[str]:
    """The per-set quantities of a metric (those :meth:`score_set` returns)."""
    return [name for name, q in quantities_of(metric).items() if q.per == "set"]


def check_pairs(prompts: Sequence[str], images) -> None:
    """A per-image metric's input: one prompt per image, at least one image; raises ``ValueError`` otherwise."""
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    if len(prompts) == 0:
        raise ValueError("no images to score")


def aggregate(table: pd.DataFrame) -> dict[str, float]:
    """NaN-mean of every numeric column."""
    return {c: float(np.nanmean(table[c].to_numpy(dtype=float))) if table[c].notna().any() else float("nan")
            for c in table.columns if pd.api.types.is_numeric_dtype(table[c])}
