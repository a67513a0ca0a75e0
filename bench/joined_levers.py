"""Benchmark: levers on the joined answer that act after training, measured on a run's holdout only.

The joined answer (answering/parts.py) is p(part) x p(class | part): the gate `all_parts` (the all-classes model's
probabilities summed per part, Platt-scaled) times the part's stage.  Two post-hoc levers can be ranked on the
probabilities the members give the holdout, without training anything:

- **a stacked gate**: a logistic regression for the top part on a few numbers each member already gives a photo (the
  part sums' log-odds, each stage's best probability and entropy), in place of the part sums alone.  Stage one has
  never seen a rare photo, so its confidence is evidence of the part that the all-classes head may not carry;
- **the all-classes model inside each part**: p(class | part) as the stage's probabilities times the all-classes
  model's, renormalised over the part's classes, each to a power (1 - w and w): a product of two experts, where the
  all-classes model's view of a part's classes is a second opinion on a body trained longer;
- **a temperature per part chosen for its calibration error**: each stage's temperature (fitted by log-likelihood, as
  a run does) against the one of a grid with the least ECE on its part's holdout photos;
- **a review score that reads more than the answer's probability**: a logistic regression for "the joined answer is
  right" on its best probability, its margin, the gate's probability, each stage's best probability and whether the
  all-classes model gives the same answer, against the best probability alone, as the share right of the 65% of
  photos each ranks highest (the review rule's floor).

Every lever's parameters are chosen on four fifths of the holdout and scored on the fifth left out, in turn (five
folds, several shuffles), beside the run's gate fitted the same way, so that no lever is scored on the photos that
chose it.  Both ways of answering (with zero-shot, closed-set).  The test split is not read.

    .venv/bin/python bench/joined_levers.py runs/NAME --out bench/results/joined-levers.json
"""
from __future__ import annotations

import json, platform, time
from datetime import date
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import numpy as np
from fastcore.script import call_parse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold

from fashion_fastai.answering.parts import WAYS, fit_platt, gate_evidence, platt
from fashion_fastai.answering.review import MIN_UNFLAGGED
from fashion_fastai.answering.temperature import fit_temperature, temper, ece
from fashion_fastai.core.models import ALL
from fashion_fastai.core.schema import LABEL
from fashion_fastai.evaluation.join import answered
from joined_run import read_joined_run  # bench/, beside this script
from review_curve import precision_at  # bench/, beside this script

MIX = (0., .1, .2, .3, .4, .5, .6)  # the all-classes model's power inside a part
TEMPERATURES = np.exp(np.linspace(-1, 1, 41))  # the ECE-aware temperature's grid, on top of the run's own


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-300, 1)
    return -(p * np.log(p)).sum(1)


def stack_features(members: dict, answer, index: dict) -> np.ndarray:
    "Per photo: the part sums' log-odds, then each stage's best probability's log-odds and its entropy."
    cols = [logit(gate_evidence('all_parts', members, index))]
    for part in ('top', 'rare'):
        p = np.asarray(members[answer.stages[part][0]], np.float64)
        cols += [logit(p.max(1)), entropy(p)]
    return np.stack(cols, 1)


def within(members: dict, answer, index: dict, part: str, w: float) -> np.ndarray:
    "p(class | part) [N, the part's classes]: the stage's to the power 1 - w times the all-classes model's to w."
    out = (np.asarray(members[answer.stages[part][0]], np.float64) ** (1 - w)
           * np.asarray(members[ALL], np.float64)[:, index[part]] ** w)  # 0 ** 0 is 1: a class either gives 0 stays 0
    return out / np.clip(out.sum(1, keepdims=True), 1e-300, None)


def joined(g: np.ndarray, conditionals: dict, index: dict, classes: int) -> np.ndarray:
    out = np.zeros((len(g), classes))
    for part, weight in (('top', g), ('rare', 1 - g)): out[:, index[part]] = weight[:, None] * conditionals[part]
    return out


