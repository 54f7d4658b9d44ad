"""Small, atomic file writers shared by runs, reports and the CLI."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def make_folder(path: Path) -> Path:
    """Create the folder ``path`` and its parents; a regular file in the way raises ``NotADirectoryError`` naming
    it (``mkdir`` alone says only "File exists")."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory (a regular file is in the way of the "
                                         f"folder {path})", str(p))
            break
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not a file; give a file name", str(path))
    make_folder(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file's content; a file that is not UTF-8 text raises ``ValueError`` naming it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def read_json(path: Path):
    """A JSON file's content; a truncated or malformed file raises ``ValueError`` naming it and the place."""
    try:
        return json.loads(read_text(path, "JSON file"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
                         "it may be truncated or hand-edited") from None


def save_figure(fig, path: Path, dpi: int) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def image_grid(images: np.ndarray, columns: int, pad: int = 1) -> np.ndarray:
    """Tile (N, H, W, 3) images in [0, 1] into one uint8 grid with ``pad`` pixels of gray between them."""
    from sdprobe.generate import to_uint8

    imgs = to_uint8(images)
    n, h, w, _ = imgs.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 128, dtype=np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, columns)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = im
    return grid


def save_image_grid(images: np.ndarray, path: Path, columns: int, scale: int = 1) -> None:
    """Save images as one PNG grid, atomically; ``scale`` enlarges it with nearest-neighbour pixels."""
    import io

    from PIL import Image

    grid = image_grid(images, columns)
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
