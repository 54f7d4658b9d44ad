"""Run directories: the on-disk contract between the compute commands and the report.

A sweep run directory holds::

    config.json           the full configuration (what produced the run; a resume must match it)
    environment.json      versions of python/torch/diffusers/transformers/sdprobe, device, time
    status.json           {"state": "running" | "finished", "updated": ISO time}
    levels/<L>.parquet    one file per evaluated level L (``level_name``): one row per generated image
    results.parquet/.csv  all levels together, written when the sweep finishes
    layers.csv            per-tensor sparsity at every evaluated level (for heatmaps)
    sets.csv              per-set metrics (FID, KID): one row per level, each value with its ``<name>_se``
    samples.json          the fixed sample prompts and seeds
    samples/<L>.png       image strip of the sample prompts at level L (one column per prompt)
    thresholds.csv        collapse thresholds per metric (``sdprobe thresholds``)
    critical/<meaning>/   critical weight sets (``sdprobe isolate``)

Rows of ``levels/*.parquet`` have the columns: ``level`` (target sparsity), ``sparsity_scope`` (achieved sparsity of
the pruned scope), ``sparsity_<component>`` (zeros of the whole component), ``prompt``, ``seed``, ``index``
(position of the image in the run's fixed prompt list) and one column per metric quantity.

Every file is written atomically, so a killed run leaves only whole files; a level file exists iff that level is
done, which is what makes resuming exact.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import socket
import sys
from pathlib import Path

import pandas as pd

from sdprobe.errors import RunError
from sdprobe.io import atomic_write_bytes, make_folder, read_json, write_json
from sdprobe.provenance import PROVENANCE

log = logging.getLogger(__name__)

CONFIG, ENVIRONMENT, STATUS = "config.json", "environment.json", "status.json"
LEVELS_DIR, SAMPLES_DIR = "levels", "samples"
RESULTS, RESULTS_CSV, LAYERS, SAMPLES, THRESHOLDS = "results.parquet", "results.csv", "layers.csv", "samples.json", "thresholds.csv"
SETS = "sets.csv"
LOCK = ".lock"  # names the process writing the run; held with flock, so a dead owner's lock is free at once
CRITICAL_DIR = "critical"
BOOKKEEPING = ("level", "sparsity_scope", "prompt", "seed", "index")  # non-metric columns of a results table


def level_name(level: float) -> str:
    """File stem of a level: fixed 4 decimals, so 0.35 and 0.3500000001 name the same file."""
    return f"{level:.4f}"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    """The commit of the sdprobe source tree, when it is a git checkout (None for an installed wheel)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict:
    """Versions, hardware, the source commit and the command line, saved beside every result."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    import sdprobe

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        **{name: ver(name) for name in ("diffusers", "transformers", "captum", "numpy", "pandas", "scipy",
                                         "accelerate", "safetensors")},
        "sdprobe": sdprobe.__version__,
        "git_commit": _git_commit(),
        "command": " ".join(sys.argv),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cuda_version": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "created": now(),
    }


_HELD: dict[Path, object] = {}  # run folders this process holds the lock of -> the open lock file


def lock_run(path: Path) -> None:
    """Make this process the one writer of the run folder ``path`` (created if needed) until it exits.

    The lock is an advisory ``flock`` on ``path/.lock``, which also names the owner (pid, host, command, time) for
    the error a second writer gets. The kernel drops it when the owner dies, so a lock left by a killed process is
    taken over at once, safely. Taking a lock this process already holds is a no-op.

    Raises:
        RunError: another live process holds the lock (the message names it).
    """
    path = make_folder(path)
    key = path.resolve()
    if key in _HELD:
        return
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one writer per folder is the user's responsibility
        return
    f = open(path / LOCK, "a+", encoding="utf-8")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        owner = f.read().strip() or "another process"
        f.close()
        raise RunError(f"{path} is being written by {owner}; wait for it to finish or stop it, or use another --out")
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()} since {now()}: {' '.join(sys.argv)}\n")
    f.flush()
    _HELD[key] = f


def unlock_run(path: Path) -> None:
    """Give up this process's lock on ``path`` (see :func:`lock_run`); a no-op when it holds none."""
    f = _HELD.pop(Path(path).resolve(), None)
    if f is not None:
        f.close()  # closing the file releases the flock


