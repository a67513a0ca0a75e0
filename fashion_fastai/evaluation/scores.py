"""Exact evaluation numbers from test-split predictions: per-class top-k, micro and macro averages, ceilings.

Some classes keep a vocab index but have no training image ("unseen").  A model cannot learn them, so a single accuracy
hides how much of the error is unavoidable.  Every average is therefore given over all classes and over seen classes
(>= 1 train image), next to the ceiling that unseen classes impose on micro accuracy.

Everything here works on tensors and DataFrames, so it can be tested without a `Learner` and rerun on saved predictions.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor


def _check_preds(probs: Tensor, targets: Tensor, n_classes: int | None = None) -> None:
    "Fail loudly: a silent shape/label mismatch would produce plausible but wrong numbers."
    if probs.ndim != 2:
        raise ValueError(f"probs must be [N, C], got shape {tuple(probs.shape)}")
    if targets.ndim != 1 or targets.shape[0] != probs.shape[0]:
        raise ValueError(f"targets must be [N={probs.shape[0]}], got shape {tuple(targets.shape)}")
    if n_classes is not None and probs.shape[1] != n_classes:
        raise ValueError(f"probs has {probs.shape[1]} columns but the vocab has {n_classes} classes")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= probs.shape[1]):
        raise ValueError(f"targets must lie in [0, {probs.shape[1]})")


def top_k_correct(
    probs: Tensor,  # [N, C] class scores; any monotone transform of probabilities works
    targets: Tensor,  # [N] true class indices
    k: int,  # clamped to C, so "top-5" on a 3-class stage means "any of the 3"
) -> Tensor:  # bool [N]: the target is among the k highest scores
    "Per-image hit flags, so per-class and micro/macro numbers all derive from one source."
    _check_preds(probs, targets)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, probs.shape[1])
    top = torch.topk(probs, k, dim=1).indices  # ties are broken by torch, not by us
    return (top == targets.to(top.device, torch.long).unsqueeze(1)).any(dim=1).cpu()


def class_table(
    probs: Tensor,  # [N, C] class scores on the test split
    targets: Tensor,  # [N] true class indices into `vocab`
    vocab: list[str],  # class names in model output order
    train_counts: dict[str, int],  # train images per class; missing => 0 (unseen), names outside vocab ignored
    ks: tuple[int, ...] = (1, 5),  # top-k levels to report
) -> pd.DataFrame:  # index: class (vocab order); n_train, n_test, correct_top{k}, top{k}, seen
    "Per-class counts and accuracies; keeps raw counts so every average can be recomputed exactly."
    vocab = list(vocab)
    if len(set(vocab)) != len(vocab):
        raise ValueError("vocab contains duplicate class names")
    _check_preds(probs, targets, len(vocab))
    codes = range(len(vocab))
    hits = pd.DataFrame({f"correct_top{k}": top_k_correct(probs, targets, k).numpy() for k in ks})
    hits["target"] = targets.detach().cpu().long().numpy()
    correct = hits.groupby("target").sum().reindex(codes, fill_value=0).astype("int64")
    n_test = hits["target"].value_counts().reindex(codes, fill_value=0).astype("int64")
    table = pd.DataFrame(index=pd.Index(vocab, name="class"))
    table["n_train"] = np.array([int(train_counts.get(c, 0)) for c in vocab], dtype="int64")
    table["n_test"] = n_test.to_numpy()
    for k in ks:
        table[f"correct_top{k}"] = correct[f"correct_top{k}"].to_numpy()
    denom = table["n_test"].where(table["n_test"] > 0)  # NaN => NaN accuracy, not 0
    for k in ks:
        table[f"top{k}"] = table[f"correct_top{k}"] / denom
    table["seen"] = table["n_train"] > 0
    return table


def _ratio(num, den) -> float | None:
    "Plain float for JSON; None (not NaN) when undefined, because NaN is not valid JSON."
    return float(num) / float(den) if den else None


def _mean(s: pd.Series) -> float | None:
    return float(s.mean()) if len(s) else None


def _averages(t: pd.DataFrame, ks) -> dict:
    tested = t[t["n_test"] > 0]
    out = {f"micro_top{k}": _ratio(t[f"correct_top{k}"].sum(), t["n_test"].sum()) for k in ks}
    out |= {f"macro_top{k}": _mean(tested[f"top{k}"]) for k in ks}
    return out


def summarize(
    table: pd.DataFrame,  # output of `class_table`
    ks: tuple[int, ...] = (1, 5),  # must match the ks the table was built with
) -> dict:  # JSON-ready: {"all": {...}, "seen": {...}, "ceiling_top{k}": ..., counts...}
    """Micro (per image) and macro (per class with test images) top-k, over all and seen classes.

    `ceiling_top{k}` is the share of test images whose class is seen: the best micro accuracy
    reachable if unseen classes are never hit. It is the same for every k and is kept per k
    only so that each metric has a matching key. Undefined values are None.
    """
    missing = [c for k in ks for c in (f"correct_top{k}", f"top{k}") if c not in table]
    if missing:
        raise KeyError(f"table lacks columns {missing}; was it built with ks={tuple(ks)}?")
    seen = table[table["seen"]]
    unseen_tested = table[~table["seen"] & (table["n_test"] > 0)]
    n_test = int(table["n_test"].sum())
    n_seen_test = int(seen["n_test"].sum())
    ceiling = _ratio(n_seen_test, n_test)
    return {
        "all": _averages(table, ks),
        "seen": _averages(seen, ks),
        **{f"ceiling_top{k}": ceiling for k in ks},
        "n_test": n_test,
        "n_seen_test_images": n_seen_test,
        "n_unseen_test_images": n_test - n_seen_test,
        "n_classes": int(len(table)),
        "n_classes_with_test": int((table["n_test"] > 0).sum()),
        "n_seen_classes": int(len(seen)),
        "n_seen_classes_with_test": int((seen["n_test"] > 0).sum()),
        "unseen_test_classes": [str(c) for c in unseen_tested.index],
    }


def by_part(
    table: pd.DataFrame,  # output of `class_table` for a model over several parts' classes
    parts: dict[str, list],  # part name -> its classes, e.g. {"top": [...], "rare": [...]}
    ks: tuple[int, ...] = (1, 5),
) -> dict:  # part -> {"micro_top{k}": ..., "n_test": ...}
    "Micro top-k over each part's test images, so a model over every class compares with the stage trained on it."
    out = {}
    for name, classes in parts.items():
        t = table[table.index.isin(classes)]
        out[name] = {**{f"micro_top{k}": _ratio(t[f"correct_top{k}"].sum(), t["n_test"].sum()) for k in ks},
                     "n_test": int(t["n_test"].sum())}
    return out
