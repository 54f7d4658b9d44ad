"""The oracle: a deterministic reader of the tiny-shapes attributes from an image.

No learned model is involved. The reader thresholds the foreground, finds connected blobs and measures the
main one: its mean color (nearest palette entry), its fill ratio inside its bounding box (square ~1.0,
circle ~0.79), how much it tapers from bottom to top (triangles point up), the quadrant of its centroid and the extent of its bounding box.
An image is *unreadable* when it is blank, has several sizeable blobs, or is mostly noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sdprobe.world.attributes import BACKGROUND, COLORS, MEANINGS


@dataclass(frozen=True)
class OracleConfig:
    """Thresholds of the reader (images in [0, 1])."""

    foreground: float = 0.35  # a pixel is foreground when its largest channel departs this much from the background
    min_area: int = 8  # smallest blob (pixels) that counts as a shape; smaller specks are ignored
    second_blob_ratio: float = 0.25  # a second blob this large relative to the main one makes the image unreadable
    max_stray: float = 0.35  # foreground outside the main blob, relative to its area, beyond which it is noise
    max_background_std: float = 0.12  # std of the background pixels beyond which the image is noise
    max_area_fraction: float = 0.4  # a blob covering more of the image than this is not a shape of the world
    max_color_std: float = 0.2  # std of the colors inside the blob's core beyond which the blob is noise
    square_fill: float = 0.88  # fill ratio above which a blob is a square
    triangle_taper: float = 0.5  # top-third over bottom-third width below which a blob is an (upward) triangle
    large_extent: float = 9.5  # bounding-box side (pixels, at 32 px) above which a blob is large


DEFAULT_ORACLE = OracleConfig()
UNREADABLE = None


@dataclass(frozen=True)
class Reading:
    """What the oracle read from one image. ``attributes`` is ``None`` when the image is unreadable."""

    attributes: dict[str, str] | None
    reason: str = ""  # why the image is unreadable, empty otherwise

    @property
    def readable(self) -> bool:
        return self.attributes is not None


def _to_float(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {arr.shape}")
    return arr


def read(image, config: OracleConfig = DEFAULT_ORACLE) -> Reading:
    """Read the attributes of one image.

    Args:
        image (np.ndarray | PIL.Image.Image): (H, W, 3) RGB, uint8 or float in [0, 1].
        config (OracleConfig): thresholds. Default: :data:`DEFAULT_ORACLE`.

    Returns:
        Reading: the attributes, or the reason the image is unreadable.

    Example:
        >>> from sdprobe.world import Scene, render
        >>> read(render(Scene("red", "circle", "top left", "large"))).attributes["shape"]
        'circle'
    """
    img = _to_float(image)
    if not np.isfinite(img).all():
        return Reading(None, "non-finite pixels")
    res = img.shape[0]
    scale = res / 32.0
    bg = np.asarray(BACKGROUND, dtype=np.float32)
    departure = np.abs(img - bg).max(axis=-1)  # (H, W)
    fg = departure > config.foreground
    labels, n = ndimage.label(fg, structure=np.ones((3, 3)))
    if n == 0:
        return Reading(None, "blank")
    areas = ndimage.sum_labels(fg, labels, index=np.arange(1, n + 1))
    order = np.argsort(areas)[::-1]
    main_area = areas[order[0]]
    if main_area < config.min_area * scale**2:
        return Reading(None, "blank")
    if n > 1 and areas[order[1]] >= max(config.min_area * scale**2, config.second_blob_ratio * main_area):
        return Reading(None, "several blobs")
    if areas.sum() - main_area > config.max_stray * main_area:
        return Reading(None, "noise")
    blob = labels == (order[0] + 1)
    if img[~fg].std() > config.max_background_std:
        return Reading(None, "noise")

    if main_area > config.max_area_fraction * fg.size:
        return Reading(None, "fills the image")
    core = blob & (departure > 0.5 * departure[blob].max())
    if img[core].std(axis=0).max() > config.max_color_std:
        return Reading(None, "noise")
    mean = img[core].mean(axis=0)
    names = list(COLORS)
    palette = np.asarray([COLORS[c] for c in names], dtype=np.float32)
    color = names[int(np.argmin(((palette - mean) ** 2).sum(axis=1)))]

    ys, xs = np.nonzero(blob)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    fill = main_area / float(h * w)
    widths = blob[ys.min() : ys.max() + 1].sum(axis=1)  # (h,) blob width on each row
    third = max(1, h // 3)
    taper = widths[:third].mean() / max(widths[-third:].mean(), 1.0)
    if taper < config.triangle_taper:
        shape = "triangle"
    else:
        shape = "square" if fill > config.square_fill else "circle"
    size = "large" if max(h, w) > config.large_extent * scale else "small"
    vertical = "top" if ys.mean() + 0.5 < res / 2 else "bottom"
    horizontal = "left" if xs.mean() + 0.5 < res / 2 else "right"
    return Reading({"color": color, "shape": shape, "position": f"{vertical} {horizontal}", "size": size})


def read_batch(images, config: OracleConfig = DEFAULT_ORACLE) -> list[Reading]:
    """Read a batch: an (N, H, W, 3) array or a list of images."""
    return [read(im, config) for im in images]


__all__ = ["OracleConfig", "DEFAULT_ORACLE", "Reading", "read", "read_batch", "MEANINGS"]
