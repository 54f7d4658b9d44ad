"""Send finished runs to the experiment trackers researchers use: TensorBoard or MLflow, on local files only.

A tracker is named by a spec, ``tensorboard:DIR`` or ``mlflow:DIR``. :func:`log_run` reads a run directory (the
same files a report reads) and writes to the tracker:

* the run's config as parameters (MLflow) or as text (TensorBoard);
* every metric's mean per level, with the level as the step in thousandths of sparsity (0.35 is step 350, since
  trackers count steps in integers); the level itself is logged as ``sparsity``;
* each event's threshold and interval (``threshold/<metric>``, ``ci_low/<metric>``, ``ci_high/<metric>``) and
  the thresholds table;
* the sample strips at each level as images;
* the HTML report, when one is given (an MLflow artifact; TensorBoard keeps a copy in its folder).

Nothing here starts a server or reaches a network: TensorBoard writes event files and MLflow its file store
(``MLFLOW_ALLOW_FILE_STORE`` is set for the file store, which MLflow 3 keeps in maintenance mode). Read them with
``tensorboard --logdir DIR`` or ``mlflow ui --backend-store-uri DIR``. Trackers are off unless asked for
(``--tracker`` of ``sweep`` and ``study``, or ``sdprobe track``), and need the ``trackers`` extra.

Example:
    >>> with open_tracker("tensorboard:runs/tb") as tracker:
    ...     log_run(Path("runs/te-magnitude"), tracker)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from sdprobe.errors import SdprobeError

log = logging.getLogger(__name__)

KINDS = ("tensorboard", "mlflow")  # the trackers a spec can name
STEP_SCALE = 1000  # a level's step: round(level * STEP_SCALE)
EXPERIMENT = "sdprobe"  # the MLflow experiment runs are logged under
INSTALL_HINT = "install the trackers extra: pip install 'sdprobe[trackers]'"
MAX_PARAM_CHARS = 500  # longer config values are cut before they become MLflow parameters


class TrackerError(SdprobeError):
    """A tracker spec that cannot be used (unknown kind, missing folder name, package not installed)."""


def parse_spec(spec: str) -> tuple[str, Path]:
    """``"tensorboard:runs/tb"`` -> ``("tensorboard", Path("runs/tb"))``.

    Raises:
        TrackerError: the spec names no known tracker or no folder.
    """
    kind, sep, folder = str(spec).partition(":")
    if not sep or kind not in KINDS or not folder.strip():
        raise TrackerError(f"tracker {spec!r} is not KIND:DIR with KIND one of {', '.join(KINDS)} "
                           "(e.g. tensorboard:runs/tb or mlflow:runs/mlruns)")
    return kind, Path(folder)


def step_of(level: float) -> int:
    """The tracker step of a sparsity level (thousandths)."""
    return int(round(float(level) * STEP_SCALE))


class TensorBoardTracker:
    """Writes each run to ``DIR/<run name>/`` as TensorBoard event files (``torch.utils.tensorboard``)."""

    kind = "tensorboard"

    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch raises this when the tensorboard package is missing
            raise TrackerError(f"TensorBoard logging needs the tensorboard package; {INSTALL_HINT}") from exc
        self.folder = Path(folder)
        self._writer_class = SummaryWriter
        self._writer = None

    def start(self, name: str, config: dict) -> None:
        self._writer = self._writer_class(log_dir=str(self.folder / name))
        self._writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self._writer.add_scalar(key, value, global_step=step)

    def table(self, name: str, frame: pd.DataFrame) -> None:
        self._writer.add_text(name, frame.to_markdown(index=False) if _has_tabulate() else frame.to_csv(index=False))

    def image(self, name: str, png: Path, step: int) -> None:
        from PIL import Image

        self._writer.add_image(name, np.asarray(Image.open(png).convert("RGB")), global_step=step, dataformats="HWC")

    def artifact(self, path: Path) -> None:
        target = Path(self._writer.log_dir) / path.name
        shutil.copyfile(path, target)
        self._writer.add_text("files", f"{path.name}: {target}")

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MLflowTracker:
    """Writes each run as an MLflow run of the experiment ``sdprobe`` in a local file store."""

    kind = "mlflow"

    def __init__(self, folder: Path):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # the local file store, without a database
        try:
            import mlflow
        except ImportError as exc:
            raise TrackerError(f"MLflow logging needs mlflow (or mlflow-skinny); {INSTALL_HINT}") from exc
        self.folder = Path(folder).resolve()
        self.uri = self.folder.as_uri()
        self._mlflow = mlflow
        self._client = mlflow.MlflowClient(tracking_uri=self.uri)
        self._run_id = None

    def start(self, name: str, config: dict) -> None:
        experiment = self._client.get_experiment_by_name(EXPERIMENT)
        experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(EXPERIMENT)
        run = self._client.create_run(experiment_id, run_name=name)
        self._run_id = run.info.run_id
        from sdprobe.report.compute import flatten

        for key, value in flatten(config):
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            self._client.log_param(self._run_id, key, text[:MAX_PARAM_CHARS])

    def scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self._client.log_metric(self._run_id, key.replace("/", "_"), float(value), step=step)

    def table(self, name: str, frame: pd.DataFrame) -> None:
        self._client.log_text(self._run_id, frame.to_csv(index=False), f"{name}.csv")

    def image(self, name: str, png: Path, step: int) -> None:
        self._client.log_artifact(self._run_id, str(png), artifact_path=name)

    def artifact(self, path: Path) -> None:
        self._client.log_artifact(self._run_id, str(path))

    def finish(self) -> None:
        if self._run_id is not None:
            self._client.set_terminated(self._run_id)
            self._run_id = None


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401  (pandas' to_markdown needs it)
    except ImportError:
        return False
    return True


@contextmanager
def open_tracker(spec: str):
    """The tracker a spec names, closed (its current run finished) on exit.

    Raises:
        TrackerError: a bad spec, or the tracker's package is not installed.
    """
    kind, folder = parse_spec(spec)
    tracker = TensorBoardTracker(folder) if kind == "tensorboard" else MLflowTracker(folder)
    try:
        yield tracker
    finally:
        tracker.finish()


def log_run(path: Path, tracker, report: Path | None = None, name: str | None = None) -> None:
    """Write one finished run directory (and optionally its report) to a tracker.

    Args:
        path (Path): a run directory (sweep, bias or attribution).
        tracker: from :func:`open_tracker`.
        report (Path | None): an HTML report to attach. Default: none.
        name (str | None): the run's name in the tracker. Default: the folder name.

    Raises:
        RunError: ``path`` is not a run.
    """
    from sdprobe.report import compute
    from sdprobe.report.load import load_run

    run = load_run(Path(path))
    tracker.start(name or run.name, run.config)
    try:
        results = run.table("results")
        if run.kind == "sweep" and results is not None:
            metrics = compute.metric_columns(run)
            means = results.groupby("level")[metrics].mean()
            for level, row in means.iterrows():
                tracker.scalars({"sparsity": float(level), **{m: float(v) for m, v in row.items() if np.isfinite(v)}},
                                step_of(level))
        thresholds = run.table("thresholds")
        if thresholds is not None:
            tracker.table("thresholds", thresholds)
            for _, row in thresholds.iterrows():
                values = {f"{k}/{row['metric']}" + (f"/event{int(row['event'])}" if int(row.get("event", 0) or 0) > 1
                                                    else ""): float(row[k])
                          for k in ("threshold", "ci_low", "ci_high") if k in row and np.isfinite(float(row[k]))}
                if values:
                    tracker.scalars(values, 0)
        for key in ("distribution", "metrics", "vs_sparsity", "tokens", "neurons"):
            table = run.table(key)
            if table is not None:
                tracker.table(key, table)
        for level, png in run.sample_images:
            tracker.image("samples", png, step_of(level))
        if report is not None:
            tracker.artifact(Path(report))
    finally:
        tracker.finish()
    log.info("logged %s to %s", run.path, tracker.kind)
