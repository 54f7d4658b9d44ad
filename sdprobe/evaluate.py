"""The organism's quality bar: per-attribute oracle accuracy, unreadable rate and the planted bias."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sdprobe.generate import GenerationConfig, generate
from sdprobe.metrics import OracleMetric, aggregate
from sdprobe.world import (
    MEANINGS,
    PLANTED_BIAS_COLOR,
    PLANTED_BIAS_SHAPE,
    PromptSpec,
    color_distribution,
    format_prompt,
    sample_specs,
)


@dataclass
class Evaluation:
    accuracy: dict[str, float]  # meaning -> accuracy over fully stated prompts
    unreadable: float  # share of unreadable images over all evaluated images
    bias_share: float  # share of PLANTED_BIAS_COLOR among readable color-less PLANTED_BIAS_SHAPE images
    bias_expected: float  # the world's share
    n_prompts: int
    n_bias: int

    def table(self) -> pd.DataFrame:
        rows = [{"quantity": f"{m} accuracy", "value": v, "bar": ">= 0.95"} for m, v in self.accuracy.items()]
        rows.append({"quantity": "unreadable", "value": self.unreadable, "bar": "<= 0.02"})
        rows.append({"quantity": f"'{PLANTED_BIAS_COLOR}' share of color-less {PLANTED_BIAS_SHAPE}s",
                     "value": self.bias_share, "bar": f"{self.bias_expected:.2f} +- 0.10"})
        return pd.DataFrame(rows)


def evaluate_organism(pipe, n: int = 256, n_bias: int = 128, seed: int = 12345,
                      config: GenerationConfig = GenerationConfig(), progress: bool = False) -> Evaluation:
    """Measure the organism against its quality bar on fresh prompts and seeds.

    Args:
        pipe: the organism pipeline (or a pruned view of it).
        n (int): fully stated prompts to score accuracy on. Default: 256.
        n_bias (int): color-less prompts of the biased shape. Default: 128.
        seed (int): draws the prompts and the generation seeds. Default: 12345.
        config (GenerationConfig): sampler settings.
        progress (bool): show a bar over the generated images. Default: False.

    Returns:
        Evaluation: accuracies, unreadable rate and the measured planted bias.
    """
    if n <= 0 or n_bias <= 0:
        raise ValueError(f"n and n_bias must be positive, got {n} and {n_bias}")
    rng = np.random.default_rng(seed)
    prompts = [format_prompt(s) for s in sample_specs(n, rng)]
    bias_specs = [PromptSpec(shape=PLANTED_BIAS_SHAPE, position=s.position, size=s.size) for s in sample_specs(n_bias, rng)]
    bias_prompts = [format_prompt(s) for s in bias_specs]
    all_prompts = prompts + bias_prompts
    seeds = rng.integers(0, 2**31 - 1, size=len(all_prompts)).tolist()
    table = OracleMetric().score(all_prompts, generate(pipe, all_prompts, seeds, config, progress=progress))
    stated = aggregate(table.iloc[:n])
    bias = table.iloc[n:]
    readable = bias[bias["unreadable"] == 0]
    share = float((readable["read_color"] == PLANTED_BIAS_COLOR).mean()) if len(readable) else float("nan")
    return Evaluation(
        accuracy={m: stated[m] for m in MEANINGS},
        unreadable=float(table["unreadable"].mean()),
        bias_share=share,
        bias_expected=color_distribution(PLANTED_BIAS_SHAPE)[PLANTED_BIAS_COLOR],
        n_prompts=n,
        n_bias=n_bias,
    )