def config_diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += config_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: run has {a!r}, command asks {b!r}"]


class RunDir:
    """A run directory on disk.

    Example:
        >>> run = RunDir.open_or_create(Path("runs/te-mag"), config)
        >>> run.done_levels()
        [0.0, 0.05]
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def _repr_html_(self) -> str:
        """How it shows itself in Jupyter (:mod:`sdprobe.report.cards`)."""
        from sdprobe.report.cards import run_card

        return run_card(self)

    # -- creation and resume -------------------------------------------------------------------------------------
    @classmethod
    def open_or_create(cls, path: Path, config: dict, kind: str = "sweep") -> "RunDir":
        """Start a new run, or resume one made with exactly the same ``config``.

        Raises:
            RunError: the folder holds a run with a different configuration (the message lists what differs),
                or a folder that is not a run.
        """
        run = cls(path)
        config = {"kind": kind, **json.loads(json.dumps(config, default=str))}
        if run.path.exists() and not run.path.is_dir():
            raise RunError(f"{run.path} is a file, not a run folder; choose another --out")
        fresh = not run.path.exists()
        if not (run.path / CONFIG).exists() and run.path.exists() and any(
                p.name != LOCK for p in run.path.iterdir()):
            raise RunError(f"{run.path} exists and is not an sdprobe run; choose an empty or new --out")
        lock_run(run.path)
        try:
            if (run.path / CONFIG).exists():
                diffs = config_diff(run.config(), config)
                if diffs and not run.done_levels() and run.state() != "finished" and not run._has_outputs():
                    log.warning("%s holds no finished work; starting it over with the new configuration", run.path)
                    run._clear()
                elif diffs:
                    raise RunError(f"{run.path} was made with a different configuration; refusing to resume:\n  "
                                   + "\n  ".join(diffs) + "\nUse another --out, or delete the folder to start over")
            if not (run.path / CONFIG).exists():
                write_json(run.path / CONFIG, config)
                write_json(run.path / ENVIRONMENT, environment())
            run.set_state("running")
        except BaseException:
            unlock_run(run.path)
            if fresh:
                import shutil

                shutil.rmtree(run.path, ignore_errors=True)
            raise
        return run

    def _has_outputs(self) -> bool:
        """Whether the folder holds results beyond its bookkeeping (config, environment, status, lock, samples)."""
        keep = {CONFIG, ENVIRONMENT, STATUS, LOCK, SAMPLES, LEVELS_DIR, PROVENANCE}
        return any(p.name not in keep and not p.name.startswith(".") for p in self.path.iterdir())

    def _clear(self) -> None:
        """Remove everything but the lock from a run that holds no finished work."""
        import shutil

        for p in self.path.iterdir():
            if p.name == LOCK:
                continue
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    @classmethod
    def open(cls, path: Path, kind: str | None = None) -> "RunDir":
        """Open an existing run for reading; a clear error when ``path`` is not one."""
        run = cls(path)
        if not (run.path / CONFIG).exists():
            raise RunError(f"{run.path} is not an sdprobe run (no {CONFIG}); create one with `sdprobe sweep` or `sdprobe study`")
        if kind is not None and run.config().get("kind") != kind:
            raise RunError(f"{run.path} is a {run.config().get('kind')!r} run, expected a {kind!r} run")
        return run

    # -- reading -------------------------------------------------------------------------------------------------
    def config(self) -> dict:
        return read_json(self.path / CONFIG)

    def state(self) -> str:
        p = self.path / STATUS
        return read_json(p)["state"] if p.exists() else "unknown"

    @property
    def finished(self) -> bool:
        return self.state() == "finished"

    def done_levels(self) -> list[float]:
        d = self.path / LEVELS_DIR
        return sorted(float(p.stem) for p in d.glob("*.parquet")) if d.exists() else []

    def has_level(self, level: float) -> bool:
        return (self.path / LEVELS_DIR / f"{level_name(level)}.parquet").exists()

    def results(self) -> pd.DataFrame:
        """All rows so far, sorted by level and image index."""
        final = self.path / RESULTS
        if final.exists():
            return pd.read_parquet(final)
        return self._level_rows()

    def _level_rows(self) -> pd.DataFrame:
        files = sorted((self.path / LEVELS_DIR).glob("*.parquet"))
        if not files:
            raise RunError(f"{self.path} has no evaluated levels yet; run `sdprobe sweep` (or resume it) first")
        return pd.concat([pd.read_parquet(f) for f in files]).sort_values(["level", "index"]).reset_index(drop=True)

    def layers(self) -> pd.DataFrame | None:
        p = self.path / LAYERS
        return pd.read_csv(p) if p.exists() else None

    def sets(self) -> pd.DataFrame | None:
        """Per-set metrics, one row per level (``level`` and each quantity with its ``<name>_se``), or None."""
        p = self.path / SETS
        return pd.read_csv(p).sort_values("level").reset_index(drop=True) if p.exists() else None

    def thresholds(self) -> pd.DataFrame | None:
        p = self.path / THRESHOLDS
        return pd.read_csv(p) if p.exists() else None

    def samples(self) -> dict | None:
        p = self.path / SAMPLES
        return read_json(p) if p.exists() else None

    def sample_image(self, level: float) -> Path:
        return self.path / SAMPLES_DIR / f"{level_name(level)}.png"

    # -- writing -------------------------------------------------------------------------------------------------
    def set_state(self, state: str) -> None:
        """Record the run's state; a finished run gives up this process's lock (see :func:`lock_run`)."""
        write_json(self.path / STATUS, {"state": state, "updated": now()})
        if state == "finished":
            unlock_run(self.path)

    def write_level(self, level: float, rows: pd.DataFrame, layers: pd.DataFrame | None = None,
                    sets: dict[str, float] | None = None) -> None:
        """Write one finished level (image rows, per-tensor sparsity, per-set metrics). The level file is written
        last, so it marks the level as done. A consolidated table of a finished run no longer holds every level, so
        it is dropped and the run is running again until :meth:`finish`."""
        if (self.path / RESULTS).exists():
            self.reopen()
        for name, table in ((LAYERS, layers), (SETS, None if not sets else pd.DataFrame([sets]))):
            if table is None:
                continue
            table = table.assign(level=level)
            p = self.path / name
            if p.exists():
                old = pd.read_csv(p)
                table = pd.concat([old[old["level"].round(4) != round(level, 4)], table])
            atomic_write_bytes(p, table.to_csv(index=False).encode())
        atomic_write_bytes(self.path / LEVELS_DIR / f"{level_name(level)}.parquet", rows.to_parquet(index=False))

    def finish(self) -> pd.DataFrame:
        """Consolidate the level files into ``results.parquet`` / ``.csv``, mark the run finished and give up its
        lock."""
        table = self._level_rows()
        atomic_write_bytes(self.path / RESULTS, table.to_parquet(index=False))
        atomic_write_bytes(self.path / RESULTS_CSV, table.to_csv(index=False).encode())
        self.set_state("finished")
        return table

    def lock(self) -> "RunDir":
        """Become the one writer of this run (for stages that add to a finished run, such as isolation); see
        :func:`lock_run`. Returns the run."""
        lock_run(self.path)
        return self

    def reopen(self) -> None:
        """Mark a finished run as running again (e.g. to add refinement levels); drops the consolidated table."""
        (self.path / RESULTS).unlink(missing_ok=True)
        (self.path / RESULTS_CSV).unlink(missing_ok=True)
        self.set_state("running")
