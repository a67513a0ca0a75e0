"""Benchmark: stage two's head against its classes' prototypes in its own embedding, on its part's holdout only.

A linear head fitted on few photos of a class can place it worse than the mean of those photos' embeddings does
(nearest class mean, as in SimpleShot, Wang et al., 2019), and a rare class is where a head has the fewest.  This
script takes stage two's product embedding (`WeightsOnlyModel.embed`: the input of the article type's last layer,
L2-normalised) of its training photos and of its part's holdout photos, and scores the holdout:

- the head alone, as the run answers closed-set (calibrated, its prior adjusted);
- the nearest class mean, and the k nearest training photos, each alone;
- the head's log-probabilities plus w times those of the class means (a softmax of the cosines at temperature tau) or
  of the k nearest photos, for each (w, tau or k) of a grid fixed here;
- the same mix with its setting chosen on four fifths of the holdout and scored on the fifth left out, in turn, over
  three shuffles: what choosing it on the holdout would give a photo it did not choose on.

The body trained on those training photos, so their embeddings sit closer to their class than a new photo's do; the
holdout alone says whether the prototypes help.  The test split is not read.

    .venv/bin/python bench/rare_prototypes.py runs/NAME --out bench/results/rare-prototypes.json
"""
from __future__ import annotations

import json, platform, time
from datetime import date
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import numpy as np
from fastcore.script import call_parse
from sklearn.model_selection import KFold

from fashion_fastai.core.schema import LABEL
from fashion_fastai.inference.load import load_model_file
from joined_run import read_joined_run  # bench/, beside this script

WEIGHTS = (.1, .25, .5, .75, 1., 1.5, 2.)  # the prototypes' weight against the head's log-probabilities
TAUS = (.02, .05, .1)                        # the class means' softmax temperature on cosines
NEIGHBOURS = (5, 10, 20)                     # k of the k nearest training photos (their cosines at tau .05)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def class_means(x: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
    "[classes, dim] the mean embedding of each class's training photos, L2-normalised; zeros for a class without any."
    means = np.zeros((classes, x.shape[1]))
    np.add.at(means, y, x)
    return means / np.clip(np.linalg.norm(means, axis=1, keepdims=True), 1e-12, None)


def neighbour_log_probs(cos: np.ndarray, y: np.ndarray, classes: int, k: int, tau: float = .05) -> np.ndarray:
    "Each photo's class log-probabilities from its k nearest training photos (`cos`: [photos, training photos])."
    near = np.argsort(-cos, 1)[:, :k]
    votes = np.zeros((len(cos), classes))
    for i, (j, c) in enumerate(zip(near, np.take_along_axis(cos, near, 1))): np.add.at(votes[i], y[j], np.exp(c / tau))
    return np.log(np.clip(votes / votes.sum(1, keepdims=True), 1e-12, None))


def cross_fitted(hits: dict, seeds: int = 3) -> list:
    "Per shuffle, the top-1 of the setting chosen (most right) on four fifths, scored on the fifth left out."
    table = np.array(list(hits.values()))
    out = []
    for seed in range(seeds):
        right = np.zeros(table.shape[1], bool)
        for fit, held in KFold(5, shuffle=True, random_state=seed).split(table.T):
            right[held] = table[int(np.argmax(table[:, fit].mean(1))), held]
        out.append(float(right.mean()))
    return out


@call_parse
def main(run: Path,       # a run folder with stage two and joined.json
         out: Path = None,  # a JSON file for the numbers (default: print only)
         ):
    started, joined_run = time.time(), read_joined_run(run)
    stage = joined_run.answer.stages['rare'][0]
    model = load_model_file(joined_run.run / f'{stage}.json', 'weights', 'cpu')  # this stage alone
    vocab, rows = list(model.vocab), joined_run.rows[joined_run.rows['part'] == 'rare']
    train, holdout = rows[rows['split'] == 'train'], rows[rows['split'] == 'valid']
    x_train = model.embed(list(train['file']))[0].numpy().astype(np.float64)
    x_hold, heads = model.embed(list(holdout['file']))
    x_hold = x_hold.numpy().astype(np.float64)
    y_train, y = (np.array([vocab.index(c) for c in r[LABEL]]) for r in (train, holdout))
    closed, _ = model.answering.apply({h: p.numpy() for h, p in heads.items()}, closed_set=True)
    head = np.log(np.clip(np.asarray(closed[LABEL], np.float64), 1e-300, None))
    trained = np.bincount(y_train, minlength=len(vocab)) > 0
    cos_means = np.where(trained, x_hold @ class_means(x_train, y_train, len(vocab)).T, -np.inf)
    near = {k: neighbour_log_probs(x_hold @ x_train.T, y_train, len(vocab), k) for k in NEIGHBOURS}
    alone = {'nearest class mean': cos_means.argmax(1) == y,
             **{f'{k} nearest training photos': near[k].argmax(1) == y for k in NEIGHBOURS}}
    mixes = {}
    for tau in TAUS:
        means = log_softmax(cos_means / tau)
        for w in WEIGHTS: mixes[f'head + {w} x class means (tau {tau})'] = (head + w * means).argmax(1) == y
    for k in NEIGHBOURS:
        for w in WEIGHTS: mixes[f'head + {w} x {k} nearest photos'] = (head + w * near[k]).argmax(1) == y
    base = head.argmax(1) == y
    crossed = cross_fitted({'head alone': base, **mixes})
    result = dict(head=float(base.mean()), alone={k: float(v.mean()) for k, v in alone.items()},
                  mixes={k: dict(top1=float(v.mean()), changed=int((v != base).sum())) for k, v in mixes.items()},
                  best_mix_in_sample=max(float(v.mean()) for v in mixes.values()),
                  chosen_on_four_fifths=crossed)
    print(f"{stage}: {len(holdout)} holdout photos ({int((~trained[y]).sum())} of classes without a training photo), "
          f"{len(train)} training photos; holdout top-1 closed-set:")
    print(f"  the head alone: {100 * result['head']:.2f}%")
    for k, v in result['alone'].items(): print(f"  {k} alone: {100 * v:.2f}%")
    print(f"  best mix in-sample: {100 * result['best_mix_in_sample']:.2f}%; chosen on four fifths, per shuffle: "
          + ', '.join(f'{100 * v:.2f}%' for v in crossed))
    if out is not None:
        Path(out).write_text(json.dumps(dict(
            command=f'python bench/rare_prototypes.py {run}', date=str(date.today()),
            machine=platform.processor() or platform.machine(), stage=stage, holdout_photos=len(holdout),
            training_photos=len(train), seconds=time.time() - started, **result), indent=1))
