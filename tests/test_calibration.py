"""answering/temperature.py: temperature scaling recovers a known temperature and keeps every answer; the ECE of a
calibrated model is near 0 and of an overconfident one is its gap."""
from __future__ import annotations

import numpy as np
import pytest

from fashion_fastai.answering.temperature import ece, fit_temperature, reliability, temper


def sampled(n=20000, k=5, seed=0):
    "Photos whose true class is drawn from the model's own probabilities: a perfectly calibrated model."
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, k))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return p, y


def test_temperature_recovers_the_one_that_made_the_model_overconfident():
    p, y = sampled()
    hot = temper(p, 0.5)                                      # logits doubled: overconfident
    t = fit_temperature(hot, y)
    assert t == pytest.approx(2.0, rel=0.05)                  # statistical: 20,000 draws
    assert (temper(hot, t).argmax(1) == hot.argmax(1)).all()  # no answer changes
    assert ece(temper(hot, t), y) < ece(hot, y) / 3


def test_ece_of_a_calibrated_model_and_of_a_known_gap():
    p, y = sampled(seed=1)
    assert ece(p, y) < 0.02                                   # sampling noise only
    always_sure = np.eye(4)[[0, 1, 2, 3]]                     # confidence 1, right half the time
    assert ece(always_sure, np.array([0, 1, 0, 0])) == pytest.approx(0.5)
    assert reliability(always_sure, np.array([0, 1, 0, 0])) == [(1.0, 0.5, 4)]
    assert np.allclose(temper(p, 1.0), p)


def test_the_ece_of_the_photos_an_answer_can_name_leaves_out_those_it_cannot():
    from fashion_fastai.evaluation.calibrate import review_numbers
    sure = np.tile([.8, .2, 0.], (10, 1))             # confidence .8 on class 0 for every photo
    y = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 1])       # right 8 of 10: calibrated where it can name the class
    nameable = np.ones(10, bool)
    assert review_numbers(sure, sure, y, nameable)['ece_nameable'] == pytest.approx(0, abs=1e-12)
    y_new = np.r_[y, [2] * 10]                          # 10 photos of a class it cannot name: wrong at any confidence
    both = np.r_[sure, sure]
    out = review_numbers(both, both, y_new, np.r_[nameable, ~nameable])
    assert out['ece_after'] == pytest.approx(.8 - .4) and out['ece_nameable'] == pytest.approx(0, abs=1e-12)
    assert out['nameable'] == .5 and 'ece_nameable' not in review_numbers(both, both, y_new)
