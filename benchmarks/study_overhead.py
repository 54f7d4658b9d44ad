"""Benchmark: how much of a study's time is spent generating, and how much on everything else.

Runs the organism study (``sdprobe study``'s default recipe, scaled down with ``--quick``) in one process and
records every pipeline forward pass as it happens: the text encoder, the UNet and the VAE decoder (generation),
and the gradients attribution takes through them (``torch.autograd.grad`` / ``backward``). Each stage of the study
records when it started and how long it took (``study.json``); the forward passes that fall inside a stage are its
model time, and the rest (sorting scores, moving masks, reading metrics, bootstraps, I/O, plots) is overhead.

It prints, per stage, the wall time, the time in forward passes and their share, against the target of at least
90% of each stage's time in forward passes on the CPU. Nothing in sdprobe is changed: the forward methods of the
diffusers and transformers classes are wrapped for the length of the run.

Usage:
    python benchmarks/study_overhead.py --quick       # the CI-scale study, a few minutes on 2 cores
    python benchmarks/study_overhead.py               # the full default study (about 45 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

from sdprobe.study import StudyConfig, run_study

TARGET_SHARE = 0.90  # of each stage's wall time in forward passes


@contextlib.contextmanager
def recorded_forwards():
    """Wrap the model classes' forward passes and autograd's entry points; yield the list of (start, end) times."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
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

    targets = [(UNet2DConditionModel, "forward"), (CLIPTextModel, "forward"), (CLIPTextModelWithProjection, "forward"),
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the CI-scale study (StudyConfig().quick())")
    p.add_argument("--out", type=Path, default=None, help="study folder to keep (default: a temporary one)")
    p.add_argument("--log", type=Path, default=None, help="also append each stage's line to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    config = StudyConfig().quick() if args.quick else StudyConfig()
    print(f"{'stage':26s} {'wall s':>8s} {'forward s':>10s} {'share':>6s}  target >= {TARGET_SHARE:.0%}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "study"
        # perf_counter and time.time tick together for the length of the run; stages record time.time
        offset = time.time() - time.perf_counter()
        with recorded_forwards() as spans, stage_shares(spans, offset, args.log) as rows:
            run_study(config, out, progress=False, jobs=1)
    total_wall, total_fwd = sum(r[1] for r in rows), sum(r[2] for r in rows)
    below = [name for name, wall, fwd in rows if wall > 0 and fwd / wall < TARGET_SHARE]
    print(f"{'all stages':26s} {total_wall:8.1f} {total_fwd:10.1f} {total_fwd / max(total_wall, 1e-9):6.1%}")
    print(f"stages below the target: {', '.join(below) if below else 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