def part_temperatures(members: dict, answer, holdout, seeds: int) -> dict:
    """{stage: {way: cross-fitted ECE of its part's holdout photos with the temperature fitted by log-likelihood, and
    with the one of `TEMPERATURES` of least ECE}}.  The members' probabilities are the run's, already tempered: a
    second temperature on them composes with the first."""
    out = {}
    for part, (name, vocab) in answer.stages.items():
        mine = np.asarray(holdout['part'] == part)
        y = np.array([list(vocab).index(c) for c in holdout[LABEL][mine]])
        for way in WAYS:
            p = np.asarray(members[name][way], np.float64)[mine]
            answerable = p[np.arange(len(y)), y] > 0
            by = {'log-likelihood': [], 'least ECE': []}
            for seed in range(seeds):
                tempered = {k: np.zeros_like(p) for k in by}
                for fit, held in KFold(5, shuffle=True, random_state=seed).split(p):
                    ok = answerable[fit]
                    t = {'log-likelihood': fit_temperature(p[fit][ok], y[fit][ok]),
                         'least ECE': min(TEMPERATURES, key=lambda t: ece(temper(p[fit], t), y[fit]))}
                    for k in by: tempered[k][held] = temper(p[held], t[k])
                for k in by: by[k].append(ece(tempered[k], y))
            out.setdefault(name, {})[way] = dict(photos=int(mine.sum()), top1=float((p.argmax(1) == y).mean()),
                                                 ece_in_sample=ece(p, y),
                                                 **{f'ece_cross_fitted, {k}': float(np.mean(v)) for k, v in by.items()})
    return out


def review_scores(members: dict, answer, index: dict, y: np.ndarray, seeds: int) -> dict:
    """{way: the share right of the `MIN_UNFLAGGED` highest-ranked holdout photos of the joined answer (the run's
    fits), by its best probability and by a stacked score cross-fitted on the holdout}."""
    out = {}
    for way in WAYS:
        probs = {n: members[n][way] for n in answer.members}
        joined_ = answer.apply(probs, way == 'closed_set')
        best2, said = np.sort(joined_, 1)[:, -2:], joined_.argmax(1)
        hit = said == y
        f = answer.fits[way]
        g = platt(gate_evidence(answer.gate, probs, index), f['scale'], f['bias'])
        features = np.stack([logit(best2[:, 1]), np.log(np.clip(best2[:, 1] - best2[:, 0], 1e-12, None)), logit(g),
                             *(logit(np.asarray(probs[answer.stages[p][0]]).max(1)) for p in ('top', 'rare')),
                             (np.asarray(members[ALL][way]).argmax(1) == said).astype(float)], 1)
        stacked = []
        for seed in range(seeds):
            score = np.zeros(len(y))
            for fit, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, hit):
                score[held] = LogisticRegression(max_iter=5000).fit(features[fit], hit[fit]).predict_proba(
                    features[held])[:, 1]
            stacked.append(precision_at(score, hit, MIN_UNFLAGGED))
        out[way] = dict(top1=float(hit.mean()), unflagged=MIN_UNFLAGGED,
                        right_by_best_probability=precision_at(best2[:, 1], hit, MIN_UNFLAGGED),
                        right_by_stacked_score=float(np.mean(stacked)))
    return out


