"""One writer per run folder: a second writer gets a clear error naming the owner, and a dead owner's lock is taken
over at once."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from sdprobe.errors import RunError
from sdprobe.runs import LOCK, RunDir, lock_run, unlock_run

HOLDER = """
import sys, time
from sdprobe.runs import RunDir
RunDir.open_or_create(sys.argv[1], {"a": 1})
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A live process that owns the run folder tmp_path/run."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_with_the_owner_named(holder, tmp_path):
    with pytest.raises(RunError, match=f"is being written by process {holder.pid} on "):
        RunDir.open_or_create(tmp_path / "run", {"a": 1})
    assert (tmp_path / "run" / "config.json").exists()  # the owner's run is untouched


def test_the_lock_of_a_killed_writer_is_taken_over(holder, tmp_path):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    run = RunDir.open_or_create(tmp_path / "run", {"a": 1})
    try:
        assert f"process {__import__('os').getpid()} " in (run.path / LOCK).read_text()
    finally:
        unlock_run(run.path)


def test_the_owner_may_lock_again_and_unlock_frees_the_folder(tmp_path):
    lock_run(tmp_path / "run")
    lock_run(tmp_path / "run")  # re-entrant within one process
    unlock_run(tmp_path / "run")
    proc = subprocess.run([sys.executable, "-c", "import sys; from sdprobe.runs import lock_run; lock_run(sys.argv[1])",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_finish_releases_the_lock(tmp_path):
    import pandas as pd

    run = RunDir.open_or_create(tmp_path / "run", {"a": 1})
    run.write_level(0.0, pd.DataFrame({"level": [0.0], "index": [0], "x": [1.0]}))
    run.finish()
    proc = subprocess.run([sys.executable, "-c", "import sys; from sdprobe.runs import lock_run; lock_run(sys.argv[1])",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
