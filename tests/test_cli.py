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


# -- bad input -------------------------------------------------------------------------------------------------------
# Each case: arguments ({model} = the saved tiny organism, {out} = where output would go, {prompts} = an empty prompt
# file) and a piece of the expected message. Nothing may appear at {out}.

GENERATE = ["generate", "--prompt", "a red circle", "-o", "{out}/a.png"]
SWEEP = ["sweep", "--out", "{out}/run", "--steps", "2", "-n", "2"]
BAD_INPUT = [
    (["generate", "--model", "builtin:nope", "--prompt", "a red circle", "-o", "{out}/a.png"],
     "unknown built-in model 'builtin:nope'; built-ins: builtin:tiny-shapes"),
    (["generate", "--model", "no/such/folder", "--prompt", "a red circle", "-o", "{out}/a.png"],
     "Built-ins: builtin:tiny-shapes"),
    (["generate", "--model", "{model}", "--prompt", "  ", "-o", "{out}/a.png"], "the prompt is empty"),
    (["generate", "--model", "{model}", "--prompt", "a red circle", "-o", "{out}/a.jpg"], "output must be a .png file"),
    ([*GENERATE, "--model", "{model}", "--steps", "0"], "--steps: must be a positive integer, got 0"),
    ([*GENERATE, "--model", "{model}", "--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
    ([*GENERATE, "--model", "{model}", "--dtype", "float16"], "needs a CUDA device"),
    ([*GENERATE, "--model", "{model}", "--seed"], "expected at least one argument"),
    ([*SWEEP, "--model", "builtin:nope"], "built-ins: builtin:tiny-shapes"),
    ([*SWEEP, "--model", "{model}", "-n", "0"], "must be a positive integer, got 0"),
    ([*SWEEP, "--model", "{model}", "--steps", "0"], "--steps: must be a positive integer, got 0"),
    ([*SWEEP, "--model", "{model}", "--step", "0"], "step must be positive, got 0.0"),
    ([*SWEEP, "--model", "{model}", "--step", "-0.05"], "step must be positive, got -0.05"),
    ([*SWEEP, "--model", "{model}", "--stop", "1.0"], "stop sparsity must be in [0, 1), got 1.0"),
    ([*SWEEP, "--model", "{model}", "--start", "0.6", "--stop", "0.3"], "start (0.6) must not exceed stop (0.3)"),
    ([*SWEEP, "--model", "{model}", "--method", "prune-it"], "invalid choice: 'prune-it'"),
    ([*SWEEP, "--model", "{model}", "--component", "vae"], "invalid choice: 'vae'"),
    ([*SWEEP, "--model", "{model}", "--select", "text_encoder.nope"],
     "unknown filter 'nope' in selector 'text_encoder.nope'; valid for text_encoder:"),
    ([*SWEEP, "--model", "{model}", "--select", "unet.attn2"], "outside --component text_encoder"),
    ([*SWEEP, "--model", "{model}", "--component", "unet", "--offset", "text_encoder=0.1"],
     "--offset names ['text_encoder'], which this sweep does not prune (unet)"),
    ([*SWEEP, "--model", "{model}", "--offset", "text_encoder:0.1"], "expected COMPONENT=OFFSET"),
    ([*SWEEP, "--model", "{model}", "--metrics", "nope"], "unknown metric 'nope'; valid: oracle, distance"),
    ([*SWEEP, "--model", "{model}", "--prompts", "{prompts}"], "holds no prompt"),
    (["thresholds", "{out}/run"], "is not an sdprobe run"),
    (["thresholds"], "give either RUN_DIR or --csv FILE"),
    (["thresholds", "--csv", "{out}/curve.csv"], "no such CSV"),
    (["thresholds", "--csv", "{prompts}", "--digits", "0"], "must be a positive integer, got 0"),
    (["report", "{out}/run", "-o", "{out}/r.html"], "does not exist or is not a folder"),
    (["report", "{prompts}", "-o", "{out}/r.html", "--top-k", "0"], "must be a positive integer, got 0"),
    (["report", "{prompts}", "-o", "{out}/r.html", "--ci", "1.5"], "ci must be in (0, 1), got 1.5"),
    (["report", "{prompts}", "-o", "{out}/r.html", "--bootstrap", "-1"], "n_boot must be positive, got -1"),
    (["report", "{prompts}", "-o", "{out}/r.html"], "does not exist or is not a folder"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUT, ids=[f"{a[0]}: {m[:40]}" for a, m in BAD_INPUT])
def test_bad_input_exits_2_with_a_message_and_no_output(argv, message, organism_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n  \n")
    out = tmp_path / "out"
    given = [a.format(model=organism_dir, out=out, prompts=prompts) for a in argv]
    assert exit_status(given) == USAGE_ERROR
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""
    assert not out.exists()  # nothing written, so the corrected command can use the same paths
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.txt"]


def test_a_good_sweep_prints_its_run_directory(organism_dir, tmp_path, capsys):
    """The bad-input cases above differ from this working command only in the one bad argument."""
    out = tmp_path / "run"
    argv = [*SWEEP, "--model", str(organism_dir), "--stop", "0.1", "--step", "0.1", "--refine", "0",
            "--metrics", "distance"]
    argv[argv.index("{out}/run")] = str(out)
    assert exit_status(argv) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "results.parquet").exists()
