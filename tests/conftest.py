"""Shared fixtures for the loader / weights / stages tests (plain helpers and constants are in helpers.py).

- `demo_data`: the built-in demo data set at scale 0.1 (~310 rows), generated once per session.
- `make_dataset`: writes a small custom Kaggle-style folder from CSV lines (see `helpers.write_dataset`).
- `tiny_data` / `tiny_dls`: the 4-class hand-made data set (`helpers.tiny_lines`) and the top part's DataLoaders at
  32x24, batch size 8: small enough to train a resnet18 for a few batches in seconds.
- `preds` / `table`: the hand-made prediction set of the scores, report and plots tests, and its per-class table.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from helpers import CASES, SMALL, TRAIN, VOCAB, score_row, tiny_lines, write_dataset

# One intra-op thread: the tests' tensors are tiny, and on a small shared CPU two spinning threads cost far more wall
# time than one.
torch.set_num_threads(1)


@pytest.fixture
def make_dataset(tmp_path):
    "A factory: `make_dataset(lines, **kw)` writes a fresh data folder under tmp_path (see `write_dataset`)."
    counter = itertools.count()
    return lambda lines, **kw: write_dataset(tmp_path / f"data{next(counter)}", lines, **kw)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from fashion_fastai.data.demo import generate_demo
    return generate_demo(tmp_path_factory.mktemp("demo"), scale=0.1)


@pytest.fixture(scope="session")
def demo_loaded(demo_data):
    "`load_data` on the demo set with the protocol's defaults (top-20 ranked over all rows, no holdout)."
    from fashion_fastai.data.styles import load_data
    return load_data(demo_data)


@pytest.fixture(scope="session")
def demo_dls(demo_loaded):
    "{'top': dls, 'rare': dls} of the demo set at 32x24, no augmentation."
    from fashion_fastai.data.styles import part_dataloaders
    return {p: part_dataloaders(demo_loaded, p, size=SMALL, bs=8, num_workers=0, augment=False, seed=0)
            for p in ("top", "rare")}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tiny"), tiny_lines())


@pytest.fixture(scope="session")
def tiny_data(tiny_dir):
    from fashion_fastai.data.styles import load_data
    return load_data(tiny_dir, k=3)


@pytest.fixture(scope="session")
def tiny_dls(tiny_data):
    "The tiny top part (3 classes, 18 train / 6 test images) at 32x24, bs 8: 2 training + 1 validation batch per epoch."
    from fashion_fastai.data.styles import part_dataloaders
    return part_dataloaders(tiny_data, "top", size=SMALL, bs=8, num_workers=0, augment=False, seed=0)


@pytest.fixture
def preds():
    "The hand-made prediction set (helpers.CASES): 7 test images of 6 classes, each true class at a known rank."
    probs = torch.stack([score_row(t, r) for t, r in CASES])
    targets = torch.tensor([t for t, _ in CASES])
    return probs, targets


@pytest.fixture
def table(preds):
    "`class_table` of `preds` with helpers.TRAIN's training counts."
    from fashion_fastai.evaluation.scores import class_table
    return class_table(*preds, VOCAB, TRAIN)
