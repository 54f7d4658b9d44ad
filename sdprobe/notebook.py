"""Helpers for exploring sdprobe in Jupyter: image grids, a run's curves and its sample images across levels.

Each helper returns a :class:`Picture`, which Jupyter shows as a PNG (``_repr_png_``) and which can be saved with
:meth:`Picture.save`. Figures are drawn with matplotlib's object API, so nothing depends on pyplot's global state
or on the notebook's backend. The curves are the report's own (:mod:`sdprobe.report.plots`), with the same bands,
thresholds and chance lines.

Example:
    >>> from sdprobe.notebook import plot_curves, sample_grid, show_images
    >>> show_images(images, titles=prompts)          # (N, H, W, 3) floats in [0, 1]
    >>> plot_curves("runs/te-magnitude")             # one panel per metric
    >>> sample_grid("runs/te-magnitude")             # the fixed sample prompts, one row per level
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdprobe.io import atomic_write_bytes

IMAGE_INCHES = 2.2  # width of one image in a grid, inches
TITLE_FONT = 7  # font size of image titles
TITLE_WIDTH = 30  # characters per title line
GRID_DPI = 100  # resolution of image grids
STRIP_ROW_INCHES = 0.6  # height of one level's row in a sample grid, inches


@dataclass(frozen=True)
class Picture:
    """A PNG image that Jupyter displays; ``save(path)`` writes it."""

    png: bytes

    def _repr_png_(self) -> bytes:
        return self.png

    def save(self, path: Path | str) -> Path:
        """Write the PNG to ``path`` (atomically) and return the path."""
        atomic_write_bytes(Path(path), self.png)
        return Path(path)


def _picture(fig, dpi: int = GRID_DPI) -> Picture:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return Picture(buf.getvalue())


def show_images(images, titles: list[str] | None = None, columns: int = 4, size: float = IMAGE_INCHES,
                fontsize: int = TITLE_FONT, width: int = TITLE_WIDTH) -> Picture:
    """A grid of images, enlarged without smoothing (the organism's images are 32x32 pixels).

    Args:
        images (array-like): shape (N, H, W, 3), floats in [0, 1]; NaN pixels (a collapsed model) are shown black.
        titles (list[str] | None): one title per image; ``\\n`` starts a new line. Default: none.
        columns (int): images per row. Default: 4.
        size (float): width of one image, inches. Default: 2.2.
        fontsize (int): title font size. Default: 7.
        width (int): characters per title line before wrapping. Default: 30.

    Returns:
        Picture: shown by Jupyter.

    Example:
        >>> show_images(generate(pipe, prompts, seeds, GenerationConfig()), titles=prompts)
    """
    from sdprobe.report.plots import new_figure

    images = np.asarray(images, dtype=float)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must have shape (N, H, W, 3), got {images.shape}")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    n = len(images)
    columns = max(1, min(columns, n))
    rows = max(1, math.ceil(n / columns))
    fig = new_figure(size * columns, (size + (0.9 if titles else 0.1)) * rows)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes, images)):
        ax.imshow(np.nan_to_num(image).clip(0, 1), interpolation="nearest")
        if titles is not None:
            ax.set_title("\n".join(textwrap.fill(line, width) for line in str(titles[i]).split("\n")),
                         fontsize=fontsize)
    return _picture(fig)


def describe_reading(reading) -> str:
    """What the organism's oracle read from one image, in words: ``large red circle, top left`` or
    ``unreadable (reason)``."""
    if not reading.readable:
        return f"unreadable ({reading.reason})"
    a = reading.attributes
    return f"{a['size']} {a['color']} {a['shape']}, {a['position']}"


def _load(run):
    from sdprobe.report.load import load_run
    from sdprobe.runs import RunDir

    return load_run(run.path if isinstance(run, RunDir) else Path(run))


def plot_curves(run, metrics: list[str] | None = None, n_boot: int = 200, ci: float = 0.95, dpi: int = GRID_DPI,
                seed: int = 0) -> Picture:
    """A sweep's metric-vs-sparsity curves, as in its report: bootstrap bands over seeds, thresholds with their
    intervals (dashed, shaded), and each meaning's chance level (dotted).

    Args:
        run (RunDir | Path | str): a sweep run directory.
        metrics (list[str] | None): panels, in order. Default: every metric of the run.
        n_boot (int): bootstrap resamples of the bands. Default: 200.
        ci (float): coverage of the bands. Default: 0.95.
        dpi (int): resolution. Default: 100.
        seed (int): bootstrap seed. Default: 0.

    Returns:
        Picture: shown by Jupyter.

    Raises:
        RunError: the folder is not a run, or has no evaluated level yet.
        ValueError: a metric is not in the run.
    """
    from sdprobe.errors import RunError
    from sdprobe.report import compute, plots
    from sdprobe.runs import RunDir

    data = _load(run)
    if data.table("results") is None:  # an unfinished sweep: the levels evaluated so far
        data.tables["results"] = RunDir(data.path).results()  # raises RunError when there is none yet
    results = data.table("results")
    known = compute.metric_columns(data)
    metrics = list(metrics or known)
    unknown = [m for m in metrics if m not in results.columns]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} not in {data.path}; its metrics: {', '.join(known)}")
    if not metrics:
        raise RunError(f"{data.path} has no metric columns to plot")
    summary = compute.curve_summary(results, metrics, n_boot=n_boot, ci=ci, seed=seed)
    thresholds = data.table("thresholds")
    png = plots.curves([(data.name, summary, thresholds)], metrics, dpi, ci,
                       floors=compute.declared_floors(thresholds))
    return Picture(png)


def sample_grid(run, levels: list[float] | None = None, dpi: int = GRID_DPI) -> Picture:
    """The run's fixed sample prompts across levels: one row per level, one column per prompt (same seeds).

    Args:
        run (RunDir | Path | str): a sweep run directory with sample strips (``samples/<level>.png``).
        levels (list[float] | None): the rows. Default: every level with a strip.
        dpi (int): resolution. Default: 100.

    Returns:
        Picture: shown by Jupyter; the prompts are listed in the run's ``samples.json``.

    Raises:
        RunError: the run keeps no sample strips.
    """
    from PIL import Image

    from sdprobe.errors import RunError
    from sdprobe.report.plots import new_figure

    data = _load(run)
    strips = dict(data.sample_images)
    if not strips:
        raise RunError(f"{data.path} keeps no sample images (samples/<level>.png); sweep with n_samples > 0")
    chosen = sorted(strips) if levels is None else [lv for lv in levels if lv in strips]
    if not chosen:
        raise RunError(f"none of the levels {levels} has a sample strip in {data.path}; "
                       f"levels with one: {', '.join(f'{lv:g}' for lv in sorted(strips))}")
    rows = [np.asarray(Image.open(strips[lv]).convert("RGB")) for lv in chosen]
    height, width = rows[0].shape[:2]
    n_columns = max(1, round(width / height))
    fig = new_figure(min(16.0, 0.9 * n_columns + 1.2), STRIP_ROW_INCHES * len(rows) + 0.8)
    ax = fig.subplots()
    ax.imshow(np.concatenate(rows), interpolation="nearest")
    ax.set_yticks(height * np.arange(len(rows)) + height / 2, [f"{lv:.3f}" for lv in chosen], fontsize=7)
    cell = width / n_columns  # strips may separate images by a thin border
    ax.set_xticks(cell * np.arange(n_columns) + cell / 2, [str(i) for i in range(n_columns)], fontsize=7)
    ax.set_ylabel("sparsity (level)")
    ax.set_xlabel("sample prompt (see samples.json)")
    return _picture(fig, dpi)
