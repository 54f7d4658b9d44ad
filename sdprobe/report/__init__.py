"""HTML reports of sdprobe runs, built in three stages (as in ydata-profiling):

1. compute: :mod:`~sdprobe.report.load` reads run directories, :mod:`~sdprobe.report.compute` derives summaries;
2. structure: :mod:`~sdprobe.report.structure` builds a tree of sections, tables and figures
   (:mod:`~sdprobe.report.tree`, figures from :mod:`~sdprobe.report.plots`);
3. render: :mod:`~sdprobe.report.render` fills Jinja2 templates into one self-contained page.

A report reads only run directories (see :mod:`sdprobe.runs`); it never loads a model.

Example:
    >>> from sdprobe.report import make_report
    >>> make_report([Path("runs/study")], Path("reports/study.html"))
    PosixPath('reports/study.html')
"""

from __future__ import annotations

import logging
from pathlib import Path

from sdprobe.report.load import CriticalSet, RunData, StudyData, discover, load_run
from sdprobe.report.render import render, write
from sdprobe.report.structure import build
from sdprobe.report.tree import Report, ReportOptions

log = logging.getLogger(__name__)


def make_report(paths: list[Path], out: Path, title: str | None = None, opts: ReportOptions | None = None) -> Path:
    """Read run or study directories and write their HTML report.

    Args:
        paths (list[Path]): run directories (with a ``config.json``) or folders holding runs (studies).
        out (Path): the HTML file to write (atomically; nothing is written when reading fails).
        title (str | None): page title. Default: derived from the folder names.
        opts (ReportOptions | None): report knobs. Default: ``ReportOptions()``.

    Returns:
        Path: ``out``.

    Raises:
        RunError: a folder is missing or holds no run.

    Example:
        >>> make_report([Path("runs/te-magnitude")], Path("reports/te.html"))
        PosixPath('reports/te.html')
    """
    sources = discover([Path(p) for p in paths])
    report = build(sources, opts=opts, title=title)
    write(report, Path(out))
    log.info("wrote %s (%d sections%s)", out, len(report.sections), ", PARTIAL" if report.partial else "")
    return Path(out)


__all__ = ["CriticalSet", "Report", "ReportOptions", "RunData", "StudyData", "build", "discover", "load_run",
           "make_report", "render", "write"]
