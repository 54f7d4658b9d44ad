"""The attributes of the tiny-shapes world and their sampling distributions.

Every image holds one shape described by four attributes (color, shape, position, size). When a prompt
leaves an attribute out, its value is drawn from the distributions below. Color is the one attribute with a
planted bias: a circle whose color is not stated is red 80% of the time. Bias probes use that as ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLORS: dict[str, tuple[float, float, float]] = {  # name -> RGB in [0, 1]
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.80, 0.10),
    "blue": (0.15, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "purple": (0.70, 0.15, 0.85),
    "cyan": (0.10, 0.85, 0.85),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
POSITIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right")
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUND: tuple[float, float, float] = (0.0, 0.0, 0.0)

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "color": tuple(COLORS),
    "shape": SHAPES,
    "position": POSITIONS,
    "size": SIZES,
}
MEANINGS: tuple[str, ...] = tuple(ATTRIBUTES)

PLANTED_BIAS_SHAPE = "circle"  # the shape whose unstated color is skewed
PLANTED_BIAS_COLOR = "red"  # the color it leans to
PLANTED_BIAS_SHARE = 0.80  # share of that color when the prompt omits color


def color_distribution(shape: str) -> dict[str, float]:
    """Distribution of the color of ``shape`` when a prompt does not state a color.

    Args:
        shape (str): one of :data:`SHAPES`.

    Returns:
        dict[str, float]: probability of each color, summing to 1.

    Example:
        >>> color_distribution("circle")["red"]
        0.8
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    if shape != PLANTED_BIAS_SHAPE:
        return {c: 1.0 / len(COLORS) for c in COLORS}
    rest = (1.0 - PLANTED_BIAS_SHARE) / (len(COLORS) - 1)
    return {c: (PLANTED_BIAS_SHARE if c == PLANTED_BIAS_COLOR else rest) for c in COLORS}


@dataclass(frozen=True)
class Scene:
    """One fully specified scene: the values every attribute takes in an image."""

    color: str
    shape: str
    position: str
    size: str

    def __post_init__(self) -> None:
        for name, valid in ATTRIBUTES.items():
            value = getattr(self, name)
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ATTRIBUTES}


@dataclass(frozen=True)
class PromptSpec:
    """The attributes a prompt states; ``None`` means the prompt leaves that attribute out."""

    color: str | None = None
    shape: str | None = None
    position: str | None = None
    size: str | None = None

    def __post_init__(self) -> None:
        for name, valid in ATTRIBUTES.items():
            value = getattr(self, name)
            if value is not None and value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")

    def stated(self) -> dict[str, str]:
        """The attributes the prompt states, by name."""
        return {n: getattr(self, n) for n in ATTRIBUTES if getattr(self, n) is not None}

    def complete(self, rng: np.random.Generator) -> Scene:
        """Draw the unstated attributes from the world's distributions (color last, since it depends on shape)."""
        shape = self.shape or str(rng.choice(SHAPES))
        position = self.position or str(rng.choice(POSITIONS))
        size = self.size or str(rng.choice(SIZES))
        if self.color is not None:
            color = self.color
        else:
            dist = color_distribution(shape)
            color = str(rng.choice(list(dist), p=list(dist.values())))
        return Scene(color=color, shape=shape, position=position, size=size)
