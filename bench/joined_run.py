"""What the joined answer's benchmarks read from a run folder: its holdout and its members, loaded as predict loads
them.  Shared by bench/part_head.py and bench/joined_levers.py; it reads the holdout only, never the test split."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fashion_fastai.answering.parts import FILE, PartAnswer, read_part_answer
from fashion_fastai.core.models import ALL
from fashion_fastai.core.schema import LABEL
from fashion_fastai.data.styles import load_data
from fashion_fastai.inference.load import load_model_file
from fashion_fastai.training.config import TrainConfig


@dataclass
class JoinedRun:
    run: Path               # the run folder
    rows: pd.DataFrame      # every part's rows of the run's data, with their split ('train', 'valid', 'test')
    answer: PartAnswer      # the run's joined.json
    names: list             # the members: both stages and the all-classes model

    @property
    def holdout(self) -> pd.DataFrame: return self.rows[self.rows['split'] == 'valid']

    @property
    def is_top(self) -> np.ndarray: return np.array(self.holdout['part'] == 'top', bool)

    @property
    def targets(self) -> np.ndarray:
        return np.array([list(self.answer.vocab).index(c) for c in self.holdout[LABEL]])

    def models(self) -> dict:
        "{member: its predictor}, sharing one frozen ImageNet network that remembers the photos it has scored."
        models = {n: load_model_file(self.run / f'{n}.json', 'weights', 'cpu') for n in self.names}
        scorers = [m.scorer for m in models.values() if m.scorer is not None]
        for m in models.values():
            if m.scorer is not None: m.scorer = scorers[0]
        if scorers: scorers[0].remember = True
        return models


def read_joined_run(run: Path) -> JoinedRun:
    "A run folder with a holdout and joined.json; SystemExit saying what is missing otherwise."
    run = Path(run)
    cfg, record = TrainConfig.of_run(run), json.loads((run / 'config.json').read_text())
    if not cfg.holdout: raise SystemExit(f"{run} was trained without a holdout (--holdout 0): nothing to measure on.")
    if not (run / FILE).is_file(): raise SystemExit(f"{run} has no {FILE}: the stages were not joined.")
    answer = read_part_answer(run / FILE)
    rows = load_data(Path(record['data_dir']), **cfg.data_options()).part(ALL)
    return JoinedRun(run, rows, answer, sorted({n for n, _ in answer.stages.values()} | {ALL}))
