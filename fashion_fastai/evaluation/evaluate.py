"""Evaluating a trained learner on its part's test rows: one prediction pass in a fixed order (or the one training
already made), then the numbers of every head. The numbers themselves are scores.py's, the report's words
report.py's."""
from __future__ import annotations

import pandas as pd

from fashion_fastai.networks.attributes import article_vocab, head_vocabs
from fashion_fastai.core.schema import LABEL, MISSING_CODE
from fashion_fastai.data.styles import as_items
from fashion_fastai.training.distributed import alone
from fashion_fastai.evaluation.scores import class_table, summarize
from fashion_fastai.evaluation.tta import predict_with_tta


def evaluate_heads(learn, rows: pd.DataFrame,
                   # {head: {class: training images}} for the heads to tabulate (LABEL: the article type)
                   train_counts: dict,
                   tta=0,                   # test-time augmentation: 0, 'flip' or fastai tta passes (see tta.py)
                   # (outputs, targets) of `rows` already predicted (`KeepValidPreds`): no new pass
                   predicted: tuple = None, ):
    """Predict the part's test rows once, in a fixed order (with `tta`: flip's one extra pass, or fastai's `tta`
    passes), and tabulate each head asked for: per-class top-1/top-5 for the article type, top-1 for another attribute,
    over the rows that have it. Returns {head: (table, summary, probs, targets)}."""
    heads = head_vocabs(learn.model, article_vocab(learn.dls))
    if predicted is not None and not tta: probs, targs = predicted
    else:
        dl = learn.dls.test_dl(as_items(rows, [h for h in heads if h != LABEL]), with_labels=True, shuffle=False)
        with alone():  # only the main process evaluates
            probs, targs = predict_with_tta(learn, dl, tta, predicted)
    if not isinstance(probs, tuple): probs, targs = (probs,), (targs,)
    out = {}
    for (head, vocab), p, t in zip(heads.items(), probs, targs):
        if head not in train_counts: continue
        keep = t != MISSING_CODE  # rows without the attribute are left out of its numbers (counted in the load report)
        p, t = p[keep], t[keep]
        table = class_table(p, t, vocab, train_counts[head], ks=(1, 5) if head == LABEL else (1,))
        out[head] = table, summarize(table, ks=(1, 5) if head == LABEL else (1,)), p, t
    return out


def evaluate_learner(learn, rows: pd.DataFrame, train_counts: dict, tta=0):
    "The article type's (table, summary, probs, targets) on the part's test rows (see `evaluate_heads`)."
    return evaluate_heads(learn, rows, {LABEL: train_counts}, tta)[LABEL]
