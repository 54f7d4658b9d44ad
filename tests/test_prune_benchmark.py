"""The level-switch benchmark runs end to end on tiny SD2 configs and restores the weights exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "level_switch.py"


def test_level_switch_benchmark_tiny(capsys):
    spec = importlib.util.spec_from_file_location("level_switch", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.sweep_levels([0.35], 0.005, 1) == [[0.345, 0.35, 0.355]]
    code = bench.main(["--tiny", "--centres", "0.35", "--per-side", "1", "--naive-per-centre", "1",
                       "--components", "text_encoder"])
    out = capsys.readouterr().out
    assert code == 0
    assert "bit-exact: True" in out and "ratio" in out and "kept by the mask" in out and "model + mask = " in out
    differing, rest = out.split("at the compared level: ")[1].split(" (", 1)
    tensors = int(rest.split(" tensors")[0].split()[-1])
    assert 0 <= int(differing) <= tensors  # l1_unstructured rounds where the mask floors: one entry per tensor at most
