"""Benchmark: how much of a study's time is spent generating, and how much on everything else.

Runs the organism study (``sdprobe study``'s default recipe, or a scaled copy) in one process and records every
pipeline forward pass as it happens: whole pipeline calls (generation: text encoder, denoising loop, VAE decoder,
as a bare diffusers call makes them), the text encoder, UNet and VAE forwards made outside a pipeline call
(attribution's sampler), and the gradients attribution takes through them (``torch.autograd.grad`` /
``backward``). Each stage of the study records when it started and how long it took (``study.json``); the forward
passes that fall inside a stage are its model time, and the rest (sorting scores, moving masks, reading metrics,
bootstraps, I/O, plots) is overhead.

It prints, per stage, the wall time, the time in forward passes and their share, against the target of at least
90% of each stage's time in forward passes on the CPU. The report stage makes no forward pass by design and is
listed apart, as is the time outside every stage (opening the study). The pipeline is loaded once, inside the first
stage that needs it. Nothing in sdprobe is
changed: the methods are wrapped for the length of the run.

Scales:
    --quick    ``StudyConfig().quick()``: CI scale, 4 denoising steps, a few minutes on 2 cores. Generation is so
               short there that per-image work weighs 5x more than in a real study.
    --scaled   every per-image and per-level setting of the default recipe (10 steps, 32 prompts per level,
               refinement to 0.005, 16 search / 96 confirmation prompts, 48 bias images per group, 96 images per
               debiasing control), but two sweeps (te-magnitude, unet-wanda), an isolation search budget of 60
               tests, 19 debiasing controls at alpha 0.05 and 8 attribution prompts: about 11 minutes on 2 cores.
    (none)     the full default study: about 30 minutes on 2 cores.

Usage:
    python benchmarks/study_overhead.py --quick
    python benchmarks/study_overhead.py --scaled --log runs/overhead.txt
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from sdprobe.study import StudyConfig, run_study

TARGET_SHARE = 0.90  # of each stage's wall time in forward passes


@contextlib.contextmanager
def recorded_forwards():
    """Wrap the pipelines' calls, the model classes' forward passes and autograd's entry points; yield the list of
    (start, end) times of the outermost ones."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    spans: list[tuple[float, float]] = []
    depth = [0]  # nested calls (a forward inside a backward) are counted once

    def timed(fn):
        def wrapper(*args, **kwargs):
            if depth[0]:
                return fn(*args, **kwargs)
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spans.append((t0, time.perf_counter()))
                depth[0] -= 1
        return wrapper

    targets = [(StableDiffusionPipeline, "__call__"), (StableDiffusionXLPipeline, "__call__"),
               (UNet2DConditionModel, "forward"), (CLIPTextModel, "forward"), (CLIPTextModelWithProjection, "forward"),
               (AutoencoderKL, "decode"), (torch.autograd, "grad"), (torch.autograd, "backward")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    for owner, name, fn in saved:
        setattr(owner, name, timed(fn))
    try:
        yield spans
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def share_line(name: str, record: dict, spans: list[tuple[float, float]], offset: float) -> tuple[float, float] | None:
    """(wall, forward seconds) of one recorded stage, or None for a stage not run in this process."""
    start, wall = record.get("started_at"), float(record["seconds"])
    if start is None or record["status"] != "done":
        return None
    end = start + wall
    fwd = sum(max(0.0, min(b + offset, end) - max(a + offset, start)) for a, b in spans)
    return wall, fwd


@contextlib.contextmanager
def stage_shares(spans: list[tuple[float, float]], offset: float, log: Path | None):
    """Print each stage's share the moment the study records it (and append it to ``log``), so a run stopped
    before the end keeps every finished stage's figure; yield the list of (stage, wall, forward)."""
    from sdprobe.study.run import Study

    rows: list[tuple[str, float, float]] = []
    real = Study.record

    def record(self, name, outcome):
        real(self, name, outcome)
        got = share_line(name, outcome, spans, offset)
        if got is None:
            return
        rows.append((name, *got))
        line = f"{name:26s} {got[0]:8.1f} {got[1]:10.1f} {got[1] / got[0] if got[0] > 0 else float('nan'):6.1%}"
        print(line, flush=True)
        if log is not None:
            with open(log, "a") as f:
                f.write(line + "\n")

    Study.record = record
    try:
        yield rows
    finally:
        Study.record = real


NO_MODEL_STAGES = ("report",)  # stages that make no forward pass by design


def scaled_config() -> StudyConfig:
    """The default recipe's per-image and per-level settings with fewer sweeps, tests and controls (see above)."""
    base = StudyConfig()
    return replace(base, sweeps=[s for s in base.sweeps if s.name in ("te-magnitude", "unet-wanda")],
                   isolation=replace(base.isolation, max_evaluations=60),
                   bias=replace(base.bias, controls=19, alpha=0.05),
                   attribution=replace(base.attribution, n_prompts=8))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="the CI-scale study (StudyConfig().quick())")
    scale.add_argument("--scaled", action="store_true", help="the default recipe's settings, fewer sweeps and tests")
    p.add_argument("--out", type=Path, default=None, help="study folder to keep (default: a temporary one)")
    p.add_argument("--log", type=Path, default=None, help="also append each stage's line to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    config = StudyConfig().quick() if args.quick else scaled_config() if args.scaled else StudyConfig()
    print(f"{'stage':26s} {'wall s':>8s} {'forward s':>10s} {'share':>6s}  target >= {TARGET_SHARE:.0%}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "study"
        # perf_counter and time.time tick together for the length of the run; stages record time.time
        offset = time.time() - time.perf_counter()
        t0 = time.perf_counter()
        with recorded_forwards() as spans, stage_shares(spans, offset, args.log) as rows:
            run_study(config, out, progress=False, jobs=1)
        study_wall = time.perf_counter() - t0
    model = [r for r in rows if r[0] not in NO_MODEL_STAGES]
    total_wall, total_fwd = sum(r[1] for r in model), sum(r[2] for r in model)
    apart = sum(r[1] for r in rows if r[0] in NO_MODEL_STAGES)
    below = [name for name, wall, fwd in model if wall > 0 and fwd / wall < TARGET_SHARE]
    lines = [f"{'stages with model work':26s} {total_wall:8.1f} {total_fwd:10.1f} {total_fwd / max(total_wall, 1e-9):6.1%}",
             f"{'no model work (report)':26s} {apart:8.1f}",
             f"{'outside stages':26s} {study_wall - total_wall - apart:8.1f}",
             f"{'whole study':26s} {study_wall:8.1f} {sum(r[2] for r in rows):10.1f} "
             f"{sum(r[2] for r in rows) / study_wall:6.1%}",
             f"stages below the target: {', '.join(below) if below else 'none'}"]
    print("\n".join(lines), flush=True)
    if args.log is not None:
        with open(args.log, "a") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
