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
import platform
from pathlib import Path

import pandas as pd

from sdprobe.errors import RunError
from sdprobe.io import atomic_write_bytes, read_json, write_json

CONFIG, ENVIRONMENT, STATUS = "config.json", "environment.json", "status.json"
LEVELS_DIR, SAMPLES_DIR = "levels", "samples"
RESULTS, RESULTS_CSV, LAYERS, SAMPLES, THRESHOLDS = "results.parquet", "results.csv", "layers.csv", "samples.json", "thresholds.csv"
SETS = "sets.csv"
CRITICAL_DIR = "critical"
BOOKKEEPING = ("level", "sparsity_scope", "prompt", "seed", "index")  # non-metric columns of a results table


def level_name(level: float) -> str:
    """File stem of a level: fixed 4 decimals, so 0.35 and 0.3500000001 name the same file."""
    return f"{level:.4f}"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def environment() -> dict:
    """Versions and hardware, saved beside every result."""
    import diffusers
    import torch
    import transformers

    import sdprobe

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "sdprobe": sdprobe.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "threads": torch.get_num_threads(),
        "created": now(),
    }


def _diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
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
        if (run.path / CONFIG).exists():
            old = run.config()
            diffs = _diff(old, config)
            if diffs:
                raise RunError(f"{run.path} was made with a different configuration; refusing to resume:\n  "
                               + "\n  ".join(diffs) + "\nUse another --out, or delete the folder to start over")
        elif run.path.exists() and any(run.path.iterdir()):
            raise RunError(f"{run.path} exists and is not an sdprobe run; choose an empty or new --out")
        else:
            run.path.mkdir(parents=True, exist_ok=True)
            write_json(run.path / CONFIG, config)
            write_json(run.path / ENVIRONMENT, environment())
        run.set_state("running")
        return run

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
        write_json(self.path / STATUS, {"state": state, "updated": now()})

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
        """Consolidate the level files into ``results.parquet`` / ``.csv`` and mark the run finished."""
        table = self._level_rows()
        atomic_write_bytes(self.path / RESULTS, table.to_parquet(index=False))
        atomic_write_bytes(self.path / RESULTS_CSV, table.to_csv(index=False).encode())
        self.set_state("finished")
        return table

    def reopen(self) -> None:
        """Mark a finished run as running again (e.g. to add refinement levels); drops the consolidated table."""
        (self.path / RESULTS).unlink(missing_ok=True)
        (self.path / RESULTS_CSV).unlink(missing_ok=True)
        self.set_state("running")
