"""Sweeps on several processes: the split, the gather, failures that reach every process, and a two-process run
under ``accelerate launch`` that equals the single-process run.

The two-process tests launch this file as the worker script (``accelerate launch --multi_gpu --num_processes 2
tests/test_distributed.py ROOT [MODEL]``; ``--multi_gpu`` makes Accelerate start one process per slot through
torchrun, and sdprobe joins them over gloo because the pipeline is on the CPU). The worker checks the primitives
and, given a model folder, runs the sweep through the library, with an analytic metric whose collapse level is
known so that refinement happens, and through the command line; the slow test repeats both in one process and
compares the run directories.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures_weights import weights_hash
from sdprobe.architecture import select
from sdprobe.distributed import (
    Processes,
    ProcessFailed,
    current,
    launched_world_size,
    process_device,
    share,
)

PROMPTS = ["a red circle", "a small blue square", "a large green triangle in the top left"]  # 3 prompts: a 2/1 split
BREAK_AT = 0.4325  # the analytic metric fails once the text encoder's Linear weights are more than this zero
RESOLUTION = 0.1  # refinement resolution of the library sweep
CLI_ARGS = ["--steps", "2", "--batch-size", "2", "--start", "0", "--stop", "0.5", "--step", "0.5", "--refine", "0",
            "-n", "3", "--metrics", "oracle", "distance"]
LAUNCH_TIMEOUT_S = 600  # a hung collective fails the test instead of blocking it
ACCELERATE_DEFAULTS = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
ISOLATE_ARGS = ["--search", "8", "--confirm", "8", "--effect", "0.5", "--alpha", "0.2", "--controls", "10",
                "--matched", "0", "--seed", "0"]  # small: 2 tests at alpha 0.2 need 9 controls, 8 prompts suffice
PLANTED_WINDOW = (0.35, 0.355)  # magnitude pruning of the text encoder removes the planted pair in between
PLANTED_STEPS = 10  # denoising steps of the planted run: the oracle still reads every color


# --- the split and the single-process path ------------------------------------------------------------------------

@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 7])
def test_shares_are_contiguous_ordered_and_balanced(n, world_size):
    blocks = [share(n, rank, world_size) for rank in range(world_size)]
    assert [i for b in blocks for i in range(n)[b]] == list(range(n))
    sizes = [b.stop - b.start for b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_bad_ranks_are_refused():
    for rank, world in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match="rank must be in"):
            share(4, rank, world)
        with pytest.raises(ValueError, match="rank must be in"):
            Processes(rank, world)


def test_one_process_just_calls_the_function(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    procs = current("cpu")
    assert procs == Processes() and procs.is_main and not procs.distributed
    assert procs.on_main(lambda: 7) == 7 and procs.gather(lambda: "x") == ["x"]
    seen = []
    rows = procs.gather_shares(lambda part: seen.append(part) or np.arange(5)[part], 5)
    assert seen == [slice(0, 5)] and rows.tolist() == [0, 1, 2, 3, 4]
    procs.barrier()
    with pytest.raises(KeyError):  # the function's own error, not a wrapper
        procs.on_main(lambda: {}["missing"])


def test_launcher_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launched_world_size() == 1 and process_device("cuda") == "cuda"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert process_device("cuda") == "cuda:1" and process_device("cuda:0") == "cuda:0" and process_device("cpu") == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer"):
        launched_world_size()


# --- the analytic metric and the configs both runs use ----------------------------------------------------------------

class BreaksAboveMetric:
    """1.0 per image while the text encoder's Linear weights are at most ``BREAK_AT`` zero, else 0.0."""

    name = "breaks"
    higher_is_better = {"works": True}

    def __init__(self, pipe):
        self.pipe = pipe

    def score(self, prompts, images, reference=None) -> pd.DataFrame:
        weights = [r.weight for r in select(self.pipe, "text_encoder")]
        zero = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
        return pd.DataFrame({"works": np.full(len(prompts), float(zero <= BREAK_AT))})


def use_breaks_metric(pipe, setattr_) -> None:
    """Make the sweep build :class:`BreaksAboveMetric` for the metric name "breaks"."""
    import sdprobe.sweep.run as sweep_run

    real = sweep_run.make_metrics
    setattr_(sweep_run, "make_metrics", lambda names, *options: [
        BreaksAboveMetric(pipe) if n == "breaks" else real([n], *options)[0] for n in names])


def library_config(model: str):
    from sdprobe.generate import GenerationConfig
    from sdprobe.sweep import ComponentPlan, SweepConfig

    return SweepConfig(model=model, components={"text_encoder": ComponentPlan(["text_encoder"])}, start=0.0, stop=0.6,
                       step=0.3, refine=RESOLUTION, prompts=PROMPTS, n_samples=2, metrics=["breaks", "distance"],
                       generation=GenerationConfig(steps=2, batch_size=2))


