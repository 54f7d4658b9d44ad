"""The tutorial notebooks execute top to bottom on the built-in organism, and are published executed.

The notebooks are generated and executed by ``notebooks/make_notebooks.py --execute``. The committed copies must
hold the generator's sources, every output of one clean run (no errors), and a run time within the minutes their
header states. Executing them again here needs the trained ``builtin:tiny-shapes`` weights; without them that test
is skipped with the reason. The checks on the committed files run everywhere in well under a second.
"""

from __future__ import annotations

import ast
import importlib.util
import time
from pathlib import Path

import nbformat
import pytest

from sdprobe.models import BUILTINS

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
KERNEL = "python3"  # the kernel of the environment that runs the tests (ipykernel)
CELL_TIMEOUT_S = 900  # per cell; generous, because a busy machine runs the largest cell (isolation) many times slower
NOTEBOOK_TIMEOUT_S = 1800  # per notebook, over pyproject's default test timeout for the same reason
MODEL_LINES = ('MODEL = "builtin:tiny-shapes"', 'MODEL = "builtin:tiny-shapes-planted"')  # a built-in organism
PUBLIC_MODULES = ("sdprobe", "sdprobe.attribution", "sdprobe.bias", "sdprobe.evidence", "sdprobe.generate",
                  "sdprobe.isolate", "sdprobe.models", "sdprobe.notebook", "sdprobe.prune", "sdprobe.thresholds",
                  "sdprobe.world")
ORGANISM = BUILTINS["tiny-shapes"]


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", NOTEBOOKS_DIR / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _code(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_there_are_four_notebooks():
    assert NOTEBOOKS == ["01_quickstart.ipynb", "02_critical_weights.ipynb", "03_bias_probe.ipynb",
                         "04_attribution.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_what_the_generator_writes(name, tmp_path):
    _generator().write_all(tmp_path)
    committed = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    generated = nbformat.read(tmp_path / name, as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in generated.cells], \
        "the notebook differs from notebooks/make_notebooks.py; run `python notebooks/make_notebooks.py`"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_executed_and_shows_its_outputs(name):
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), \
        "publish the notebook executed in one clean run: python notebooks/make_notebooks.py --execute"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "a published notebook shows plots"
    assert sum(code[0].source.count(line) for line in MODEL_LINES) == 1, "the first code cell must set a built-in MODEL"
    minutes = _generator().RUN_MINUTES[name]
    assert f"Run time: about {minutes} minutes on 2 CPU cores" in nb.cells[0].source
    measured = nb.metadata["sdprobe"]
    assert measured["seconds"] <= 60 * minutes, f"{name} took {measured['seconds']} s; its header says {minutes} min"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_uses_only_the_public_api(name):
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    for source in _code(nb):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("sdprobe"):
                assert node.module in PUBLIC_MODULES, f"{name}: imports from {node.module}, outside the public API"
                assert not any(_private(a.name) for a in node.names), f"{name}: imports a private name"
            if isinstance(node, ast.Import):
                assert all(a.name in PUBLIC_MODULES or not a.name.startswith("sdprobe") for a in node.names)
            if isinstance(node, ast.Attribute):
                assert not _private(node.attr), f"{name}: uses the private attribute {node.attr!r}"


@pytest.mark.skipif(not (ORGANISM / "model_index.json").exists(),
                    reason=f"the built-in organism weights are absent ({ORGANISM / 'model_index.json'} missing); "
                           "the notebooks run on builtin:tiny-shapes")
@pytest.mark.slow  # minutes per notebook on 2 cores; CI runs it (--runslow)
@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(tmp_path)}})
    start = time.monotonic()
    client.execute()  # raises CellExecutionError, naming the cell and the traceback, on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    print(f"{name}: {time.monotonic() - start:.0f} s")
    kept = tmp_path / _generator().OUTPUTS / Path(name).stem
    assert kept.is_dir() and any(kept.iterdir()), "the notebook keeps its runs and tables in outputs/<name>/"
