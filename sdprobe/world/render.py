"""Procedural renderer of the tiny-shapes world: one anti-aliased shape on a plain background."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdprobe.world.attributes import BACKGROUND, COLORS, Scene


@dataclass(frozen=True)
class RenderConfig:
    """Geometry of the world. All lengths are in pixels of the final image."""

    resolution: int = 32  # images are resolution x resolution RGB
    small_radius: float = 3.5  # half-extent of a small shape
    large_radius: float = 6.0  # half-extent of a large shape
    jitter: float = 1.5  # uniform jitter of the centre, +- this many pixels on each axis
    supersample: int = 4  # anti-aliasing: render at this factor and average down


DEFAULT_RENDER = RenderConfig()


def _quadrant_centre(position: str, res: int) -> tuple[float, float]:
    vertical, horizontal = position.split()
    x = res * (0.25 if horizontal == "left" else 0.75)
    y = res * (0.25 if vertical == "top" else 0.75)
    return x, y


SQUARE_HALF = 0.9  # a square's half-side over r: squares look as heavy as circles of the same size


def _coverage(shape: str, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if shape == "square":
        h = SQUARE_HALF * r
        return (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)
    if shape == "triangle":  # isosceles, pointing up, base 2r and height 2r
        top, bottom = cy - r, cy + r
        t = (ys - top) / (2 * r)  # 0 at apex, 1 at base
        return (ys >= top) & (ys <= bottom) & (np.abs(xs - cx) <= t * r)
    raise ValueError(f"unknown shape {shape!r}")


def _supersampled_grid(res: int, ss: int) -> tuple[np.ndarray, np.ndarray]:
    grid = (np.arange(res * ss) + 0.5) / ss  # sub-pixel centres in image coordinates
    return np.meshgrid(grid, grid)  # (H*ss, W*ss)


def template(shape: str, centroid: tuple[float, float], area: float, resolution: int = 32,
             supersample: int = 4) -> np.ndarray:
    """The anti-aliased coverage (H, W) in [0, 1] of ``shape`` with a given centroid and area, as :func:`render`
    draws it.

    The inverse of rendering for the oracle: a shape is placed by its centre and size ``r`` when drawn; this places
    it by the centroid and area that can be measured on an image (a triangle's centroid lies ``r / 3`` below its
    centre).

    Args:
        shape (str): "circle", "square" or "triangle".
        centroid (tuple[float, float]): (x, y) in pixels, pixel centres at +0.5.
        area (float): area in pixels (> 0).
        resolution (int): image side. Default: 32.
        supersample (int): anti-aliasing factor. Default: 4.

    Example:
        >>> round(float(template("circle", (8.0, 8.0), 38.5).sum()), 1)
        38.5
    """
    if not area > 0:
        raise ValueError(f"area must be positive, got {area}")
    cx, cy = centroid
    if shape == "circle":
        r = float(np.sqrt(area / np.pi))
    elif shape == "square":
        r = float(np.sqrt(area)) / (2 * SQUARE_HALF)
    elif shape == "triangle":  # area 2 r^2
        r = float(np.sqrt(area / 2))
        cy = cy - r / 3
    else:
        raise ValueError(f"unknown shape {shape!r}")
    xs, ys = _supersampled_grid(resolution, supersample)
    cover = _coverage(shape, cx, cy, r, xs, ys).astype(np.float32)
    return cover.reshape(resolution, supersample, resolution, supersample).mean(axis=(1, 3))


def render(scene: Scene, rng: np.random.Generator | None = None, config: RenderConfig = DEFAULT_RENDER) -> np.ndarray:
    """Render one scene.

    Args:
        scene (Scene): the attributes to draw.
        rng (np.random.Generator, optional): source of the centre jitter; ``None`` draws no jitter.
        config (RenderConfig): geometry. Default: :data:`DEFAULT_RENDER`.

    Returns:
        np.ndarray: float32 image of shape (H, W, 3) with values in [0, 1].

    Example:
        >>> img = render(Scene("red", "circle", "top left", "large"))
        >>> img.shape
        (32, 32, 3)
    """
    res, ss = config.resolution, config.supersample
    cx, cy = _quadrant_centre(scene.position, res)
    if rng is not None:
        cx += rng.uniform(-config.jitter, config.jitter)
        cy += rng.uniform(-config.jitter, config.jitter)
    r = config.small_radius if scene.size == "small" else config.large_radius
    xs, ys = _supersampled_grid(res, ss)
    cover = _coverage(scene.shape, cx, cy, r, xs, ys).astype(np.float32)
    cover = cover.reshape(res, ss, res, ss).mean(axis=(1, 3))[..., None]  # (H, W, 1)
    fg = np.asarray(COLORS[scene.color], dtype=np.float32)
    bg = np.asarray(BACKGROUND, dtype=np.float32)
    return (cover * fg + (1.0 - cover) * bg).astype(np.float32)


def render_batch(scenes: list[Scene], rng: np.random.Generator, config: RenderConfig = DEFAULT_RENDER) -> np.ndarray:
    """Render several scenes with jitter drawn from ``rng``; returns (N, H, W, 3) float32."""
    return np.stack([render(s, rng, config) for s in scenes])
