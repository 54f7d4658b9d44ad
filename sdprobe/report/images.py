"""Small PNGs for self-contained reports: every figure and sample strip is stored once, inside the HTML, so its
bytes are the report's size.

:func:`compact_png` flattens transparency onto white and stores the image with a palette of at most 256 colors,
without dithering. Figures (flat colors, anti-aliased lines and text) look the same with 256 colors; sample strips
of generated images become thumbnails with 32 (the run folder's ``samples/`` keeps every strip in full). The
re-encoded image is kept only when it is smaller.

Example:
    >>> small = compact_png(fig_png)   # about half the bytes of matplotlib's RGBA PNG
"""

from __future__ import annotations

import io

PALETTE = 256  # colors of a compact figure
THUMBNAIL_PALETTE = 32  # colors of a sample strip in the page (the run folder keeps the full strips)


def compact_png(data: bytes, colors: int = PALETTE) -> bytes:
    """``data`` (PNG bytes) re-encoded with a palette of ``colors``, or ``data`` itself when that is smaller."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
        else:
            flat = img.convert("RGB")
    small = flat.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(data) else data
