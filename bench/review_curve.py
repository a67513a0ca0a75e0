"""Benchmark: how many answers the review flag can leave unflagged at a given precision, on a run's holdout only.

The review rule (answering/review.py) flags an answer below a threshold on its best calibrated probability.  Which
precision and which share unflagged a threshold can give at once is fixed by the answer itself: how often it is right,
and how well its probability ranks right answers above wrong ones.  This script rebuilds the run's holdout (even-year
photos no model trained on), answers it as `predict` does by default (the run folder's answer: joined where the run
has `joined.json`), and prints the precision of the unflagged answers at each share unflagged, with the scores a flag
could rank by (the best probability, which the rule uses, and the margin over the second best).  The test split is
not read.

    .venv/bin/python bench/review_curve.py runs/NAME --out bench/results/review-curve.json
"""
from __future__ import annotations

import json, platform
from datetime import date
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import numpy as np
from fastcore.script import call_parse

from fashion_fastai.core.models import ALL
from fashion_fastai.core.schema import LABEL
from fashion_fastai.data.styles import load_data
from fashion_fastai.inference.load import load_model
from fashion_fastai.training.config import TrainConfig

SHARES = (.3, .4, .5, .6, .65, .7, .8, .9, 1.)  # shares of the holdout left unflagged


def precision_at(score: np.ndarray, hit: np.ndarray, share: float) -> float:
    "The share right of the `share` of photos with the highest `score`."
    order = np.argsort(-score, kind='stable')
    return float(hit[order][:max(int(np.ceil(share * len(hit) - 1e-9)), 1)].mean())


@call_parse
def main(run: Path,       # a run folder trained with a holdout
         out: Path = None,  # a JSON file for the numbers (default: print only)
         ):
    run = Path(run)
    cfg, record = TrainConfig.of_run(run), json.loads((run / 'config.json').read_text())
    if not cfg.holdout: raise SystemExit(f"{run} was trained without a holdout (--holdout 0): nothing to measure on.")
    rows = load_data(Path(record['data_dir']), **cfg.data_options()).part(ALL)
    holdout = rows[rows['split'] == 'valid']
    model = load_model(run, device='cpu')
    probs = np.asarray(model.answer_probs(list(holdout['file']))[0][LABEL], np.float64)
    targets = np.array([list(model.vocab).index(c) for c in holdout[LABEL]])
    top2 = np.sort(probs, 1)[:, -2:]
    hit = probs.argmax(1) == targets
    scores = dict(best_probability=top2[:, 1], margin=top2[:, 1] - top2[:, 0])
    curve = {name: {f'{s:.2f}': precision_at(score, hit, s) for s in SHARES} for name, score in scores.items()}
    result = dict(command='python bench/review_curve.py ' + str(run), date=str(date.today()),
                  machine=platform.processor() or platform.machine(), answer=type(model).__name__,
                  holdout_photos=len(holdout), holdout_top1=float(hit.mean()), precision_at_unflagged_share=curve)
    print(f"{len(holdout)} holdout photos, top-1 {100 * hit.mean():.2f}% ({type(model).__name__})")
    print('unflagged share: ' + '  '.join(f'{s:>6.2f}' for s in SHARES))
    for name, row in curve.items():
        print(f"{name:>15}: " + '  '.join(f'{100 * v:6.2f}' for v in row.values()))
    if out is not None: Path(out).write_text(json.dumps(result, indent=1))
