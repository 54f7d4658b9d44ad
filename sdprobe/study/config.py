"""Configuration of a study: which sweeps, isolations, bias probes and attributions to run, read from TOML.

Every key is optional; see ``analyses/organism.toml`` for a commented recipe. ``quick()`` scales a config down
for CI and smoke tests while keeping every stage.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sdprobe.generate import GenerationConfig
from sdprobe.io import read_text
from sdprobe.sweep.config import ComponentPlan, SweepConfig

QUICK_PROMPTS = 12  # prompts per sweep level in --quick mode
QUICK_STEP = 0.15  # grid spacing in --quick mode
QUICK_DENOISE = 4  # denoising steps in --quick mode


@dataclass
class SweepSpec:
    """One sweep of a study; ``name`` is its sub-directory."""

    name: str
    components: dict[str, ComponentPlan]
    method: str = "magnitude"
    start: float = 0.0
    stop: float = 0.95
    step: float = 0.05
    refine: float | None = 0.005  # bisection resolution; 0 or None: the grid only
    group: str | None = None
    include_conv: bool = False

    def __post_init__(self) -> None:
        self.refine = self.refine or None


@dataclass
class IsolationSpec:
    sweep: str = "te-magnitude"  # the sweep whose collapses are isolated
    meanings: list[str] | None = field(default_factory=lambda: ["color"])  # None: every sudden meaning. One set that
    # replicates costs 2 x (200 + 50) confirmation evaluations, so the default study isolates one meaning
    window: str | list[float] = "transition"  # candidates: s_hold..s_fail of the largest collapse ("transition"),
    # its s_lo..s_hi ("bracket"), s_hold..s_fail of the largest sudden collapse ("sudden"), or two levels [start, stop]
    search_prompts: int | None = 16  # search-split prompts (the sweep's first ones); None: all
    confirm_prompts: int = 96  # confirmation-split prompts, fresh prompts and seeds (>= 80% power, see the README)
    controls: int = 200  # the most random control sets per direction (sequential: fewer when the set is clearly null)
    matched: int = 50  # the most magnitude-matched control sets per direction
    max_evaluations: int | None = 300  # search budget per meaning
    effect: float = 0.10  # the effect (share of images) the confirmation split must find with 80% power

    def config(self, seed: int):
        """The :class:`~sdprobe.isolate.IsolationConfig` of this spec."""
        from sdprobe.evidence import ConfirmConfig
        from sdprobe.isolate import IsolationConfig

        window = self.window if isinstance(self.window, str) else tuple(self.window)
        return IsolationConfig(window=window, n_search=self.search_prompts, n_confirm=self.confirm_prompts,
                               confirm=ConfirmConfig(n_controls=self.controls, n_matched=self.matched, seed=seed),
                               effect=self.effect, max_evaluations=self.max_evaluations, seed=seed)


@dataclass
class BiasSpec:
    probe: str = "default-color"
    n_images: int = 48  # images per probe group and condition
    components: list[str] = field(default_factory=lambda: ["text_encoder", "unet"])
    methods: list[str] = field(default_factory=lambda: ["magnitude"])
    sparsities: list[float] = field(default_factory=lambda: [0.4, 0.8])
    critical: bool = True  # also search bias-critical weights
    controls: int = 200  # the most random controls of the debiasing set's confirmation (sequential)
    alpha: float = 0.01  # the claim "this set debiases" needs a Holm-adjusted p below this

    def search_config(self, generation: GenerationConfig, seed: int):
        """The :class:`~sdprobe.bias.BiasSearchConfig` of the debiasing search (checks controls against alpha)."""
        from sdprobe.bias import BiasSearchConfig
        from sdprobe.evidence import ConfirmConfig

        return BiasSearchConfig(generation=generation, seed=seed, alpha=self.alpha,
                                confirm=ConfirmConfig(n_controls=self.controls, n_matched=0, seed=seed))


@dataclass
class AttributionSpec:
    n_prompts: int = 16  # prompts drawn from the grammar for token attribution
    target: str = "color"
    neurons: list[str] = field(default_factory=lambda: ["text_encoder.mlp"])
    compare_critical: bool = True  # compare weight saliency with the isolated critical sets
    ig_steps: int | None = None  # Integrated Gradients path steps; None: sdprobe.attribution.IGConfig's
    noise_samples: int | None = None  # noises averaged per prompt; None: IGConfig's


@dataclass
class StudyConfig:
    model: str = "builtin:tiny-shapes"
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0
    n_prompts: int = 32  # prompts per sweep level
    metrics: list[str] = field(default_factory=lambda: ["oracle", "distance"])
    metric_options: dict[str, dict] = field(default_factory=dict)  # metric -> constructor kwargs, e.g. clip_path
    prompts_file: str | None = None  # one prompt per line, or a prompt suite (.toml); None: the organism's grammar
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    sweeps: list[SweepSpec] = field(default_factory=list)
    isolation: IsolationSpec | None = field(default_factory=IsolationSpec)
    bias: BiasSpec | None = field(default_factory=BiasSpec)
    attribution: AttributionSpec | None = field(default_factory=AttributionSpec)

    def __post_init__(self) -> None:
        if not self.sweeps:
            self.sweeps = default_sweeps()
        names = [s.name for s in self.sweeps]
        if len(set(names)) != len(names):
            raise ValueError(f"sweep names must be unique, got {names}")
        if self.isolation is not None and self.isolation.sweep not in names:
            raise ValueError(f"isolation.sweep {self.isolation.sweep!r} is not one of the sweeps: {', '.join(names)}")
        for s in self.sweeps:  # validate every sweep now, before any model loads
            self.sweep_config(s)
        if self.bias is not None and self.bias.critical:
            try:
                self.bias.search_config(self.generation, self.seed)
            except ValueError as exc:
                raise ValueError(f"[bias] {exc}") from None

    def sweep_config(self, spec: SweepSpec) -> SweepConfig:
        return SweepConfig(model=self.model, components=spec.components, method=spec.method, group=spec.group,
                           include_conv=spec.include_conv, start=spec.start, stop=spec.stop, step=spec.step,
                           refine=spec.refine, prompts=self.prompts(), n_prompts=self.n_prompts, seed=self.seed,
                           metrics=self.metrics, metric_options=self.metric_options, generation=self.generation, device=self.device, dtype=self.dtype)

    def prompts(self) -> list[str] | None:
        """The prompts of ``prompts_file``, or None for the organism's grammar: a text file's first ``n_prompts``
        lines, or ``n_prompts`` of a prompt suite's (``.toml``) prompts drawn without replacement with the study's
        seed (a suite lists its prompts by category, so its first ones would all be of one kind)."""
        if self.prompts_file is None:
            return None
        import numpy as np

        from sdprobe.suites import read_prompts

        path = Path(self.prompts_file)
        if not path.exists():
            raise FileNotFoundError(f"prompts_file {path} not found")
        prompts = read_prompts(path, "prompts_file")
        if path.suffix.lower() == ".toml":
            order = np.random.default_rng(self.seed).permutation(len(prompts))
            prompts = [prompts[i] for i in order]
        return prompts[: self.n_prompts]

    def meaning_metric(self) -> str | None:
        """The first of the study's metrics that judges meanings (oracle, clip-attributes); bias probes are
        classified by it. None when the study measures none."""
        from sdprobe.metrics.registry import MEANING_METRICS

        return next((m for m in self.metrics if m in MEANING_METRICS), None)

    def suite(self) -> str:
        """The prompt suite of the study's clip-attributes metric (the organism's grammar by default)."""
        return self.metric_options.get("clip-attributes", {}).get("suite", "builtin:tiny-shapes")

    def clip_model(self) -> str | None:
        """The CLIP the study's CLIP metrics read with (their ``clip_path``): bias probes classified by CLIP and
        their heads use it too. None when no metric names one."""
        from sdprobe.metrics.registry import CLIP_METRICS

        paths = [o["clip_path"] for n, o in self.metric_options.items() if n in CLIP_METRICS and "clip_path" in o]
        return paths[0] if paths else None

    def to_dict(self) -> dict:
        return asdict(self)

    def quick(self) -> "StudyConfig":
        """The same study at CI scale: fewer prompts and levels, fewer denoising steps, small searches."""
        sweeps = [replace(s, step=max(s.step, QUICK_STEP), refine=None if s.refine is None else 0.05) for s in self.sweeps]
        gen = replace(self.generation, steps=min(self.generation.steps, QUICK_DENOISE))
        iso = replace(self.isolation, matched=5, search_prompts=8, confirm_prompts=16, effect=0.5,
                      max_evaluations=60) if self.isolation else None
        bias = replace(self.bias, n_images=16, sparsities=self.bias.sparsities[:2], critical=False) if self.bias else None
        attr = (replace(self.attribution, n_prompts=3, neurons=self.attribution.neurons[:1], ig_steps=8, noise_samples=1)
                if self.attribution else None)
        return replace(self, n_prompts=QUICK_PROMPTS, generation=gen, sweeps=sweeps, isolation=iso, bias=bias,
                       attribution=attr)


def default_sweeps() -> list[SweepSpec]:
    """Text encoder and UNet with magnitude, Wanda and random, and the joint line text encoder = UNet + 0.125."""
    te = {"text_encoder": ComponentPlan(["text_encoder"])}
    unet = {"unet": ComponentPlan(["unet"])}
    joint = {"text_encoder": ComponentPlan(["text_encoder"], offset=0.125), "unet": ComponentPlan(["unet"])}
    sweeps = []
    for prefix, comps in (("te", te), ("unet", unet)):
        for method in ("magnitude", "wanda", "random"):
            sweeps.append(SweepSpec(f"{prefix}-{method}", comps, method, refine=None if method == "random" else 0.005))
    sweeps.append(SweepSpec("joint-magnitude", joint, "magnitude", stop=0.85, refine=None))
    return sweeps


_SECTIONS = {"isolation": IsolationSpec, "bias": BiasSpec, "attribution": AttributionSpec}


def load_study_config(path: Path) -> StudyConfig:
    """Read a study recipe from TOML; unknown keys are errors that name the valid ones."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"study config {path} not found")
    try:
        data = tomllib.loads(read_text(path, "study config"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"study config {path} is not valid TOML: {exc}") from None
    return study_config_from_dict(data)


def _matches(value, hint) -> bool:
    """Whether a TOML value fits a field's type hint (ints are accepted for floats, never bools for numbers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, (dict, hint))
    return True


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "absent"
    if origin in (list, tuple):
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return "a table"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _check_keys(where: str, data: dict, cls) -> None:
    """Unknown keys and values of the wrong type are errors that name the key, the value and what is allowed."""
    if not isinstance(data, dict):
        raise ValueError(f"[{where}] must be a table of keys, got {data!r}")
    unknown = sorted(set(data) - set(cls.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{where}]; valid: {', '.join(cls.__dataclass_fields__)}")
    missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and f.name not in data]
    if missing:
        raise ValueError(f"[{where}] lacks the required key(s) {missing}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if not _matches(value, hints[key]):
            raise ValueError(f"[{where}] {key} = {value!r}: expected {_describe(hints[key])}")


def study_config_from_dict(data: dict) -> StudyConfig:
    data = dict(data)
    for key in _SECTIONS:  # a section turned off: `bias = false` or [bias] enabled = false
        if data.get(key) is False or data.get(key) == {"enabled": False}:
            data[key] = None
    _check_keys("study", data, StudyConfig)
    if "generation" in data:
        _check_keys("generation", data["generation"], GenerationConfig)
        data["generation"] = GenerationConfig(**data["generation"])
    if "sweeps" in data:
        if not isinstance(data["sweeps"], list):
            raise ValueError("sweeps must be an array of tables ([[sweeps]] sections)")
        sweeps = []
        for s in data["sweeps"]:
            _check_keys("sweeps", s, SweepSpec)
            if not isinstance(s.get("components"), dict):
                raise ValueError(f"[[sweeps]] {s.get('name', '?')}: components must be a table, e.g. "
                                 "{ text_encoder = { selectors = [\"text_encoder\"] } }")
            comps = {}
            for c, v in s["components"].items():
                if isinstance(v, dict):
                    _check_keys(f"sweeps.components.{c}", v, ComponentPlan)
                    comps[c] = ComponentPlan(**v)
                elif _matches(v, list[str]):
                    comps[c] = ComponentPlan(list(v))
                else:
                    raise ValueError(f"[[sweeps]] components.{c} = {v!r}: expected a list of selectors or a table")
            sweeps.append(SweepSpec(**{**s, "components": comps}))
        data["sweeps"] = sweeps
    for key, cls in _SECTIONS.items():
        if key in data:
            section = data[key]
            if section is None:
                continue
            _check_keys(key, section, cls)
            data[key] = cls(**section)
    return StudyConfig(**data)
