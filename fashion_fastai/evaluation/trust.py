"""What a catalogue can trust in an answer, fitted on the holdout and measured on the test split, for a model
(calibrate.py) and for the run's joined answer (join.py) alike: the attributes an article type decides, answered so
that they agree with it (answering/categories.py); the review rule (answering/review.py); and what the zero-shot path
takes from each trained class and gives to the zero-shot ones.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fashion_fastai.answering import categories as cat


def has_value(rows: pd.DataFrame, attribute: str) -> np.ndarray:
    "Which rows have the attribute: the rows its head's numbers are over (evaluate.py leaves the others out)."
    v = rows[attribute]
    return (v.notna() & (v.astype(str).str.strip() != '')).to_numpy()


def value_indices(table: dict, vocab, head_vocabs: dict) -> dict:
    "{attribute: each article type's value index in its head} for the decided attributes the model has a head for."
    return {a: cat.value_index(table[a], vocab, head_vocabs[a]) for a in cat.DECIDED if a in table and a in head_vocabs}


def fit_attributes(of: dict, heads: dict, label, masks: dict, targets: dict) -> tuple[dict, dict]:
    """({attribute: {'way', 'of'}} for `Answering.attributes`, {attribute: each way's holdout top-1 and agreement with
    the article type, and the way kept}): `heads` each attribute's answered head probabilities on the holdout photos
    that have it (`masks`), `label` the article type's answered probabilities on every holdout photo."""
    record, numbers = {}, {}
    for a, index in of.items():
        if a not in heads: continue
        measured = cat.measure(heads[a], np.asarray(label)[masks[a]], index, targets[a])
        way = cat.choose(measured)
        record[a], numbers[a] = dict(way=way, of=list(map(int, index))), dict(kept=way, holdout=measured)
    return record, numbers


def attribute_numbers(record: dict, heads: dict, label, masks: dict, targets: dict, numbers: dict) -> dict:
    """`numbers` (fit_attributes') with each attribute's test numbers: every way's top-1 and agreement with the article
    type answered, `heads` the heads' answered probabilities on the test photos that have it."""
    out = {}
    for a, d in record.items():
        if a not in heads: continue
        measured = cat.measure(heads[a], np.asarray(label)[masks[a]], d['of'], targets[a])
        out[a] = dict(numbers[a], test=measured, photos=int(np.asarray(masks[a]).sum()))
    return out


def groups_of(table: dict, vocab) -> list:
    "Each article type's subCategory (None where unknown): the kinds of product left out to make never-seen ones."
    sub = table.get('subCategory', {})
    return [sub.get(c) for c in vocab]


def zero_shot_collateral(closed, with_zs, targets, vocab, zero_shot_classes, train_counts: dict) -> pd.DataFrame:
    """Per class with test photos: how many, top-1 closed-set and with zero-shot answers, and the share answered with a
    zero-shot class: for a trained class what zero-shot takes from it, for a zero-shot class what it gives."""
    y = np.asarray(targets)
    c_best, z_best = np.asarray(closed).argmax(1), np.asarray(with_zs).argmax(1)
    zs = np.isin(z_best, [vocab.index(c) for c in zero_shot_classes])
    rows = []
    for k in np.unique(y):
        mine = y == k
        rows.append(dict(cls=vocab[k], trained=bool(train_counts.get(vocab[k], 0)), photos=int(mine.sum()),
                         closed_top1=float((c_best[mine] == k).mean()),
                         zero_shot_top1=float((z_best[mine] == k).mean()), answered_zero_shot=float(zs[mine].mean())))
    return pd.DataFrame(rows, columns=['cls', 'trained', 'photos', 'closed_top1', 'zero_shot_top1',
                                       'answered_zero_shot']).set_index('cls')


def collateral(closed, with_zs, targets, vocab, zero_shot_classes, train_counts: dict) -> tuple[dict, list]:
    """(`collateral_summary`, the classes a zero-shot class answered any photo of, and the zero-shot classes, as
    records of `zero_shot_collateral`): the report's and metrics.json's numbers."""
    table = zero_shot_collateral(closed, with_zs, targets, vocab, zero_shot_classes, train_counts)
    moved = table[(table['answered_zero_shot'] > 0) | ~table['trained']]
    return collateral_summary(table), moved.reset_index().to_dict('records')


def collateral_summary(table: pd.DataFrame) -> dict:
    """Over the trained classes: the share of their photos a zero-shot class answered, and the worst class by that share
    and by top-1 lost against the closed-set answer."""
    trained = table[table['trained']]
    if not len(trained): return dict(trained_photos_taken=None)
    loss = trained['closed_top1'] - trained['zero_shot_top1']
    taken = trained['answered_zero_shot']
    return dict(trained_photos_taken=float((taken * trained['photos']).sum() / trained['photos'].sum()),
                most_taken_class=str(taken.idxmax()), most_taken=float(taken.max()),
                most_lost_class=str(loss.idxmax()), most_lost=float(loss.max()),
                classes_losing_over_3_points=int((loss > 0.03 + 1e-12).sum()))
