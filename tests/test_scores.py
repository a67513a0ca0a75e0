"""Exact-number tests for fashion_fastai.evaluation.scores on a hand-made prediction set (helpers.py, `preds`/`table` in
conftest.py), which test_report and test_plots share.

Fixture: 6 classes a..f, 7 test images.
  train: a=10 b=5 c=0 (unseen) d=3 e=2 f=1;  test: a=2 b=2 c=1 d=0 e=1 f=1.
Rank of the true class in each image's scores (0 = best) and the resulting hits:
  a:0 (top1, top5)  a:5 (-, -)  b:1 (-, top5)  b:0 (top1, top5)  c:5 (-, -)  e:4 (-, top5)  f:0 (top1, top5)
"""

import json
import math

import pytest
import torch

import fashion_fastai.reporting.report as report
import fashion_fastai.evaluation.scores as scores
from helpers import CASES, TRAIN, VOCAB

def test_fixture_ranks(preds):
    probs, targets = preds
    ranks = (probs > probs.gather(1, targets[:, None])).sum(1)
    assert ranks.tolist() == [r for _, r in CASES]


def test_top_k_correct(preds):
    probs, targets = preds
    assert scores.top_k_correct(probs, targets, 1).tolist() == [True, False, False, True, False, False, True]
    assert scores.top_k_correct(probs, targets, 5).tolist() == [True, False, True, True, False, True, True]
    assert scores.top_k_correct(probs, targets, 1).dtype == torch.bool


def test_top_k_clamps_to_n_classes():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    targets = torch.tensor([2, 0])
    assert scores.top_k_correct(probs, targets, 10).tolist() == [True, True]
    assert scores.top_k_correct(probs, targets, 3).tolist() == [True, True]
    assert scores.top_k_correct(probs, targets, 2).tolist() == [False, False]
    with pytest.raises(ValueError):
        scores.top_k_correct(probs, targets, 0)


def test_class_table_exact(table):
    assert list(table.index) == VOCAB and table.index.name == "class"
    assert list(table.columns) == ["n_train", "n_test", "correct_top1", "correct_top5", "top1", "top5", "seen"]
    assert table["n_train"].tolist() == [10, 5, 0, 3, 2, 1]
    assert table["n_test"].tolist() == [2, 2, 1, 0, 1, 1]
    assert table["correct_top1"].tolist() == [1, 1, 0, 0, 0, 1]
    assert table["correct_top5"].tolist() == [1, 2, 0, 0, 1, 1]
    assert table["seen"].tolist() == [True, True, False, True, True, True]
    exp1 = {"a": 0.5, "b": 0.5, "c": 0.0, "e": 0.0, "f": 1.0}
    exp5 = {"a": 0.5, "b": 1.0, "c": 0.0, "e": 1.0, "f": 1.0}
    for c in exp1:
        assert table.loc[c, "top1"] == pytest.approx(exp1[c])
        assert table.loc[c, "top5"] == pytest.approx(exp5[c])
    assert math.isnan(table.loc["d", "top1"]) and math.isnan(table.loc["d", "top5"])


def test_class_table_validates(preds):
    probs, targets = preds
    with pytest.raises(ValueError):
        scores.class_table(probs, targets, VOCAB[:-1], TRAIN)  # vocab / probs width mismatch
    with pytest.raises(ValueError):
        scores.class_table(probs, targets, ["a", "a", "c", "d", "e", "f"], TRAIN)
    with pytest.raises(ValueError):
        scores.class_table(probs, targets[:-1], VOCAB, TRAIN)
    with pytest.raises(ValueError):
        scores.class_table(probs, torch.tensor([0, 0, 0, 0, 0, 0, 6]), VOCAB, TRAIN)


def test_summarize_exact(table):
    s = scores.summarize(table)
    assert s["all"] == pytest.approx({"micro_top1": 3 / 7, "micro_top5": 5 / 7,
                                      "macro_top1": 2.0 / 5, "macro_top5": 3.5 / 5})
    assert s["seen"] == pytest.approx({"micro_top1": 3 / 6, "micro_top5": 5 / 6,
                                       "macro_top1": 2.0 / 4, "macro_top5": 3.5 / 4})
    assert s["ceiling_top1"] == pytest.approx(6 / 7)
    assert s["ceiling_top5"] == pytest.approx(6 / 7)
    assert s["all"]["micro_top1"] <= s["ceiling_top1"]
    assert {k: s[k] for k in ("n_test", "n_seen_test_images", "n_unseen_test_images", "n_classes",
                              "n_classes_with_test", "n_seen_classes", "n_seen_classes_with_test")} == {
        "n_test": 7, "n_seen_test_images": 6, "n_unseen_test_images": 1, "n_classes": 6,
        "n_classes_with_test": 5, "n_seen_classes": 5, "n_seen_classes_with_test": 4}
    assert s["unseen_test_classes"] == ["c"]
    # plain python types only, so json works without a custom encoder
    assert json.loads(json.dumps(s, allow_nan=False)) == s
    assert all(type(v) is float for v in s["all"].values())
    assert type(s["n_test"]) is int


def test_summarize_undefined_is_none():
    t = scores.class_table(torch.empty(0, 2), torch.empty(0, dtype=torch.long), ["x", "y"], {"x": 1})
    s = scores.summarize(t)
    assert s["all"] == {"micro_top1": None, "micro_top5": None, "macro_top1": None, "macro_top5": None}
    assert s["ceiling_top1"] is None and s["n_test"] == 0
    assert "–" in report.stage_markdown("empty", t, s)
