"""The tiny-shapes world: attributes, renderer, prompt grammar and the oracle that reads images back."""

from sdprobe.world.attributes import (
    ATTRIBUTES,
    COLORS,
    MEANINGS,
    PLANTED_BIAS_COLOR,
    PLANTED_BIAS_SHAPE,
    PLANTED_BIAS_SHARE,
    POSITIONS,
    SHAPES,
    SIZES,
    PromptSpec,
    Scene,
    color_distribution,
)
from sdprobe.world.grammar import format_prompt, parse_prompt, sample_specs, vocabulary
from sdprobe.world.oracle import DEFAULT_ORACLE, OracleConfig, Reading, read, read_batch
from sdprobe.world.render import DEFAULT_RENDER, RenderConfig, render, render_batch

__all__ = [
    "ATTRIBUTES", "COLORS", "MEANINGS", "POSITIONS", "SHAPES", "SIZES",
    "PLANTED_BIAS_COLOR", "PLANTED_BIAS_SHAPE", "PLANTED_BIAS_SHARE",
    "PromptSpec", "Scene", "color_distribution",
    "format_prompt", "parse_prompt", "sample_specs", "vocabulary",
    "DEFAULT_ORACLE", "OracleConfig", "Reading", "read", "read_batch",
    "DEFAULT_RENDER", "RenderConfig", "render", "render_batch",
]
