"""The oracle: a deterministic reader of the tiny-shapes attributes from an image.

No learned model is involved. The reader thresholds the foreground, finds connected blobs and measures the
main one: its mean color (nearest palette entry), the quadrant of its centroid and the extent of its bounding
box. The shape is read by analysis by synthesis: the blob's anti-aliased coverage (each pixel's position between
the background and the read color) is compared with the coverage the renderer draws for a circle, a square and a
triangle of the same centroid and area (:func:`~sdprobe.world.render.template`), and the closest one wins. Unlike
thresholded statistics such as the fill of the bounding box, this uses every edge pixel, so a slightly soft or
one-pixel-wider small shape is still read as what it looks like.
An image is *unreadable* when it is blank, has several sizeable blobs, or is mostly noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sdprobe.world.attributes import BACKGROUND, COLORS, MEANINGS, SHAPES
from sdprobe.world.render import template


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
    shape_margin: int = 2  # pixels around the main blob whose coverage the shape templates are compared on
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
    region = ndimage.binary_dilation(blob, iterations=config.shape_margin)
    shape = _closest_shape(img, bg, palette[names.index(color)], region)
    size = "large" if max(h, w) > config.large_extent * scale else "small"
    vertical = "top" if ys.mean() + 0.5 < res / 2 else "bottom"
    horizontal = "left" if xs.mean() + 0.5 < res / 2 else "right"
    return Reading({"color": color, "shape": shape, "position": f"{vertical} {horizontal}", "size": size})


def _closest_shape(img: np.ndarray, bg: np.ndarray, fg: np.ndarray, region: np.ndarray) -> str:
    """The shape whose rendered coverage, at the blob's centroid and area, is closest to the blob's coverage."""
    direction = fg - bg
    cover = np.clip((img - bg) @ direction / float(direction @ direction), 0.0, 1.0) * region  # (H, W)
    area = float(cover.sum())
    res = img.shape[0]
    yy, xx = np.mgrid[:res, :res] + 0.5
    centroid = (float((cover * xx).sum()) / area, float((cover * yy).sum()) / area)
    errors = {s: float(((template(s, centroid, area, res) - cover) ** 2).sum()) for s in SHAPES}
    return min(errors, key=errors.get)


def read_batch(images, config: OracleConfig = DEFAULT_ORACLE) -> list[Reading]:
    """Read a batch: an (N, H, W, 3) array or a list of images."""
    return [read(im, config) for im in images]


__all__ = ["OracleConfig", "DEFAULT_ORACLE", "Reading", "read", "read_batch", "MEANINGS"]