@call_parse
def main(run: Path,        # a run folder with both stages, its all-classes model and joined.json
         seeds: int = 3,     # shuffles of the holdout's five folds
         cache: Path = None,  # an .npz file keeping the members' holdout answers (read if it exists)
         out: Path = None,    # a JSON file for the numbers (default: print only)
         ):
    started, joined_run = time.time(), read_joined_run(run)
    answer, names, holdout = joined_run.answer, joined_run.names, joined_run.holdout
    vocab, index, is_top, y = list(answer.vocab), answer.index(), joined_run.is_top, joined_run.targets
    if min(is_top.sum(), (~is_top).sum()) < 5:
        raise SystemExit(f"{run}'s holdout has {is_top.sum()} photos of the top part and {(~is_top).sum()} of the "
                         "rare one: five folds need at least five of each (a demo run holds too few).")
    if cache is not None and Path(cache).is_file():
        saved = np.load(cache)
        members = {n: {w: saved[f'{n}/{w}'] for w in WAYS} for n in names}
    else:
        members = {n: answered(m, list(holdout['file'])) for n, m in joined_run.models().items()}
        if cache is not None: np.savez(cache, **{f'{n}/{w}': members[n][w] for n in names for w in WAYS})
    print(f"{len(holdout)} holdout photos ({is_top.mean():.1%} top part); members answered in "
          f"{time.time() - started:.0f} s")

    levers = {'all_parts (the run\'s gate)': (False, (0.,)), 'stacked gate': (True, (0.,)),
              'all_parts, the all-classes model inside each part': (False, MIX),
              'stacked gate, the all-classes model inside each part': (True, MIX)}
    result = {}
    for way in WAYS:
        probs = {n: members[n][way] for n in names}
        features, evidence = stack_features(probs, answer, index), gate_evidence('all_parts', probs, index)
        conditionals = {w: {p: within(probs, answer, index, p, w) for p in ('top', 'rare')} for w in MIX}
        for lever, (stacked, mix) in levers.items():
            hits, chosen, nll, calib = [], [], [], []
            for seed in range(seeds):
                answered_ = np.zeros((len(y), len(vocab)))
                for fit, held in StratifiedKFold(5, shuffle=True, random_state=seed).split(features, is_top):
                    if stacked:
                        head = LogisticRegression(max_iter=5000).fit(features[fit], is_top[fit])
                        g = head.predict_proba(features)[:, 1]
                    else: g = platt(evidence, *fit_platt(evidence[fit], is_top[fit]))
                    fold = {w: (joined(g[fit], {p: c[fit] for p, c in conditionals[w].items()}, index, len(vocab))
                                .argmax(1) == y[fit]).mean() for w in mix}
                    w = max(mix, key=lambda m: (fold[m], -m))
                    raw = joined(g, conditionals[w], index, len(vocab))
                    ok = raw[fit, y[fit]] > 0
                    t = fit_temperature(raw[fit][ok], y[fit][ok])
                    answered_[held] = temper(raw[held], t)
                    chosen.append(w)
                hits.append((answered_.argmax(1) == y).mean())
                ok = answered_[np.arange(len(y)), y] > 0
                nll.append(float(-np.log(np.clip(answered_[np.arange(len(y)), y][ok], 1e-300, None)).mean()))
                calib.append(ece(answered_, y))
            result.setdefault(lever, {})[way] = dict(
                top1=float(np.mean(hits)), top1_each_shuffle=[float(h) for h in hits], log_loss=float(np.mean(nll)),
                ece=float(np.mean(calib)), mix_chosen=sorted(set(float(c) for c in chosen)))
    own_part = {}  # the ceiling of any gate on these stages: each photo sent to its own part's stage
    for way in WAYS:
        conditionals = {p: np.asarray(members[answer.stages[p][0]][way], np.float64) for p in ('top', 'rare')}
        own_part[way] = float((joined(is_top.astype(float), conditionals, index, len(vocab)).argmax(1) == y).mean())
    print("each photo to its own part's stage: " + ', '.join(f"{w} {100 * v:.2f}%" for w, v in own_part.items()))
    temperatures, review = part_temperatures(members, answer, holdout, seeds), review_scores(members, answer, index, y,
                                                                                          seeds)
    for lever, ways in result.items():
        print(f"{lever:>55}: " + '; '.join(
            f"{w} top-1 {100 * r['top1']:.2f}% (log-loss {r['log_loss']:.4f}, ECE {100 * r['ece']:.2f}%, mix "
            f"{r['mix_chosen']})" for w, r in ways.items()))
    for name, ways in temperatures.items():
        print(f"{name} temperature: " + '; '.join(f"{w} " + ', '.join(
            f"{k} {100 * v:.2f}%" for k, v in r.items() if k.startswith('ece')) for w, r in ways.items()))
    for way, r in review.items():
        print(f"review, {way}: right of the {r['unflagged']:.0%} ranked highest: by the best probability "
              f"{100 * r['right_by_best_probability']:.2f}%, by the stacked score "
              f"{100 * r['right_by_stacked_score']:.2f}%")
    if out is not None:
        Path(out).write_text(json.dumps(dict(
            command=f'python bench/joined_levers.py {run} --seeds {seeds}', date=str(date.today()),
            machine=platform.processor() or platform.machine(), holdout_photos=len(holdout), seeds=seeds,
            seconds=time.time() - started, joined=result, own_part=own_part, part_temperatures=temperatures,
            review_scores=review), indent=1))