# --- the worker (this file run under `accelerate launch`) ---------------------------------------------------------

def _outcome(fn) -> list:
    try:
        return ["ok", fn()]
    except Exception as exc:  # the test checks which process saw which error
        return [type(exc).__name__, str(exc)]


def _count_writes(record: list) -> None:
    """Record every atomic file write of this process (all run-directory writes go through it)."""
    import sdprobe.io
    import sdprobe.runs

    real = sdprobe.io.atomic_write_bytes

    def counted(path, data):
        record.append(str(path))
        return real(path, data)

    sdprobe.io.atomic_write_bytes = counted
    sdprobe.runs.atomic_write_bytes = counted


def _fail_on(rank: int, procs: Processes, message: str):
    if procs.rank == rank:
        raise ValueError(message)
    return procs.rank


def check_primitives(procs: Processes) -> dict:
    report = {
        "world": [procs.rank, procs.world_size],
        "gather": _outcome(lambda: procs.gather(lambda: procs.rank)),
        "shares": _outcome(lambda: procs.gather_shares(lambda p: np.arange(p.start, p.stop) * 10.0, 3)),
        "fewer_items_than_processes": _outcome(lambda: procs.gather_shares(lambda p: np.full(p.stop - p.start, 5.0), 1)),
        "main_fails": _outcome(lambda: procs.on_main(lambda: _fail_on(0, procs, "main says no"))),
        "other_fails": _outcome(lambda: procs.gather(lambda: _fail_on(1, procs, "rank one says no"))),
    }
    for key in ("shares", "fewer_items_than_processes"):
        if report[key][0] == "ok" and report[key][1] is not None:
            report[key][1] = report[key][1].tolist()
    return report


def run_sweeps(model: str, root: Path) -> dict:
    """The library sweep (analytic metric, with refinement) and the command line sweep, then a refused resume."""
    from sdprobe.cli import main
    from sdprobe.models import load_pipeline
    from sdprobe.sweep import run_sweep

    report = {}
    pipe = load_pipeline(model)
    before = weights_hash(pipe)
    use_breaks_metric(pipe, setattr)
    run_sweep(pipe, library_config(model), root / "library", progress=False)
    report["restored"] = weights_hash(pipe) == before
    report["cli"] = main(["sweep", "--model", model, *CLI_ARGS, "--out", str(root / "cli")])
    report["cli_mismatch"] = main(["sweep", "--model", model, *CLI_ARGS, "--seed", "1", "--out", str(root / "cli")])
    return report


def check_lead(procs: Processes) -> dict:
    """A leader that asks twice and then fails, and one that succeeds: every process sees the same outcome."""
    def work(n):
        if n < 0:
            raise ValueError("no negative jobs")
        return len(range(n)[procs.share(n)])

    def leader(ask):
        return [sum(ask(n)) for n in (5, 6)]

    return {"lead": _outcome(lambda: procs.lead(leader, work)),
            "lead_main_fails": _outcome(lambda: procs.lead(lambda ask: ask(2) and {}["missing"], work)),
            "lead_job_fails": _outcome(lambda: procs.lead(lambda ask: ask(-1), work)),
            "lead_after": _outcome(lambda: procs.lead(lambda ask: sum(ask(3)), work))}


def isolate_planted(root: Path) -> dict:
    """``sdprobe isolate`` on the planted run in ``root/run``; only the main process prints its summary."""
    import contextlib
    import io

    from sdprobe.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["isolate", str(root / "run"), "--meaning", "color", *ISOLATE_ARGS])
    return {"isolate": code, "printed": out.getvalue()}


def study_tiny(root: Path, model: str) -> dict:
    from test_study import _tiny_config

    from sdprobe.study import run_study

    return {"report": str(run_study(_tiny_config(model), root / "study", progress=False))}


def worker(root: Path, mode: str, arg: str | None) -> None:
    """Check the primitives, then run what ``mode`` says (sweeps of a model folder, the planted isolation, a
    tiny study), and save every process's report."""
    procs = current("cpu")
    writes: list[str] = []
    _count_writes(writes)
    report = {**check_primitives(procs), **check_lead(procs)}
    if mode == "sweeps":
        report.update(run_sweeps(arg, root))
    elif mode == "isolate":
        report.update(isolate_planted(root))
    elif mode == "study":
        report.update(study_tiny(root, arg))
    report["writes"] = len(writes)
    everything = procs.gather(lambda: report)
    if procs.is_main:
        (root / "report.json").write_text(json.dumps(everything))


