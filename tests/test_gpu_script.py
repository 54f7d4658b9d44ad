"""``benchmarks/cuda.sh``, the one script a lent GPU machine runs, runs every step on the CPU at toy scale.

A GPU is lent rarely and for minutes, so the script must not find out there that a benchmark's options or output
changed. ``QUICK=1 DEVICE=cpu`` runs the same steps, tiny and on the CPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("tests", "level_switch", "sort_threads", "sweep_throughput", "threshold_search", "harness_overhead")


@pytest.mark.slow
def test_the_gpu_script_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "QUICK": "1", "DEVICE": "cpu", "PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/cuda.sh", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for step in STEPS:
        assert f"== {step}: exit 0" in proc.stdout
    logs = {step: (tmp_path / f"{step}.log").read_text() for step in STEPS}
    assert " failed" not in logs["tests"] and ("skipped" in logs["tests"] or "passed" in logs["tests"])
    assert "bit-exact: True" in logs["level_switch"] and "bit-exact: False" not in logs["level_switch"]
    assert "moves tensor:" in logs["level_switch"] and "moves batched:" in logs["level_switch"]
    assert "target: at most 10 s per component with 2 threads" in logs["sort_threads"]
    steady = re.search(r"sweep, steady\s+([-\d.]+) images/s", logs["sweep_throughput"])
    assert steady and float(steady.group(1)) > 0  # the one-off costs are timed inside the sweep they belong to
    assert "ratio sweep (steady) / bare:" in logs["sweep_throughput"]
    assert "generations grid / refined:" in logs["threshold_search"]
    assert "same images: yes" in logs["harness_overhead"]
