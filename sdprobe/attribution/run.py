"""Attribution runs on disk (``kind: "attribution"``): tokens.csv, neurons.csv, weights.csv, overlap.csv and PNGs.

Example:
    >>> run_attribution(pipe, head, AttributionConfig(prompts=("a red circle",), target="color"), Path("runs/attr"))
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from sdprobe.attribution.neurons import attribute_neurons
from sdprobe.attribution.score import MeaningScore
from sdprobe.attribution.tokens import IGConfig, attribute_tokens, top1_rate
from sdprobe.attribution.trajectory import Trajectory, TrajectoryConfig
from sdprobe.io import atomic_write_bytes, save_figure, write_json
from sdprobe.runs import RunDir

log = logging.getLogger(__name__)
DPI = 110  # resolution of saved figures
TOP_UNITS = 20  # units shown in neurons.png


@dataclass(frozen=True)
class AttributionConfig:
    """What an attribution run computes."""

    prompts: tuple[str, ...]  # prompts to attribute
    target: str  # attribute scored, e.g. "color"
    values: tuple[str, ...] | None = None  # target value per prompt; None: what the head reads from each output
    seeds: tuple[int, ...] = (0,)  # seeds; one per prompt, or one for all
    model: str = ""  # recorded for the report
    neurons: tuple[str, ...] = ()  # selectors for unit attributions, e.g. ("text_encoder.mlp", "unet.attn2")
    neuron_method: str = "auto"
    critical_run: str | None = None  # sweep run whose critical sets saliency is compared with
    critical_meanings: tuple[str, ...] = ()
    ig: IGConfig = field(default_factory=IGConfig)  # token attributions
    # unit attributions average over the prompts already: one noise per prompt and 16 path steps keep them cheap
    neuron_ig: IGConfig = field(default_factory=lambda: IGConfig(n_steps=16, noise_samples=1))
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)

    def seeds_for_prompts(self) -> list[int]:
        if len(self.seeds) == 1:
            return list(self.seeds) * len(self.prompts)
        if len(self.seeds) != len(self.prompts):
            raise ValueError(f"give one seed, or one per prompt: got {len(self.seeds)} seeds for {len(self.prompts)} prompts")
        return list(self.seeds)

    def to_dict(self) -> dict:
        return {**asdict(self), "ig": self.ig.to_dict(), "neuron_ig": self.neuron_ig.to_dict(),
                "trajectory": self.trajectory.to_dict()}


def _save_fig(fig, path: Path) -> None:
    save_figure(fig, path, DPI)


def plot_tokens(table: pd.DataFrame, path: Path) -> None:
    """One bar chart of token attributions per prompt (first seed of each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(zip(table["prompt"], table["seed"])))
    fig, axes = plt.subplots(len(keys), 1, figsize=(6, 1.6 * len(keys)), squeeze=False)
    for ax, (prompt, seed) in zip(axes[:, 0], keys):
        rows = table[(table["prompt"] == prompt) & (table["seed"] == seed)]
        ax.bar(range(len(rows)), rows["attribution"], color=["C3" if a > 0 else "C0" for a in rows["attribution"]])
        ax.set_xticks(range(len(rows)), rows["token"], fontsize=7)
        ax.set_title(f"{prompt} (seed {seed}) -> {rows['target'].iloc[0]}={rows['value'].iloc[0]}", fontsize=8)
    _save_fig(fig, path)


def plot_neurons(table: pd.DataFrame, path: Path) -> None:
    """The units with the largest absolute attribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = table.reindex(table["attribution"].abs().sort_values(ascending=False).index).head(TOP_UNITS)
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(top) + 1))
    labels = [f"{c}.{l}[{u}]" for c, l, u in zip(top["component"], top["layer"], top["unit"])]
    ax.barh(range(len(top)), top["attribution"])
    ax.set_yticks(range(len(top)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("attribution")
    _save_fig(fig, path)


def run_attribution(pipe, head, config: AttributionConfig, out: Path, progress: bool = True) -> RunDir:
    """Compute token (and optionally unit and weight) attributions and write the run directory."""
    if config.neurons:
        from sdprobe.architecture import select

        select(pipe, config.neurons)  # unknown selectors fail before anything is written
    if config.critical_run:
        RunDir.open(Path(config.critical_run), kind="sweep")
    run = RunDir.open_or_create(Path(out), config.to_dict(), kind="attribution")
    seeds = config.seeds_for_prompts()
    score = MeaningScore(Trajectory(pipe, config.trajectory), head, config.target)
    tokens = attribute_tokens(score, config.prompts, seeds, config.values, config.ig, progress)
    atomic_write_bytes(run.path / "tokens.csv", tokens.to_csv(index=False).encode())
    plot_tokens(tokens, run.path / "tokens.png")
    summary = {"top1_rate": top1_rate(tokens), "n_prompts": len(config.prompts)}
    if config.neurons:
        neurons = attribute_neurons(score, config.neurons, config.prompts, seeds, config.values, config.neuron_method,
                                    config.neuron_ig, progress)
        atomic_write_bytes(run.path / "neurons.csv", neurons.to_csv(index=False).encode())
        plot_neurons(neurons, run.path / "neurons.png")
    if config.critical_run:
        from sdprobe.attribution.critical_overlap import overlap_with_run

        weights, overlap = overlap_with_run(Path(config.critical_run), pipe, head, config.critical_meanings,
                                            config.prompts, seeds, None, config.trajectory, progress)
        atomic_write_bytes(run.path / "weights.csv", weights.to_csv(index=False).encode())
        atomic_write_bytes(run.path / "overlap.csv", overlap.to_csv(index=False).encode())
        summary["overlap"] = overlap.to_dict(orient="records")
    write_json(run.path / "summary.json", summary)
    run.set_state("finished")
    log.info("token attribution: top word is the %s word for %.0f%% of %d prompts", config.target,
             100 * summary["top1_rate"], len(config.prompts))
    return run
