"""The prompt grammar of the tiny-shapes world.

A prompt is ``a [size] [color] (shape|"shape") [at the (top|bottom) (left|right)]``, e.g.
``"a large red circle at the top left"`` or ``"a circle"``. Any attribute may be left out.
"""

from __future__ import annotations

import re

import numpy as np

from sdprobe.world.attributes import ATTRIBUTES, COLORS, POSITIONS, SHAPES, SIZES, PromptSpec

GENERIC_NOUN = "shape"  # the noun used when the prompt does not name a shape
_PATTERN = re.compile(
    r"^an? (?:(?P<size>%s) )?(?:(?P<color>%s) )?(?P<shape>%s)(?: at the (?P<position>%s))?$"
    % ("|".join(SIZES), "|".join(COLORS), "|".join((*SHAPES, GENERIC_NOUN)), "|".join(POSITIONS))
)


def format_prompt(spec: PromptSpec) -> str:
    """Write the prompt that states exactly the attributes of ``spec``.

    Example:
        >>> format_prompt(PromptSpec(color="red", shape="circle", position="top left"))
        'a red circle at the top left'
    """
    words = ["a"]
    if spec.size:
        words.append(spec.size)
    if spec.color:
        words.append(spec.color)
    words.append(spec.shape or GENERIC_NOUN)
    if spec.position:
        words += ["at", "the", spec.position]
    return " ".join(words)


def parse_prompt(prompt: str) -> PromptSpec:
    """Read the stated attributes back from a prompt of the grammar.

    Raises:
        ValueError: the prompt is not in the grammar.

    Example:
        >>> parse_prompt("a small blue square").stated()
        {'color': 'blue', 'shape': 'square', 'size': 'small'}
    """
    m = _PATTERN.match(" ".join(prompt.lower().split()))
    if m is None:
        raise ValueError(f"prompt {prompt!r} is not in the tiny-shapes grammar, e.g. 'a large red circle at the top left'")
    d = m.groupdict()
    if d["shape"] == GENERIC_NOUN:
        d["shape"] = None
    return PromptSpec(**d)


def sample_specs(n: int, rng: np.random.Generator, p_omit: float = 0.0) -> list[PromptSpec]:
    """Draw ``n`` prompt specs; each attribute is left out independently with probability ``p_omit``."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    specs = []
    for _ in range(n):
        values = {name: str(rng.choice(valid)) for name, valid in ATTRIBUTES.items()}
        for name in ATTRIBUTES:
            if rng.random() < p_omit:
                values[name] = None
        specs.append(PromptSpec(**values))
    return specs


def vocabulary() -> list[str]:
    """Every word the grammar can produce."""
    words = {"a", "an", "at", "the", GENERIC_NOUN, *COLORS, *SHAPES, *SIZES}
    for p in POSITIONS:
        words.update(p.split())
    return sorted(words)
