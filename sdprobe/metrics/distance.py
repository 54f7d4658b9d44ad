"""Pixel distance to the unpruned model's image for the same prompt and seed."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from sdprobe.metrics.base import Quantity, directions


class DistanceMetric:
    """Mean absolute pixel difference to the reference image (0 identical, 1 maximal); NaN images score 1."""

    name = "distance"
    quantities = {"distance": Quantity(False, floor=1.0)}  # maximal difference
    higher_is_better = directions(quantities)
    needs_reference = True  # the unpruned images for the same prompts and seeds

    def score(self, prompts: Sequence[str], images: np.ndarray, reference: np.ndarray | None = None) -> pd.DataFrame:
        if reference is None:
            raise ValueError("the distance metric needs the unpruned reference images")
        diff = np.abs(images.astype(np.float32) - reference.astype(np.float32)).mean(axis=(1, 2, 3))  # (N,)
        return pd.DataFrame({"distance": np.nan_to_num(diff, nan=1.0)})
