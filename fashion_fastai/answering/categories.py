"""The attributes an article type decides (its masterCategory and subCategory), answered so that they never contradict
the article type that was answered.

An article type belongs to one masterCategory and one subCategory: the even years' labels say which (the most frequent
value of its even-year rows, where a few rows disagree), and for an article type with no even-year photo, the zero-shot
map's row says it beside its name (`zero_shot.py`, written from the names alone).  From the article type's answered
probabilities, p(value) = the sum over the article types of that value, and the answer is the value of the article type
answered, so the catalogue row "Lipstick / Personal Care / Lips" reads as one answer.  Which way each attribute is
answered (its head's own softmax, or from the article type) is chosen on the holdout (`choose`): among the ways that
agree with the answered article type on at least `CONSISTENT` of its photos, the most accurate.  Numpy only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fashion_fastai.core.errors import DataError
from fashion_fastai.core.schema import LABEL

DECIDED = ('masterCategory', 'subCategory')  # the attributes an article type decides
HEADS, ARTICLE_TYPE, PRODUCT = 'heads', 'article_type', 'heads_x_article_type'
WAYS = (HEADS, ARTICLE_TYPE, PRODUCT)  # how an attribute can be answered; see `attribute_probs`
CONSISTENT = 0.99  # the share of holdout photos whose attribute must agree with the answered article type


def category_table(rows: pd.DataFrame, zmap_categories: dict = None) -> dict:
    """{attribute: {article type: value}} for the `DECIDED` attributes in `rows` (the even years' labelled rows): the
    most frequent value of each article type (the first in sorted order on a tie), then the zero-shot map's values for
    article types without a row here."""
    out = {}
    for a in DECIDED:
        if a not in rows.columns: continue
        known = rows[[LABEL, a]].dropna()
        counts = known.groupby([LABEL, a]).size().reset_index(name='n').sort_values([LABEL, 'n', a],
                                                                                  ascending=[True, False, True])
        table = dict(counts.drop_duplicates(LABEL)[[LABEL, a]].itertuples(index=False, name=None))
        for cls, values in (zmap_categories or {}).items():
            if cls not in table and values.get(a): table[cls] = values[a]
        out[a] = table
    return out


def check_values(zmap_categories: dict, known: dict, source: str) -> None:
    """A zero-shot map row's category that the data never uses (`known`: {attribute: its values}) is a typo that would
    leave its article type without a value: refuse it, naming the row."""
    for cls, values in zmap_categories.items():
        for a, v in values.items():
            if a in known and v not in known[a]:
                near = sorted(k for k in known[a] if v.lower() in k.lower() or k.lower() in v.lower())[:5]
                raise DataError(f"{source}: the row of {cls!r} gives {a} {v!r}, which no row of styles.csv has"
                                + (f" (did you mean {', '.join(map(repr, near))}?)" if near else '')
                                + f": give one of the data's {a} values, or leave the cell empty.")


def value_index(table: dict, vocab, head_vocab) -> list:
    """Per article type of `vocab`, the index of its value in the head's `head_vocab`; -1 where the table has none (an
    article type never labelled and without a map row) or where the head has no such value."""
    where = {v: i for i, v in enumerate(head_vocab)}
    return [where.get(table.get(c), -1) for c in vocab]


def marginal(label_probs, of, n_values: int) -> np.ndarray:
    """p(value) [N, n_values] = the sum of the article type probabilities [N, K] over the article types of each value
    (`of`: `value_index`), renormalised over the article types that have one."""
    p, of = np.asarray(label_probs, np.float64), np.asarray(of, int)
    known = of >= 0
    out = p[:, known] @ np.eye(n_values)[of[known]]
    return out / np.clip(out.sum(1, keepdims=True), 1e-300, None)


def attribute_probs(way: str, head_probs, label_probs, of) -> np.ndarray:
    """An attribute's answered probabilities [N, its values]: `heads`, its head's own; `article_type`, the article
    types' sum per value; `heads_x_article_type`, the two multiplied and renormalised (the head's evidence joined with
    the article type's)."""
    head = np.asarray(head_probs, np.float64)
    if way == HEADS: return head
    derived = marginal(label_probs, of, head.shape[1])
    if way == ARTICLE_TYPE: return derived
    if way == PRODUCT:
        out = head * derived
        return out / np.clip(out.sum(1, keepdims=True), 1e-300, None)
    raise ValueError(f"attribute way {way!r}: expected one of {', '.join(WAYS)}")


def answer_index(way: str, probs, label_probs, of) -> np.ndarray:
    """Each photo's answered value index [N]: from the article type, the value of the article type answered (where it
    has one, else the most probable value); otherwise the most probable value."""
    best = np.asarray(probs).argmax(1)
    if way != ARTICLE_TYPE or not len(best): return best
    of_answer = np.asarray(of, int)[np.asarray(label_probs).argmax(1)]
    return np.where(of_answer >= 0, of_answer, best)


def agreement(answer, label_probs, of) -> float | None:
    """The share of photos whose answered value is the answered article type's (photos whose article type has no value
    left out); None without such photos."""
    of_answer = np.asarray(of, int)[np.asarray(label_probs).argmax(1)]
    known = of_answer >= 0
    return float((np.asarray(answer)[known] == of_answer[known]).mean()) if known.any() else None


def measure(head_probs, label_probs, of, targets) -> dict:
    """{way: {'top1', 'consistent'}} of each way of answering the attribute on these photos (`targets`: value indices,
    negative where the photo has no label, left out of top-1)."""
    targets = np.asarray(targets)
    labelled = targets >= 0
    out = {}
    for way in WAYS:
        answer = answer_index(way, attribute_probs(way, head_probs, label_probs, of), label_probs, of)
        out[way] = dict(top1=float((answer[labelled] == targets[labelled]).mean()) if labelled.any() else None,
                        consistent=agreement(answer, label_probs, of))
    return out


def choose(measured: dict) -> str:
    """The way kept: the most accurate of those consistent on at least `CONSISTENT` of the holdout's photos (the heads
    on a tie, then the article type); the article type's own when none is, which is consistent by construction."""
    fine = [w for w in WAYS if (measured[w]['consistent'] or 0) >= CONSISTENT and measured[w]['top1'] is not None]
    if not fine: return ARTICLE_TYPE
    return max(fine, key=lambda w: (measured[w]['top1'], -WAYS.index(w)))
