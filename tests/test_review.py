"The review rule: the lowest threshold for a stated precision, raised for never-seen products, capped by coverage."
import numpy as np
import pytest

from fashion_fastai.answering import review


def answers(conf, right):
    "Probabilities over 2 classes whose best is class 0 at `conf`, and targets: 0 where `right`, else 1."
    conf = np.asarray(conf, float)
    return np.stack([conf, 1 - conf], 1), np.where(right, 0, 1)


def test_the_precision_threshold_is_the_lowest_that_keeps_the_unflagged_precision():
    rng = np.random.default_rng(0)
    conf = rng.uniform(.5, 1, 2000)
    right = rng.uniform(size=2000) < conf  # calibrated: right as often as it says
    probs, y = answers(conf, right)
    t = review.precision_threshold(probs, y, .9)
    sure = conf >= t
    assert right[sure].mean() >= .9
    lower = conf[conf < t].max()  # the next probability down, which would be unflagged too
    assert right[conf >= lower].mean() < .9
    assert review.precision_threshold(probs, y, .999) == review.NEVER or right[conf >= review.precision_threshold(
        probs, y, .999)].mean() >= .999


def test_photos_with_one_probability_fall_on_one_side():
    probs, y = answers([.9, .9, .9, .6], [True, True, False, True])
    assert review.precision_threshold(probs, y, .75) == pytest.approx(.6)  # 3 of 4 at >= .6, and .9 alone is 2 of 3
    assert review.precision_threshold(probs, y, .8) == review.NEVER


def test_leaving_a_group_out_answers_its_photos_as_a_never_seen_product():
    probs = np.array([[.7, .2, .1], [.1, .1, .8]])
    left = review.left_out_best(probs, np.array([0, 2]), ['Topwear', 'Topwear', 'Watches'])
    assert left == pytest.approx([1., .5])  # photo 0: its group (0 and 1) gone, class 2 has it all
    assert np.isnan(review.left_out_best(probs, np.array([0, 2]), [None, None, 'Watches'])[0])


def test_the_novelty_threshold_flags_the_share_asked_for():
    left = np.array([.1, .2, .3, .4, .5, .6, .7, .8, .9, 1., np.nan])
    t = review.novelty_threshold(left, .9)
    assert (left[:10] < t).sum() == 9 and t <= 1.
    assert review.novelty_threshold(np.array([np.nan]), .9) is None


def test_the_rule_puts_precision_first_and_novelty_before_the_review_load():
    rng = np.random.default_rng(1)
    n = 3000
    probs = rng.dirichlet(np.ones(6) * .4, n)
    y = np.where(rng.uniform(size=n) < probs.max(1), probs.argmax(1), (probs.argmax(1) + 1) % 6)
    groups = ['a', 'a', 'b', 'b', 'c', 'c']
    t, d = review.fit_review(probs, y, groups)
    assert t >= d['precision_threshold'] and d['precision'] >= review.PRECISION
    if d['novelty_threshold'] <= d['coverage_threshold']: assert d['left_out_flagged'] >= review.NOVEL_FLAGGED
    elif t > d['precision_threshold']: assert d['coverage'] >= review.MIN_UNFLAGGED - 1 / n
    # the precision recorded is that of the threshold leaving at least the share asked for unflagged
    at_cover = review.flag_numbers(probs, y, d['coverage_threshold'])
    assert at_cover['coverage'] >= review.MIN_UNFLAGGED and d['precision_at_min_unflagged'] == at_cover['precision']
    numbers = review.flag_numbers(probs, y, t, untrained=np.arange(n) < 100)
    assert numbers['untrained_photos'] == 100 and numbers['untrained_right_or_flagged'] >= numbers['untrained_right']
