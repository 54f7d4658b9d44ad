"""Stage 1a of a report: find run directories on disk and read their tables.

A report reads only what the compute commands wrote (see :mod:`sdprobe.runs` for the layout); it never loads a
model. A *run* is any folder with a ``config.json``; a *study* is a folder that holds runs below it (``sdprobe
study`` also writes a ``study.json`` there). Missing files are not errors: the section that needs them is skipped.
Files that exist but cannot be read become notes shown in the report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sdprobe.errors import RunError
from sdprobe.io import read_json
from sdprobe.runs import CONFIG, CRITICAL_DIR, ENVIRONMENT, SAMPLES_DIR, RunDir

log = logging.getLogger(__name__)

STUDY = "study.json"
KINDS = ("sweep", "bias", "attribution")  # run kinds a report knows how to show
FINISHED = "finished"  # the status.json state of a complete run


@dataclass
class CriticalSet:
    """One ``critical/<meaning>/`` folder: its summary and, when present, its weights and controls tables."""

    meaning: str
    summary: dict
    weights: pd.DataFrame | None = None
    controls: pd.DataFrame | None = None


@dataclass
class RunData:
    """Everything a report shows about one run directory.

    Attributes:
        path (Path): the run directory.
        name (str): its label in the report (path relative to its study, or the folder name).
        kind (str): ``config["kind"]``, one of :data:`KINDS` (other kinds get only their configuration shown).
        config, environment (dict): ``config.json`` and ``environment.json`` (empty when missing).
        state (str): ``status.json`` state, ``"unknown"`` without one.
        tables (dict[str, pd.DataFrame]): the run's tables by name (``results``, ``layers``, ``thresholds``,
            ``distribution``, ``metrics``, ``vs_sparsity``, ``tokens``, ``neurons``, ``weights``, ``overlap``).
        samples (dict | None): ``samples.json``.
        sample_images (list[tuple[float, Path]]): ``samples/<L>.png`` strips, sorted by level.
        critical (list[CriticalSet]): critical sets, sorted by meaning.
        no_set (dict[str, str]): meanings whose isolation found no set on the search split, with the reason.
        bias_critical (list[BiasSet]): a bias run's debiasing searches (``critical/<group>/``), by group.
        notes (list[str]): files that exist but could not be read.
    """

    path: Path
    name: str
    kind: str
    config: dict
    environment: dict
    state: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    samples: dict | None = None
    sample_images: list[tuple[float, Path]] = field(default_factory=list)
    critical: list[CriticalSet] = field(default_factory=list)
    bias_critical: list["BiasSet"] = field(default_factory=list)
    no_set: dict[str, str] = field(default_factory=dict)  # meaning -> why isolation found no set (skipped.json)
    notes: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return self.state != FINISHED

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


@dataclass
class StudyData:
    """A folder of runs. ``meta`` is its ``study.json`` (empty when the folder has none)."""

    path: Path
    name: str
    meta: dict
    runs: list[RunData]

    @property
    def missing(self) -> list[str]:
        """Runs that ``study.json`` plans (key ``runs``: a list or dict of names) but that are not on disk."""
        planned = self.meta.get("runs") or []
        names = list(planned) if isinstance(planned, (list, dict)) else []
        have = {r.name for r in self.runs}
        return [str(n) for n in names if isinstance(n, str) and n not in have]

    @property
    def partial(self) -> bool:
        state = self.meta.get("state")
        return any(r.partial for r in self.runs) or bool(self.missing) or (state is not None and state != FINISHED)


_KIND_TABLES = {  # kind -> (table name, file name) read when present
    "sweep": (("layers", "layers.csv"), ("sets", "sets.csv"), ("thresholds", "thresholds.csv")),
    "bias": (("distribution", "distribution.csv"), ("metrics", "metrics.csv"), ("vs_sparsity", "vs_sparsity.csv")),
    "attribution": (("tokens", "tokens.csv"), ("neurons", "neurons.csv"), ("weights", "weights.csv"),
                    ("overlap", "overlap.csv")),
}


def _read_csv(path: Path, notes: list[str]) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        notes.append(f"could not read {path.name}: {exc}")
        return None


def _read_json(path: Path, notes: list[str]) -> dict | None:
    if not path.exists():
        return None
    try:
        value = read_json(path)
    except (ValueError, OSError) as exc:  # truncated JSON, not UTF-8, unreadable: the page says so
        notes.append(f"could not read {path.name}: {exc}")
        return None
    return value if isinstance(value, dict) else None


def _sample_images(path: Path) -> list[tuple[float, Path]]:
    out = []
    for p in (path / SAMPLES_DIR).glob("*.png"):
        try:
            out.append((float(p.stem), p))
        except ValueError:
            continue
    return sorted(out)


@dataclass
class BiasSet:
    """One debiasing search of a bias run: ``summary.json`` and its tables (``explicit``, ``dose``, ``controls``,
    ``search``; None when missing)."""

    group: str
    summary: dict
    tables: dict[str, pd.DataFrame | None]


def _bias_sets(path: Path, notes: list[str]) -> list[BiasSet]:
    root = path / CRITICAL_DIR
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        summary = _read_json(d / "summary.json", notes)
        if summary is not None:
            out.append(BiasSet(str(summary.get("group", d.name)), summary,
                               {t: _read_csv(d / f"{t}.csv", notes) for t in ("explicit", "dose", "controls", "search")}))
    return out


def _critical_sets(path: Path, notes: list[str]) -> list[CriticalSet]:
    root = path / CRITICAL_DIR
    if not root.is_dir():
        return []
    sets = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        summary = _read_json(d / "summary.json", notes)
        if summary is None:
            continue
        sets.append(CriticalSet(meaning=str(summary.get("meaning", d.name)), summary=summary,
                                weights=_read_csv(d / "weights.csv", notes),
                                controls=_read_csv(d / "controls.csv", notes)))
    return sets


def load_run(path: Path, name: str | None = None) -> RunData:
    """Read one run directory.

    Args:
        path (Path): a folder with a ``config.json``.
        name (str | None): label in the report. Default: the folder name.

    Returns:
        RunData: the run's configuration and whatever tables it has so far.

    Raises:
        RunError: ``path`` is not a run.

    Example:
        >>> run = load_run(Path("runs/study/te-magnitude"))
        >>> run.kind, run.partial
        ('sweep', False)
    """
    rd = RunDir.open(path)
    notes: list[str] = []
    config = rd.config()  # a run whose config cannot be read cannot be reported: exit 2 naming the file
    if not isinstance(config, dict):
        raise ValueError(f"{rd.path / CONFIG} does not hold a JSON object; the run cannot be reported")
    try:
        state = rd.state()
    except (ValueError, KeyError, OSError) as exc:
        notes.append(f"could not read status.json: {exc}")
        state = "unknown"
    run = RunData(path=rd.path, name=name or rd.path.name, kind=str(config.get("kind", "unknown")), config=config,
                  environment=_read_json(rd.path / ENVIRONMENT, notes) or {}, state=state, notes=notes)
    if run.kind == "sweep":
        try:
            run.tables["results"] = rd.results()
        except RunError:
            log.debug("%s has no evaluated levels yet", rd.path)
        run.samples = _read_json(rd.path / "samples.json", notes)
        run.sample_images = _sample_images(rd.path)
    for table, file in _KIND_TABLES.get(run.kind, ()):
        df = _read_csv(rd.path / file, notes)
        if df is not None:
            run.tables[table] = df
    if run.kind == "sweep":
        run.critical = _critical_sets(rd.path, notes)
        skipped = _read_json(rd.path / CRITICAL_DIR / "skipped.json", notes) or {}
        run.no_set = {str(m): str(why) for m, why in skipped.items()}
    elif run.kind == "bias":
        run.bias_critical = _bias_sets(rd.path, notes)
    return run


def discover(paths: list[Path]) -> list[RunData | StudyData]:
    """Turn the command line's folders into runs and studies.

    A folder with a ``config.json`` is one run. Any other folder is a study: every run below it (at any depth) is
    loaded, named by its path relative to the folder.

    Args:
        paths (list[Path]): folders given to ``sdprobe report``.

    Returns:
        list[RunData | StudyData]: one entry per folder, in order.

    Raises:
        RunError: a folder does not exist or holds no run anywhere beneath it.

    Example:
        >>> [type(s).__name__ for s in discover([Path("runs/study")])]
        ['StudyData']
    """
    if not paths:
        raise RunError("no run directory given; pass one or more folders made by `sdprobe sweep` or `sdprobe study`")
    out: list[RunData | StudyData] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise RunError(f"{path} does not exist or is not a folder; pass a run or study directory")
        if (path / CONFIG).exists():
            out.append(load_run(path))
            continue
        configs = sorted(path.rglob(CONFIG))
        if not configs:
            raise RunError(f"{path} is not an sdprobe run or study: no {CONFIG} anywhere beneath it; "
                           "make one with `sdprobe sweep`, `sdprobe bias`, `sdprobe attribute` or `sdprobe study`")
        runs = [load_run(c.parent, name=c.parent.relative_to(path).as_posix()) for c in configs]
        notes: list[str] = []
        meta = _read_json(path / STUDY, notes) or {}
        out.append(StudyData(path=path, name=path.name or str(path), meta=meta, runs=runs))
    return out
