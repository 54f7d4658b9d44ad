"""Oracle accuracy per attribute and the unreadable rate, for the tiny-shapes organism."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from sdprobe.metrics.base import Quantity, directions
from sdprobe.world import ATTRIBUTES, MEANINGS, parse_prompt, read


class OracleMetric:
    """Per-attribute accuracy read by the exact oracle.

    For each image the columns are: one per meaning (1.0 right, 0.0 wrong or unreadable, NaN when the prompt
    does not state it), ``unreadable`` (1.0 or 0.0), and ``read_<meaning>`` (what the oracle read, for bias probes).

    Example:
        >>> OracleMetric().score(["a red circle"], images).loc[0, "color"]
        1.0
    """

    name = "oracle"
    meanings = MEANINGS  # the per-image correctness columns isolation, thresholds and bias can judge
    quantities = {**{m: Quantity(True, floor=1.0 / len(ATTRIBUTES[m])) for m in MEANINGS},  # chance accuracy
                  "unreadable": Quantity(False, floor=1.0)}  # every image unreadable
    higher_is_better = directions(quantities)

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Every prompt must be in the organism's grammar, whose stated attributes the oracle checks; raises
        ``ValueError`` naming the first one that is not."""
        for prompt in prompts:
            try:
                parse_prompt(prompt)
            except ValueError as exc:
                raise ValueError(f"the oracle metric reads only the organism's prompts: {exc}; use another metric "
                                 "(e.g. clipscore) for other prompts") from None

    def score(self, prompts: Sequence[str], images: np.ndarray, reference: np.ndarray | None = None) -> pd.DataFrame:
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
        rows = []
        for prompt, image in zip(prompts, images):
            stated = parse_prompt(prompt).stated()
            reading = read(image)
            row: dict[str, float | str | None] = {"unreadable": float(not reading.readable)}
            for m in MEANINGS:
                got = reading.attributes[m] if reading.readable else None
                row[m] = float(got == stated[m]) if m in stated else np.nan
                row[f"read_{m}"] = got
            rows.append(row)
        return pd.DataFrame(rows)
