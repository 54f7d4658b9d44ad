"""Stage 3 of a report: render the section tree into one self-contained HTML page with Jinja2.

Autoescaping is on for everything, so prompts, names and paths can never inject markup. Figures and images are
embedded as ``data:`` URIs; the page references nothing outside itself and opens offline.
"""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2

from sdprobe.io import atomic_write_text
from sdprobe.report.tree import Report

TEMPLATE = "report.html"
TEMPLATES_DIR = Path(__file__).parent / "templates"


def environment() -> jinja2.Environment:
    """The report templates' Jinja2 environment (autoescaping on, undefined names are errors)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
    return env


def render(report: Report) -> str:
    """The report as an HTML page.

    Args:
        report (Report): from :func:`sdprobe.report.structure.build`.

    Returns:
        str: a complete, self-contained HTML document.

    Example:
        >>> html = render(build(discover([Path("runs/te-mag")])))
        >>> html.startswith("<!DOCTYPE html>")
        True
    """
    return environment().get_template(TEMPLATE).render(report=report)


def write(report: Report, path: Path) -> Path:
    """Render ``report`` and write it to ``path`` atomically (a reader sees the old page or the whole new one)."""
    html = render(report)
    atomic_write_text(Path(path), html)
    return Path(path)
