"""``sdprobe study``: the main job, every analysis on one model into one HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdprobe.cli.common import DTYPES, add_tracker_arg, log_to_tracker, positive_int

MAX_DEFAULT_JOBS = 4  # default sweep processes, capped by the CPUs available


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="run every analysis on a model and write the HTML report (the main job)",
                       description="Sweeps (text encoder, UNet, joint), thresholds, isolation of the collapsing "
                                   "meanings, the bias probe, attribution, and the report. Resumes an unfinished "
                                   "study with the same command.")
    p.add_argument("--model", default=None, help="overrides the config's model (default: builtin:tiny-shapes)")
    p.add_argument("--config", type=Path, default=None, help="a study recipe (TOML), e.g. analyses/organism.toml")
    p.add_argument("-o", "--out", type=Path, required=True, help="study directory")
    p.add_argument("--quick", action="store_true", help="the same stages at CI scale (a few minutes or less)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished study in --out")
    p.add_argument("--device", default=None, help="overrides the config's device")
    p.add_argument("--dtype", default=None, choices=DTYPES, help="overrides the config's dtype")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="processes for the sweeps (default: the CPUs this process may use, at most 4)")
    p.add_argument("--report", type=Path, default=None, help="also copy the report to this path")
    add_tracker_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import os
    import shutil

    from sdprobe.distributed import launched_main
    from sdprobe.study import StudyConfig, load_study_config, run_study

    config = load_study_config(args.config) if args.config else StudyConfig()
    overrides = {k: v for k, v in (("model", args.model), ("device", args.device), ("dtype", args.dtype)) if v}
    if overrides:
        config = dataclasses.replace(config, **overrides)
    if config.dtype != "float32" and config.device == "cpu":
        raise ValueError(f"dtype {config.dtype} needs a CUDA device; use float32 on the CPU")
    if args.quick:
        config = config.quick()
    jobs = args.jobs if args.jobs is not None else min(MAX_DEFAULT_JOBS, len(os.sched_getaffinity(0)))
    if config.device != "cpu":
        jobs = 1  # one process drives the GPU
    report = run_study(config, args.out, overwrite=args.overwrite, jobs=jobs)
    if not launched_main():
        return 0  # the main process copies, logs and prints for every process of a launched study
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report, args.report)
    if args.tracker:
        from sdprobe.report import discover
        from sdprobe.report.structure import all_runs

        log_to_tracker(args.tracker, [r.path for r in all_runs(discover([args.out]))], report=report)
    print(report)
    return 0
