"""The ``sdprobe`` command line: help for every sub-command, and bad input that exits 2 with a clear message on
stderr and leaves no output behind. Commands run in-process through :func:`sdprobe.cli.main`; one test runs the
installed console script.
"""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sdprobe.cli import COMMANDS, build_parser, main

USAGE_ERROR = 2  # exit status of bad input, for argparse and for the commands alike
SUBPROCESS_TIMEOUT_S = 600  # the console script imports torch; generous for a loaded machine


def subcommands() -> list[str]:
    """The sub-command names the parser knows, in --help order."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return list(sub.choices)


def exit_status(argv: list[str]) -> int:
    """What ``sdprobe ARGV`` exits with: ``main``'s return value, or argparse's ``SystemExit`` code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def organism_dir(tiny_organism, tmp_path_factory) -> Path:
    """The tiny untrained organism saved as a local diffusers folder, for commands that load a model."""
    path = tmp_path_factory.mktemp("organism") / "pipe"
    tiny_organism.save_pretrained(path, safe_serialization=True)
    return path


# -- help ------------------------------------------------------------------------------------------------------------

def test_help_lists_every_sub_command(capsys):
    assert exit_status(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sdprobe")
    names = subcommands()
    assert len(names) >= len(COMMANDS)  # every module registers at least one command
    for name in names:
        assert name in out, name


@pytest.mark.parametrize("name", subcommands())
def test_each_sub_command_has_help(name, capsys):
    assert exit_status([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sdprobe {name}")
    assert "-h, --help" in out


def test_python_dash_m_sdprobe_help(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["sdprobe", "--help"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("sdprobe", run_name="__main__", alter_sys=True)
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: sdprobe")


def test_no_command_is_a_usage_error(capsys):
    assert exit_status([]) == USAGE_ERROR
    assert "required: COMMAND" in capsys.readouterr().err


def test_console_script_exits_2_on_bad_input(tmp_path):
    script = shutil.which("sdprobe") or str(Path(sys.executable).parent / "sdprobe")
    out = tmp_path / "a.png"
    bad = subprocess.run([script, "generate", "--model", "builtin:no-such-model", "--prompt", "a red circle",
                          "-o", str(out)], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert bad.returncode == USAGE_ERROR
    assert "unknown built-in model 'builtin:no-such-model'; built-ins: builtin:tiny-shapes" in bad.stderr
    assert bad.stdout == "" and not out.exists()


# Bad input for every command: tests/test_bad_input.py


def test_a_good_sweep_prints_its_run_directory(organism_dir, tmp_path, capsys):
    """The bad-input sweeps differ from this working command only in the one bad argument."""
    out = tmp_path / "run"
    argv = ["sweep", "--out", str(out), "--steps", "2", "-n", "2", "--model", str(organism_dir), "--stop", "0.1",
            "--step", "0.1", "--refine", "0", "--metrics", "distance"]
    assert exit_status(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "results.parquet").exists()


def test_the_parser_choices_are_the_library_constants():
    from sdprobe.cli import choices
    from sdprobe.isolate.config import PRIORS
    from sdprobe.prune.factory import METHODS
    from sdprobe.prune.storage import STORES

    from sdprobe.metrics.registry import MEANING_METRICS, REGISTRY

    assert (choices.METHODS, choices.STORES, choices.PRIORS) == (METHODS, STORES, PRIORS)
    assert choices.METRICS == tuple(REGISTRY) and choices.MEANING_METRICS == MEANING_METRICS
    from dataclasses import asdict

    from sdprobe.organism.train_clip import ClipTrainConfig

    assert choices.CLIP_TRAINING == {k: v for k, v in asdict(ClipTrainConfig()).items() if k in choices.CLIP_TRAINING}
    from sdprobe.organism.planted import PlantConfig

    assert choices.PLANTING == {k: v for k, v in asdict(PlantConfig()).items() if k in choices.PLANTING}
    from sdprobe.trackers import KINDS

    assert choices.TRACKERS == KINDS


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"], ["isolate", "--help"], ["attribute", "--help"]])
def test_help_imports_no_torch(argv):
    code = ("import sys\nfrom sdprobe.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: sdprobe")
