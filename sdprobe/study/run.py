"""``sdprobe study``: sweeps, thresholds, isolation, bias probe, attribution and the report, in one resumable run.

A study directory holds ``study.json`` (its config, state and the stages done) and one run directory per stage.
Every stage resumes on its own terms (sweeps level by level, isolation test by test), and a stage marked done is
not run again, so a killed study started again with the same command picks up where it stopped.

Under ``accelerate launch --num_processes P -m sdprobe study ...`` (or ``torchrun``) the sweeps and the isolation
tests share their images across the P processes; the other stages run on the main process while the others wait.
Only the main process writes.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch

from sdprobe.distributed import Processes, ProcessFailed, current, launched_world_size, process_device
from sdprobe.errors import RunError
from sdprobe.io import read_json, write_json
from sdprobe.runs import config_diff, environment, now
from sdprobe.study.config import StudyConfig

log = logging.getLogger(__name__)
STUDY_FILE = "study.json"
REPORT_FILE = "report.html"


def _attribution_prompts(n: int, seed: int, target: str) -> tuple[list[str], list[str] | None]:
    """Fully stated grammar prompts, and the value each states for ``target`` (None for a target outside the world)."""
    import numpy as np

    from sdprobe.world import ATTRIBUTES, format_prompt, sample_specs

    specs = sample_specs(n, np.random.default_rng(seed + 7))
    values = [getattr(s, target) for s in specs] if target in ATTRIBUTES else None
    return [format_prompt(s) for s in specs], values


class Study:
    """A study directory being run. Use :func:`run_study`."""

    def __init__(self, config: StudyConfig, out: Path, progress: bool = True, processes: Processes | None = None):
        self.config, self.out = config, Path(out)
        self.procs = processes or Processes()
        self.progress = progress and self.procs.is_main
        self.state = read_json(self.out / STUDY_FILE)
        self._pipe = None
        self._dense = None  # the dense images the sweeps share (same prompts, seeds and sampler)

    @property
    def pipe(self):
        if self._pipe is None:
            from sdprobe.models import load_pipeline

            self._pipe = load_pipeline(self.config.model, process_device(self.config.device),
                                       getattr(torch, self.config.dtype))
        return self._pipe

    def is_done(self, name: str) -> bool:
        done = self.state["stages"].get(name)
        return bool(done) and done["status"] in ("done", "skipped")

    def record(self, name: str, outcome: dict) -> None:
        self.state["stages"][name] = outcome
        write_json(self.out / STUDY_FILE, self.state)

    def stage(self, name: str, fn, shared: bool = False) -> None:
        """Run one stage unless ``study.json`` says it is done; record its outcome and duration.

        A ``shared`` stage runs on every process (it shares its work out itself); any other runs on the main
        process. Either way the main process's outcome is the stage's, and only the main process records it.
        """
        if self.is_done(name):
            log.info("stage %s already done", name)
            return
        log.info("stage %s", name)
        if shared:
            try:
                mine = _timed(fn)
            except ProcessFailed:  # the main process failed, or skipped the stage: its outcome decides
                mine = None
            outcome = self.procs.on_main(lambda: mine)
        else:
            outcome = self.procs.on_main(lambda: _timed(fn))
        if self.procs.is_main:
            self.record(name, outcome)
        else:
            self.state["stages"][name] = outcome

    # -- stages ----------------------------------------------------------------------------------------------------
    def sweep(self, spec) -> str:
        from sdprobe.sweep import DenseImages, run_sweep
        from sdprobe.thresholds import run_thresholds

        self._dense = self._dense or DenseImages()
        run = run_sweep(self.pipe, self.config.sweep_config(spec), self.out / spec.name, progress=self.progress,
                        processes=self.procs, dense=self._dense)
        table = self.procs.on_main(lambda: run_thresholds(run.path))
        sudden = list(dict.fromkeys(table.loc[table["kind"] == "sudden", "metric"]))
        return f"sudden collapses: {', '.join(sudden) or 'none'}"

    def isolation(self) -> str:
        from sdprobe.isolate import isolate_all

        iso = self.config.isolation
        report = isolate_all(self.out / iso.sweep, iso.meanings, self.pipe, iso.config(self.config.seed),
                             progress=self.progress)
        verdicts = [f"{m}: {cs.verdict}" for m, cs in report.sets.items()]
        verdicts += [f"{m}: no replicable critical set (none found on the search split: {why})"
                     for m, why in report.skipped.items()]
        return "; ".join(verdicts) or "no meaning isolated"

    def bias(self) -> str:
        from sdprobe.bias import BiasRunConfig, load_bias_probe, make_classifier, run_bias

        spec = self.config.bias
        probe = load_bias_probe(spec.probe)
        metric = self.config.meaning_metric()
        cfg = BiasRunConfig(probe=spec.probe, model=self.config.model, n_images=spec.n_images, seed=self.config.seed,
                            components=tuple(spec.components), methods=tuple(spec.methods),
                            sparsities=tuple(spec.sparsities), generation=self.config.generation, classifier=metric)
        classify = make_classifier(probe, self.config.clip_model(), self.config.device, metric=metric,
                                   suite=self.config.suite())
        run_bias(self.pipe, probe, classify, cfg, self.out / "bias", progress=self.progress)
        return f"probe {spec.probe}"

    def bias_weights(self) -> str:
        from sdprobe.attribution.heads import make_head
        from sdprobe.bias import find_bias_critical, load_bias_probe, make_classifier, run_seeds, write_bias_critical
        from sdprobe.io import read_json
        from sdprobe.runs import RunDir

        spec = self.config.bias
        probe = load_bias_probe(spec.probe)
        clip = self.config.clip_model() if probe.classifier == "clip" else None
        classify = make_classifier(probe, self.config.clip_model(), self.config.device,
                                   metric=self.config.meaning_metric(), suite=self.config.suite())
        head = make_head(self.pipe, clip_model=clip, classes=None if clip is None else {probe.attribute: probe.classes})
        run = RunDir.open(self.out / "bias")
        search = spec.search_config(self.config.generation, self.config.seed)
        result = find_bias_critical(self.pipe, probe, classify, head, search,
                                    exclude_seeds=run_seeds(run.config()), progress=self.progress)
        folder = write_bias_critical(run, probe, result)
        s, c = read_json(folder / "summary.json"), result.summary["confirmation"]
        return (f"{s['group']}: {s['size']} weights; {s['objective']} {c['effect']:+.3f} on the confirmation split, "
                f"adjusted p = {s['p_adjusted']:.3g}: {s['verdict']}")

    def attribution(self) -> str:
        from sdprobe.attribution.heads import make_head
        from sdprobe.attribution.run import AttributionConfig, run_attribution
        from sdprobe.attribution.tokens import IGConfig

        spec = self.config.attribution
        prompts, values = _attribution_prompts(spec.n_prompts, self.config.seed, spec.target)
        iso = self.config.isolation
        meanings: tuple[str, ...] = ()
        if spec.compare_critical and iso is not None:
            from sdprobe.isolate import saved_meanings

            meanings = tuple(saved_meanings(self.out / iso.sweep))  # the sets isolation actually found
        cfg = AttributionConfig(prompts=tuple(prompts), target=spec.target,
                                values=None if values is None else tuple(values),
                                seeds=tuple(self.config.seed + i for i in range(len(prompts))),
                                model=self.config.model, neurons=tuple(spec.neurons),
                                critical_run=str(self.out / iso.sweep) if meanings else None,
                                critical_meanings=meanings,
                                ig=IGConfig(n_steps=spec.ig_steps or IGConfig.n_steps,
                                            noise_samples=spec.noise_samples or IGConfig.noise_samples))
        run_attribution(self.pipe, make_head(self.pipe), cfg, self.out / "attribution", progress=self.progress)
        return f"{len(prompts)} prompts, target {spec.target}"

    def report(self) -> str:
        from sdprobe.report import make_report

        self.state["state"] = "finished"  # the report is the last stage; it reads the study as finished
        write_json(self.out / STUDY_FILE, self.state)
        make_report([self.out], self.out / REPORT_FILE)
        return str(self.out / REPORT_FILE)


def _timed(fn) -> dict:
    """Run a stage function; a RunError (e.g. nothing collapses, so nothing to isolate) skips the stage."""
    t0 = time.time()
    try:
        note, status = fn() or "", "done"
    except RunError as exc:
        note, status = str(exc), "skipped"
        log.warning("stage skipped: %s", exc)
    return {"status": status, "seconds": round(time.time() - t0, 1), "started_at": round(t0, 3), "note": note}


_WORKER: dict = {}  # per worker process: the Study it runs sweeps for


def _worker_init(config_dict: dict, out: str) -> None:
    from sdprobe.study.config import study_config_from_dict

    torch.set_num_threads(1)  # one thread per process: the processes share the cores
    _WORKER["study"] = Study(study_config_from_dict(config_dict), Path(out), progress=False)


def _worker_sweep(name: str) -> dict:
    study = _WORKER["study"]
    spec = next(s for s in study.config.sweeps if s.name == name)
    return _timed(lambda: study.sweep(spec))


def _parallel_sweeps(study: Study, jobs: int) -> None:
    """Run the study's pending sweeps in ``jobs`` processes; only this process writes ``study.json``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pending = [s.name for s in study.config.sweeps if not study.is_done(f"sweep:{s.name}")]
    if not pending:
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(pending)), mp_context=ctx, initializer=_worker_init,
                             initargs=(study.config.to_dict(), str(study.out))) as pool:
        futures = {pool.submit(_worker_sweep, name): name for name in pending}
        for future in as_completed(futures):
            name = futures[future]
            study.record(f"sweep:{name}", future.result())
            log.info("stage sweep:%s %s", name, study.state["stages"][f"sweep:{name}"]["status"])


