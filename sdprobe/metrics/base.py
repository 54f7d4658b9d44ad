"""The metric interface of sweeps.

A metric scores a batch of generated images *per image*: it returns a DataFrame with one row per image and one
column per quantity (NaN where a quantity does not apply, e.g. color accuracy for a prompt that states no
color). Per-image rows let sweeps bootstrap confidence intervals over seeds; aggregates are NaN-means.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd


@runtime_checkable
class Metric(Protocol):
    name: str  # short identifier, used in configs and run tables
    higher_is_better: dict[str, bool]  # column -> direction; collapse detection reads it

    def score(self, prompts: Sequence[str], images: np.ndarray, reference: np.ndarray | None = None) -> pd.DataFrame:
        """Score N images (N, H, W, 3) in [0, 1]; ``reference`` holds the unpruned images for the same seeds."""
        ...


def aggregate(table: pd.DataFrame) -> dict[str, float]:
    """NaN-mean of every numeric column."""
    return {c: float(np.nanmean(table[c].to_numpy(dtype=float))) if table[c].notna().any() else float("nan")
            for c in table.columns if pd.api.types.is_numeric_dtype(table[c])}
