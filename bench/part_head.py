"""Benchmark: a trained two-way part head as the joined answer's gate, against the gates a run has, on its holdout only.

The joined answer (answering/parts.py) weighs each part's stage by p(part | photo).  Its gates read that from models
trained for something else: `all_parts` sums the all-classes model's probabilities per part, `stages` sets the stages'
best probabilities against each other.  A head trained for the part itself may say it better.  For each body (stage
one's, the all-classes model's), this script takes each photo's product embedding (the input of the article type's
last layer, `WeightsOnlyModel.embed`) and fits a logistic regression for the top part (scikit-learn, which
cleanlab brings):

- `head on training photos`: fitted on the run's training photos of every part (the body trained on them, so its
  features there are better separated than on new photos: the holdout's Platt scaling corrects the scale);
- `head cross-fitted on the holdout`: fitted on four fifths of the holdout, answering the fifth left out, in turn.

Every gate is then Platt-scaled on the holdout's part labels, as `PartAnswer.fitted` does (once, from the members'
answers with zero-shot, where a run fits each way apart), and the stages joined by it:
the holdout's share of photos sent to the right part, the gate's log-loss, and the joined top-1 both ways.  The test
split is not read.

    .venv/bin/python bench/part_head.py runs/NAME --out bench/results/part-head.json
"""
from __future__ import annotations

import json, platform, time
from datetime import date
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import numpy as np
from fastcore.script import call_parse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from fashion_fastai.answering.parts import GATES, WAYS, fit_platt, gate_evidence, platt
from fashion_fastai.core.models import ALL
from fashion_fastai.evaluation.join import answered
from joined_run import read_joined_run  # bench/, beside this script


def log_loss(p_top: np.ndarray, is_top: np.ndarray) -> float:
    p = np.clip(p_top, 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(is_top, np.log(p), np.log1p(-p))))


def cross_fitted(x: np.ndarray, is_top: np.ndarray, seed: int) -> np.ndarray | None:
    """Each holdout photo's p(top part) from a head fitted on the other four fifths; None where a part has under five
    holdout photos (a small demo run)."""
    if min(is_top.sum(), (~is_top).sum()) < 5: return None
    out = np.zeros(len(x))
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, is_top):
        out[held] = LogisticRegression(max_iter=5000).fit(x[fit], is_top[fit]).predict_proba(x[held])[:, 1]
    return out


@call_parse
def main(run: Path,       # a run folder with both stages, its all-classes model and joined.json
         seed: int = 0,     # the holdout's fifths
         out: Path = None,  # a JSON file for the numbers (default: print only)
         ):
    started, joined_run = time.time(), read_joined_run(run)
    rows, answer, names = joined_run.rows, joined_run.answer, joined_run.names
    holdout, train = joined_run.holdout, rows[rows['split'] == 'train']
    vocab, index = list(answer.vocab), answer.index()
    is_top, y, train_top = joined_run.is_top, joined_run.targets, np.array(train['part'] == 'top', bool)
    models = joined_run.models()
    members = {n: answered(m, list(holdout['file'])) for n, m in models.items()}
    evidence = {gate: gate_evidence(gate, {n: members[n][WAYS[0]] for n in names}, index) for gate in GATES}
    for body in (n for n in (answer.stages['top'][0], ALL) if n in models):
        x_hold = models[body].embed(list(holdout['file']))[0].numpy()
        x_train = models[body].embed(list(train['file']))[0].numpy()
        head = LogisticRegression(max_iter=5000).fit(x_train, train_top)
        evidence[f'head on training photos, {body} body'] = head.predict_proba(x_hold)[:, 1]
        crossed = cross_fitted(x_hold, is_top, seed)
        if crossed is not None: evidence[f'head cross-fitted on the holdout, {body} body'] = crossed
    result = {}
    for gate, raw in evidence.items():
        g = platt(raw, *fit_platt(raw, is_top))
        top1 = {}
        for way in WAYS:
            joined = np.zeros((len(g), len(vocab)))
            for part, weight in (('top', g), ('rare', 1 - g)):
                joined[:, index[part]] = weight[:, None] * members[answer.stages[part][0]][way]
            top1[way] = float((joined.argmax(1) == y).mean())
        result[gate] = dict(right_part=float(((g >= .5) == is_top).mean()), log_loss=log_loss(g, is_top),
                            rare_sent_to_top=float((g[~is_top] >= .5).mean()),
                            top_sent_to_rare=float((g[is_top] < .5).mean()), joined_top1=top1)
    print(f"{len(holdout)} holdout photos ({is_top.mean():.1%} top part), {len(train)} training photos")
    for gate, r in result.items():
        print(f"{gate:>48}: right part {100 * r['right_part']:.2f}%, log-loss {r['log_loss']:.4f}, rare -> top "
              f"{100 * r['rare_sent_to_top']:.2f}%, top -> rare {100 * r['top_sent_to_rare']:.2f}%; joined top-1 "
              + ', '.join(f"{w} {100 * v:.2f}%" for w, v in r['joined_top1'].items()))
    if out is not None:
        Path(out).write_text(json.dumps(dict(
            command=f'python bench/part_head.py {run} --seed {seed}', date=str(date.today()),
            machine=platform.processor() or platform.machine(), holdout_photos=len(holdout),
            training_photos=len(train), seconds=time.time() - started, gates=result), indent=1))