# --- the two-process run ----------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(root: Path, mode: str = "primitives", arg: Path | None = None) -> list[dict]:
    """Run this file's worker on two processes; returns the report of each process."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate launcher is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])  # test_study
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", str(_free_port()),
               *ACCELERATE_DEFAULTS, __file__, str(root), mode, *([str(arg)] if arg else [])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, check=False)
    errors = [line for line in done.stderr.splitlines() if "Error" in line or "terminate" in line or "Traceback" in line]
    assert done.returncode == 0, "\n".join(errors[:40]) + "\n" + done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads((root / "report.json").read_text())


def assert_same_run(one: Path, two: Path, exact: list[str]) -> None:
    a, b = pd.read_parquet(one / "results.parquet"), pd.read_parquet(two / "results.parquet")
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for column in a.columns:
        if column == "distance":  # pixels may differ by round-off when the batches differ
            np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-5)
        elif column in exact or not pd.api.types.is_float_dtype(a[column]):
            assert a[column].tolist() == b[column].tolist(), column
        else:
            np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-9, err_msg=column)
    pd.testing.assert_frame_equal(pd.read_csv(one / "layers.csv"), pd.read_csv(two / "layers.csv"))
    assert json.loads((one / "samples.json").read_text()) == json.loads((two / "samples.json").read_text())
    assert sorted(p.name for p in (one / "samples").iterdir()) == sorted(p.name for p in (two / "samples").iterdir())
    assert json.loads((two / "status.json").read_text())["state"] == "finished"


def test_two_processes_split_gather_and_share_failures(tmp_path):
    main_report, other = _launch(tmp_path)
    assert main_report["world"] == [0, 2] and other["world"] == [1, 2]
    assert main_report["gather"] == ["ok", [0, 1]] and other["gather"] == ["ok", None]
    assert main_report["shares"] == ["ok", [0.0, 10.0, 20.0]] and other["shares"] == ["ok", None]
    assert main_report["fewer_items_than_processes"] == ["ok", [5.0]]
    assert main_report["main_fails"] == ["ValueError", "main says no"]
    assert other["main_fails"][0] == ProcessFailed.__name__ and "main says no" in other["main_fails"][1]
    assert other["other_fails"] == ["ValueError", "rank one says no"]
    assert main_report["other_fails"][0] == ProcessFailed.__name__ and "process 1 failed" in main_report["other_fails"][1]
    # a leader's answers are every process's shares; its result reaches all; its failures and its jobs' too
    assert main_report["lead"] == other["lead"] == ["ok", [5, 6]]
    assert main_report["lead_main_fails"] == ["KeyError", "'missing'"]
    assert other["lead_main_fails"][0] == ProcessFailed.__name__ and "KeyError" in other["lead_main_fails"][1]
    assert main_report["lead_job_fails"][0] == other["lead_job_fails"][0] == "ValueError"
    assert main_report["lead_after"] == other["lead_after"] == ["ok", 3]  # nobody is left waiting


@pytest.mark.slow  # two processes of two sweeps each, plus the same in one process: over a minute on two busy cores
def test_two_processes_under_accelerate_equal_one_process(tiny_organism, tmp_path, monkeypatch):
    from sdprobe.cli import main
    from sdprobe.models import load_pipeline
    from sdprobe.runs import RunDir
    from sdprobe.sweep import run_sweep

    model = tmp_path / "model"
    tiny_organism.save_pretrained(model, safe_serialization=True)
    two = tmp_path / "two"
    two.mkdir()
    main_report, other = _launch(two, "sweeps", model)

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    one = tmp_path / "one"
    pipe = load_pipeline(str(model))
    use_breaks_metric(pipe, monkeypatch.setattr)
    run_sweep(pipe, library_config(str(model)), one / "library", progress=False)
    assert main(["sweep", "--model", str(model), *CLI_ARGS, "--out", str(one / "cli")]) == 0

    assert main_report["restored"] and other["restored"]
    assert [main_report["cli"], other["cli"]] == [0, 0]
    assert [main_report["cli_mismatch"], other["cli_mismatch"]] == [2, 2]  # the refusal reached both processes
    assert main_report["writes"] > 0 and other["writes"] == 0  # only the main process writes

    library = RunDir(two / "library")
    grid = library_config(str(model)).grid()
    assert set(grid) < set(library.done_levels()), "refinement added no level"
    assert library.done_levels() == RunDir(one / "library").done_levels()
    assert_same_run(one / "library", two / "library", exact=["works"])
    assert_same_run(one / "cli", two / "cli", exact=["read_color", "read_shape", "read_position", "read_size"])


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)


# --- isolation and a study on two processes -------------------------------------------------------------------------

def planted_run(path: Path):
    """A sweep run of the planted organism whose thresholds put color's sudden collapse in ``PLANTED_WINDOW``
    (what ``tests/test_planted.py`` measures), written without sweeping: isolation reads only its config, its
    prompts and seeds, and its thresholds."""
    from sdprobe.generate import GenerationConfig
    from sdprobe.runs import THRESHOLDS, RunDir
    from sdprobe.sweep import SweepConfig
    from sdprobe.sweep.run import sweep_prompts

    config = SweepConfig(model="builtin:tiny-shapes-planted", start=0.3, stop=0.4, step=0.05, refine=0.005,
                         n_prompts=16, generation=GenerationConfig(steps=PLANTED_STEPS))
    prompts, seeds = sweep_prompts(config)
    run = RunDir.open_or_create(path, {**config.to_dict(), "higher_is_better": {"color": True}})
    for level, color in zip(PLANTED_WINDOW, (1.0, 0.5)):
        run.write_level(level, pd.DataFrame({"level": level, "prompt": prompts, "seed": seeds,
                                             "index": range(len(prompts)), "color": color}))
    run.finish()
    lo, hi = PLANTED_WINDOW
    pd.DataFrame({"metric": ["color", "shape", "position", "size"], "kind": ["sudden", "none", "none", "none"],
                  "collapsed": [True, False, False, False], "threshold": [hi, np.nan, np.nan, np.nan],
                  "ci_low": np.nan, "ci_high": np.nan, "s_lo": [lo, np.nan, np.nan, np.nan],
                  "s_hi": [hi, np.nan, np.nan, np.nan], "drop": 0.5, "s_hold": [lo, np.nan, np.nan, np.nan],
                  "s_fail": [hi, np.nan, np.nan, np.nan]}).to_csv(run.path / THRESHOLDS, index=False)
    return run


@pytest.mark.slow  # the planted isolation twice (one process, two): a few minutes on two cores
def test_an_isolation_on_two_processes_equals_one_process(tmp_path, monkeypatch, capsys):
    from sdprobe.cli import main
    from sdprobe.evidence import read_set_file
    from sdprobe.models import BUILTINS

    one, two = tmp_path / "one", tmp_path / "two"
    planted_run(one / "run")
    shutil.copytree(one, two)
    main_report, other = _launch(two, "isolate")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["isolate", str(one / "run"), "--meaning", "color", *ISOLATE_ARGS]) == 0
    printed = capsys.readouterr().out

    assert [main_report["isolate"], other["isolate"]] == [0, 0]
    assert main_report["printed"] == printed and other["printed"] == ""  # the main process speaks for both
    assert main_report["writes"] > 0 and other["writes"] == 0  # and writes for both
    a, b = one / "run" / "critical", two / "run" / "critical"
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for name in ("color/search.jsonl", "color/confirmation.jsonl", "tests.csv"):
        assert (a / name).read_text() == (b / name).read_text(), name  # the same tests, the same answers
    found = read_set_file(b / "color" / "set.json")
    truth = read_set_file(BUILTINS["tiny-shapes-planted"] / "planted.json")
    assert {n: sorted(v.tolist()) for n, v in found.weights.items()} == \
        {n: sorted(v.tolist()) for n, v in truth.weights.items()}
    assert found.verdict == "critical"


@pytest.mark.slow  # a tiny study in one process and in two: about a minute
def test_a_study_on_two_processes_equals_one_process(tmp_path, monkeypatch, tiny_organism):
    from test_study import _tiny_config

    from sdprobe.study import run_study

    model = tmp_path / "model"
    tiny_organism.save_pretrained(model, safe_serialization=True)
    two = tmp_path / "two"
    two.mkdir()
    main_report, other = _launch(two, "study", model)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    run_study(_tiny_config(str(model)), tmp_path / "one" / "study", progress=False)

    assert main_report["report"] == other["report"] and main_report["writes"] > 0 and other["writes"] == 0
    a, b = (json.loads((root / "study" / "study.json").read_text()) for root in (tmp_path / "one", two))
    assert a["state"] == b["state"] == "finished"
    assert {k: v["status"] for k, v in a["stages"].items()} == {k: v["status"] for k, v in b["stages"].items()}
    one_note = a["stages"]["isolation"]["note"].replace(str(tmp_path / "one"), "ROOT")
    assert one_note == b["stages"]["isolation"]["note"].replace(str(two), "ROOT")  # skipped for the same reason
    for sweep in ("te-magnitude", "unet-random"):
        assert_same_run(tmp_path / "one" / "study" / sweep, two / "study" / sweep,
                        exact=["read_color", "read_shape", "read_position", "read_size"])
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "one" / "study" / sweep / "thresholds.csv"),
                                      pd.read_csv(two / "study" / sweep / "thresholds.csv"))
    assert (two / "study" / "report.html").exists()
