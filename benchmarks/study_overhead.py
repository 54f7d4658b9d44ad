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
import json
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the CI-scale study (StudyConfig().quick())")
    p.add_argument("--out", type=Path, default=None, help="study folder to keep (default: a temporary one)")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    config = StudyConfig().quick() if args.quick else StudyConfig()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "study"
        # perf_counter and time.time tick together for the length of the run; stages record time.time
        offset = time.time() - time.perf_counter()
        with recorded_forwards() as spans:
            run_study(config, out, progress=False, jobs=1)
        stages = json.loads((out / "study.json").read_text())["stages"]
    spans = [(a + offset, b + offset) for a, b in spans]
    print(f"{'stage':26s} {'wall s':>8s} {'forward s':>10s} {'share':>6s}  target >= {TARGET_SHARE:.0%}")
    total_wall = total_fwd = 0.0
    below = []
    for name, rec in stages.items():
        start, wall = rec.get("started_at"), float(rec["seconds"])
        if start is None or rec["status"] != "done":
            continue
        end = start + wall
        fwd = sum(max(0.0, min(b, end) - max(a, start)) for a, b in spans)
        share = fwd / wall if wall > 0 else float("nan")
        total_wall, total_fwd = total_wall + wall, total_fwd + fwd
        if share < TARGET_SHARE:
            below.append(name)
        print(f"{name:26s} {wall:8.1f} {fwd:10.1f} {share:6.1%}")
    print(f"{'all stages':26s} {total_wall:8.1f} {total_fwd:10.1f} {total_fwd / max(total_wall, 1e-9):6.1%}")
    print(f"stages below the target: {', '.join(below) if below else 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