def _open(config: StudyConfig, out: Path, overwrite: bool) -> None:
    path = out / STUDY_FILE
    if path.exists():
        old = read_json(path)
        if old.get("state") == "finished" and not overwrite:
            raise RunError(f"{out} holds a finished study; pass --overwrite to run it again, or choose another --out")
        if old.get("state") == "finished" or old.get("config") != config.to_dict():
            if not overwrite:
                diffs = config_diff(old.get("config"), json.loads(json.dumps(config.to_dict(), default=str)))
                raise RunError(f"{out} holds a study made with a different configuration:\n  "
                               + "\n  ".join(diffs).replace("run has", "study has")
                               + "\npass --overwrite to replace it, or choose another --out")
            shutil.rmtree(out)
        else:
            return
    elif out.exists() and any(out.iterdir()):
        raise RunError(f"{out} exists and is not an sdprobe study; choose an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    runs = [s.name for s in config.sweeps] + [n for n, on in (("bias", config.bias), ("attribution", config.attribution)) if on]
    write_json(path, {"state": "running", "started": now(), "config": config.to_dict(), "runs": runs, "stages": {},
                      "environment": environment()})


def run_study(config: StudyConfig, out: Path, overwrite: bool = False, progress: bool = True, jobs: int = 1) -> Path:
    """Run (or resume) a whole study and write its report.

    Args:
        config (StudyConfig): the recipe (see ``analyses/organism.toml``).
        out (Path): the study directory; resumed when it holds an unfinished study with the same config.
        overwrite (bool): replace a finished study, or one made with another config. Default: False.
        progress (bool): progress bars. Default: True.
        jobs (int): run the sweeps in this many processes (one torch thread each); the later stages use this
            process. Default: 1.

    Returns:
        Path: the HTML report, ``out/report.html``.

    Raises:
        RunError: ``out`` holds a finished study (and ``overwrite`` is False) or something that is not a study.

    Example:
        >>> run_study(StudyConfig().quick(), Path("runs/quick"))
        PosixPath('runs/quick/report.html')
    """
    if jobs < 1:
        raise ValueError(f"jobs must be positive, got {jobs}")
    if jobs > 1 and launched_world_size() > 1:
        raise ValueError("jobs > 1 starts its own sweep processes; under a launcher the launched processes share "
                         "the work already: leave jobs at 1")
    out = Path(out)
    from sdprobe.models import check_device

    check_device(config.device)  # before the study folder exists
    procs = current(process_device(config.device))
    procs.on_main(lambda: _open(config, out, overwrite))
    study = Study(config, out, progress, procs)
    if jobs > 1:
        _parallel_sweeps(study, jobs)
    for spec in config.sweeps:
        study.stage(f"sweep:{spec.name}", lambda spec=spec: study.sweep(spec), shared=True)
    if config.isolation is not None:
        study.stage("isolation", study.isolation, shared=True)
    if config.bias is not None:
        study.stage("bias", study.bias)
        if config.bias.critical:
            study.stage("bias-weights", study.bias_weights)
    if config.attribution is not None:
        study.stage("attribution", study.attribution)
    study.stage("report", study.report)
    return out / REPORT_FILE
