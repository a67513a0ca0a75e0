"""The step after a model is evaluated: on its part's holdout (even-year photos it did not train on), fit a temperature
per head and the zero-shot gate's boost, then score the test split the ways a user can ask for (closed-set: the
trained head alone, as the published runs were scored; joined: with the zero-shot classes).  The fitted values become
the model's `Answering` (answering.py), recorded in its JSON for predict; the numbers go to the report, the test split
scored through that `Answering.apply`, the function every command that answers photos calls, so they cannot drift.

The test split is only scored here: every fitted value comes from the holdout.  A run without a holdout (`--holdout 0`)
has nothing to fit on, and its models answer with their plain softmax and no zero-shot classes, saying why.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from fashion_fastai.answering.answering import REVIEW_PROB, Answering, adjust_prior, fit_prior_strength
from fashion_fastai.answering.review import fit_review, flag_numbers
from fashion_fastai.answering.temperature import ece, fit_temperature, reliability, temper
from fashion_fastai.evaluation import trust
from fashion_fastai.core.schema import LABEL
from fashion_fastai.evaluation.evaluate import evaluate_heads
from fashion_fastai.evaluation.scores import class_table, summarize
from fashion_fastai.answering.zero_shot import MAX_ROUTED, ZeroShotPath


def review_numbers(probs, before, targets, nameable=None) -> dict:
    """ECE before and after the temperature, and at `REVIEW_PROB` the share of photos above it and their accuracy;
    given `nameable` (which photos are of a class the answer can name: trained, or zero-shot with a map row), the ECE of
    those photos too.  A photo of a class the answer cannot name is wrong at any confidence, and a holdout of even years
    has few such photos where the odd years can have many, so the two ECEs tell calibration from that shift."""
    probs, targets = np.asarray(probs), np.asarray(targets)
    sure, hit = probs.max(1) >= REVIEW_PROB, probs.argmax(1) == targets
    out = dict(ece_before=ece(before, targets), ece_after=ece(probs, targets),
               coverage=float(sure.mean()) if len(sure) else None,
               precision=float(hit[sure].mean()) if sure.any() else None)
    if nameable is not None:
        nameable = np.asarray(nameable, bool)
        out.update(nameable=float(nameable.mean()) if len(nameable) else None,
                   ece_nameable=ece(probs[nameable], targets[nameable]) if nameable.any() else None)
    return out


def untrained_classes(vocab, train_counts: dict) -> list:
    return [c for c in vocab if not train_counts.get(c, 0)]


def calibrate(learn, holdout: pd.DataFrame,   # the part's holdout rows (`eval_rows(data, part, 'valid')`)
              # {head: (table, summary, probs, targets)} of `evaluate_heads` on the test rows
              test: dict,
              test_rows: pd.DataFrame,        # the test rows, in that order
              train_counts: dict,             # {head: {class: training images}}, as evaluated
              zmap: dict,                     # the zero-shot map (zero_shot.load_map)
              scorer=None,                    # imagenet_classifier.Scorer, or None (`no_scorer` says why)
              no_scorer: str = '',
              network: dict = None,           # the frozen network's record for the JSON ({'file', 'arch', 'size', ...})
              tta=0,
              max_routed: float = MAX_ROUTED,
              categories: dict = None) -> tuple[Answering, dict]:  # {attribute: {article type: value}} (categories.py)
    """(the model's `Answering`, the report's numbers: per head its temperature and review numbers; with a zero-shot
    path, the joined table and summary, routing and review numbers; `curves` for the reliability plot; `attributes`,
    `review` and `collateral`: evaluation/trust.py's)."""
    test_files = list(test_rows['file'])
    if holdout is None or not len(holdout):
        why = ('trained without a holdout (--holdout 0): nothing to fit temperatures and the zero-shot gate on, so '
               'the model answers with its softmax and no zero-shot classes')
        return Answering(why_not=why), dict(why_not=why)
    held = evaluate_heads(learn, holdout, train_counts, tta)
    vocab = list(test[LABEL][0].index)
    targets = {h: np.asarray(t[3]) for h, t in test.items()}
    prior = tuple(int(train_counts[LABEL].get(c, 0)) for c in vocab)
    strength, by_strength = fit_prior_strength(held[LABEL][2], held[LABEL][3], prior)
    held_p = {h: adjust_prior(p, prior, strength) if h == LABEL else p for h, (_, _, p, _) in held.items()}
    temperatures = {h: fit_temperature(held_p[h], y) for h, (_, _, _, y) in held.items()}
    softmax = {h: np.asarray(test[h][2], np.float64) for h in held}
    closed, _ = Answering(temperatures, prior=prior, prior_strength=strength).apply(softmax, closed_set=True)
    trained = np.isin(targets[LABEL], _trained(vocab, train_counts))
    heads = {h: dict(temperature=temperatures[h], **review_numbers(closed[h], softmax[h], targets[h],
                                                                   trained if h == LABEL else None)) for h in held}
    curves = {'closed-set, softmax': reliability(softmax[LABEL], targets[LABEL]),
              'closed-set, calibrated': reliability(closed[LABEL], targets[LABEL])}
    closed_table = class_table(torch.from_numpy(closed[LABEL]), torch.from_numpy(targets[LABEL]), vocab,
                               train_counts[LABEL])  # as `predict --closed-set` answers: after the prior's adjustment
    numbers = dict(holdout_images=len(holdout), review_prob=REVIEW_PROB, heads=heads, curves=curves,
                   prior=dict(strength=strength, holdout_top1=by_strength), closed_summary=summarize(closed_table))
    untrained = untrained_classes(vocab, train_counts[LABEL])
    path = ZeroShotPath.of(vocab, untrained, zmap)
    why = ('every class of this model had training photos' if not untrained else
           f"no zero-shot map row for its classes without training photos ({', '.join(untrained)})"
           if not path.head.classes else no_scorer if scorer is None else '')
    holdout_record = dict(images=len(holdout), max_routed=max_routed)
    table = categories or {}
    of = trust.value_indices(table, vocab, {h: list(t[0].index) for h, t in test.items()})
    hold_masks = {a: trust.has_value(holdout, a) for a in of}
    test_masks = {a: trust.has_value(test_rows, a) for a in of}
    held_closed = {h: temper(held_p[h], temperatures[h]) for h in held}
    groups, untrained_test = trust.groups_of(table, vocab), ~trained
    review_closed, numbers['review'] = fit_review(held_closed[LABEL], held[LABEL][3], groups)
    numbers['review']['test'] = flag_numbers(closed[LABEL], targets[LABEL], review_closed, untrained_test)
    if why:
        attributes, numbers['attributes'] = _attributes(of, held, held_closed, hold_masks, closed, closed[LABEL],
                                                        test_masks, targets)
        numbers['why_not'] = why
        return Answering(temperatures, holdout=holdout_record, why_not=why, prior=prior, prior_strength=strength,
                         attributes=attributes, review=dict(closed_set=review_closed)), numbers
    hold_p, hold_y = np.asarray(held_p[LABEL], np.float64), np.asarray(held[LABEL][3])
    hold_imagenet = scorer.probs(holdout['file'])
    path = path.fitted(hold_p, hold_imagenet, max_routed, hold_y)
    joined_hold = path.joined(hold_p, hold_imagenet)
    answerable = path.answerable(hold_y)
    joined_t = fit_temperature(joined_hold[answerable], hold_y[answerable])
    of_trained = path.of_trained(hold_y)  # the photos the bound counts
    routed_hold = float(path.routed(joined_hold[of_trained]).mean()) if of_trained.any() else 0.
    holdout_record['routed'] = routed_hold
    hold_answered = {**held_closed, LABEL: temper(joined_hold, joined_t)}
    review_zs, numbers['review_zero_shot'] = fit_review(hold_answered[LABEL], hold_y, groups)
    test_p, imagenet = softmax[LABEL], scorer.probs(test_files)
    plain, _ = Answering(temperatures, path, joined_t, prior=prior, prior_strength=strength).apply(softmax, imagenet)
    attributes, numbers['attributes'] = _attributes(of, held, hold_answered, hold_masks, closed, plain[LABEL],
                                                    test_masks, targets)
    answering = Answering(temperatures, path, joined_t, network, holdout_record, prior=prior, prior_strength=strength,
                          attributes=attributes, review=dict(closed_set=review_closed, zero_shot=review_zs))
    answered, routed = answering.apply(softmax, imagenet)  # as `predict` answers: `Predictor.answered` calls the same
    numbers['review_zero_shot']['test'] = flag_numbers(answered[LABEL], targets[LABEL], review_zs, untrained_test)
    after = answered[LABEL]  # before: untempered (but adjusted for the prior), for the ECE it had
    before = path.joined(adjust_prior(test_p, prior, strength), imagenet)
    y = targets[LABEL]
    table = class_table(torch.from_numpy(after), torch.from_numpy(y), vocab, train_counts[LABEL])
    zs = np.isin(y, path.zero_shot_index)
    curves['with zero-shot, calibrated'] = reliability(after, y)
    numbers['zero_shot'] = dict(
        classes=list(path.head.classes), boost=path.boost, max_routed=max_routed, temperature=joined_t,
        holdout_routed=routed_hold,
        test_routed=float(routed.mean()), test_images_of_zero_shot_classes=int(zs.sum()),
        zero_shot_classes_top1=float((after[zs].argmax(1) == y[zs]).mean()) if zs.any() else None,
        closed_zero_shot_classes_top1=float((test_p[zs].argmax(1) == y[zs]).mean()) if zs.any() else None,
        table=table, summary=summarize(table), **review_numbers(after, before, y, path.answerable(y)))
    numbers['collateral'], numbers['collateral_classes'] = trust.collateral(closed[LABEL], after, y, vocab,
                                                                            path.head.classes, train_counts[LABEL])
    return answering, numbers


def _trained(vocab, train_counts: dict) -> np.ndarray:
    return np.array([i for i, c in enumerate(vocab) if train_counts[LABEL].get(c, 0)], int)


def _attributes(of, held: dict, hold_answered: dict, hold_masks: dict, closed: dict, test_label, test_masks: dict,
                targets: dict) -> tuple[dict, dict]:
    """The attributes' way fitted on the holdout's answers (`hold_answered`: each head tempered, the article type as
    the model answers it) and measured on the test split's (`test_label`, answered the same way); `closed`'s other
    heads are tempered alone, as the attributes' heads answer before any way is applied."""
    fitted = [a for a in of if a in held]
    attributes, numbers = trust.fit_attributes(of, {a: hold_answered[a] for a in fitted}, hold_answered[LABEL],
                                               hold_masks, {a: held[a][3] for a in fitted})
    return attributes, trust.attribute_numbers(attributes, {a: closed[a] for a in attributes}, test_label, test_masks,
                                               targets, numbers)
