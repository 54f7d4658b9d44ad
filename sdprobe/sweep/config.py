"""Configuration of a progressive pruning sweep."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from sdprobe import checks
from sdprobe.architecture import COMPONENTS
from sdprobe.generate import GenerationConfig
from sdprobe.prune.factory import METHODS
from sdprobe.prune.layout import parse_group

CALIBRATED_METHODS = ("wanda", "owl-wanda")  # methods that run the pipeline on calibration prompts

DENSE_LEVEL = 0.0  # always evaluated: the reference every threshold is judged against
GRID_DECIMALS = 4  # levels are rounded to this many decimals, so resumed runs name the same levels
MAX_COMPONENT_SPARSITY = 0.99  # a component's sparsity (level + offset) is clamped below this


@dataclass
class ComponentPlan:
    """What to prune in one component and how its sparsity follows the sweep level.

    Attributes:
        selectors (list[str]): architecture selectors, e.g. ``["text_encoder"]`` or ``["unet.attn2"]``.
        offset (float): this component's sparsity is ``level + offset`` (the SD2 study's joint line uses
            text encoder = UNet + 0.125). Default: 0.
    """

    selectors: list[str]
    offset: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.selectors, str) or not self.selectors:
            raise ValueError(f"selectors must be a non-empty list, e.g. ['text_encoder'], got {self.selectors!r}")
        checks.offset("offset", self.offset)

    def sparsity(self, level: float) -> float:
        return float(min(max(level + self.offset, 0.0), MAX_COMPONENT_SPARSITY))


@dataclass
class SweepConfig:
    """Everything that determines a sweep's results. Saved as the run's ``config.json``; a resume must match it."""

    model: str = "builtin:tiny-shapes"
    components: dict[str, ComponentPlan] = field(default_factory=lambda: {"text_encoder": ComponentPlan(["text_encoder"])})
    method: str = "magnitude"
    group: str | None = None  # comparison group (matrix, row, global, nm:M); None: the method's own
    include_conv: bool = False  # also prune Conv2d weights (the SD2 study pruned Linear only)
    start: float = 0.0  # first level of the uniform grid (level 0 is evaluated in any case)
    stop: float = 0.95  # last level of the uniform grid
    step: float = 0.1  # grid spacing; refinement bisects each collapse from there (benchmarks/threshold_coverage.py)
    refine: float | None = 0.005  # bisect collapse brackets down to this resolution; None: no refinement
    max_refine_rounds: int = 12  # refinement rounds at most (each round evaluates the proposed levels)
    prompts: list[str] | None = None  # explicit prompts; None: draw n_prompts from the organism's grammar
    n_prompts: int = 64  # prompts drawn when ``prompts`` is None
    seed: int = 0  # draws prompts, generation seeds and random scores
    n_samples: int = 8  # the first n_samples prompts are saved as image strips at every level
    n_calibration: int = 32  # calibration prompts for Wanda / OWL-Wanda
    metrics: list[str] = field(default_factory=lambda: ["oracle", "distance"])
    metric_options: dict[str, dict] = field(default_factory=dict)  # metric -> constructor kwargs, e.g. clip_path
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        checks.fraction("start", self.start)
        checks.fraction("stop", self.stop)
        if self.start > self.stop:
            raise ValueError(f"start ({self.start}) must not exceed stop ({self.stop})")
        checks.positive("step", self.step)
        if self.refine is not None:
            checks.positive("refine resolution", self.refine)
        checks.seed("seed", self.seed)
        checks.positive_int("n_prompts", self.n_prompts)
        checks.non_negative_int("n_samples", self.n_samples)
        checks.positive_int("max_refine_rounds", self.max_refine_rounds)
        if self.group is not None:
            parse_group(self.group)
        if not self.components:
            raise ValueError(f"no component to prune; give at least one of {', '.join(COMPONENTS)}")
        unknown = [c for c in self.components if c not in COMPONENTS]
        if unknown:
            raise ValueError(f"unknown component {unknown[0]!r}; valid: {', '.join(COMPONENTS)}")
        if self.method in CALIBRATED_METHODS and self.n_calibration <= 0:
            raise ValueError(f"{self.method} needs calibration prompts; n_calibration must be positive, "
                             f"got {self.n_calibration}")
        if self.prompts is not None and len(self.prompts) == 0:
            raise ValueError("the prompt list is empty")
        if isinstance(self.generation, dict):
            self.generation = GenerationConfig(**self.generation)
        self.components = {k: ComponentPlan(**v) if isinstance(v, dict) else v for k, v in self.components.items()}

    def grid(self) -> list[float]:
        """The uniform grid of levels, start..stop inclusive (``stop`` is a level even when the step does not land
        on it), and level 0 whatever the window: collapse detection judges every level against the dense model
        (:mod:`sdprobe.thresholds`)."""
        n = int(np.floor((self.stop - self.start) / self.step + 1e-9))
        levels = [round(self.start + i * self.step, GRID_DECIMALS) for i in range(n + 1)]
        return sorted({DENSE_LEVEL, *levels, round(self.stop, GRID_DECIMALS)})

    def max_sparsity(self, component: str) -> float:
        """The highest sparsity the component reaches, refinement included."""
        return self.components[component].sparsity(self.stop)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SweepConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**d)
