"""zero_shot.py: the table names only real ImageNet classes, a bad map file names its row, the joined probabilities sum
to 1, and the gate's threshold keeps the held-out images routed to zero-shot classes within the bound, exactly."""
from __future__ import annotations

import numpy as np
import pytest

from fashion_fastai.errors import DataError
from fashion_fastai.zero_shot import TABLE, ZeroShotHead, gate_threshold, imagenet_index, join, load_map, read_map


def test_the_table_names_only_imagenet_classes():
    table = read_map(TABLE)
    assert len(table) == 30 and all(rows and all(0 <= i < 1000 for i in rows) for rows in table.values())
    assert table['Lipstick'] == (imagenet_index('n03676483'),) == (629,)
    assert table['Perfume and Body Mist'] == (imagenet_index('perfume'), imagenet_index('hair spray'))


@pytest.mark.parametrize('body, message', [
    ('articleType,imagenet\nLipstick,lipstick\nGlitter,lip gloss\n', r"line 3 \(Glitter\): 'lip gloss' is no ImageNet"),
    ('articleType,imagenet\nCranes,crane\n', r"line 2 \(Cranes\): 'crane' names two ImageNet classes: give its synset id"),
    ('articleType,imagenet\nLipstick,lipstick\nLipstick,perfume\n', r"line 3: 'Lipstick' has a row already"),
    ('articleType,imagenet\nLipstick,\n', r"line 2: every row needs an article type and at least one ImageNet class"),
    ('articleType,classes\nLipstick,lipstick\n', r"no column imagenet"),
])
def test_a_bad_map_file_names_its_row(tmp_path, body, message):
    (tmp_path / 'map.csv').write_text(body)
    with pytest.raises(DataError, match=message): read_map(tmp_path / 'map.csv')


def test_a_users_map_adds_and_replaces_rows(tmp_path):
    (tmp_path / 'map.csv').write_text('articleType,imagenet,why\nUmbrella Hats,umbrella; sombrero,new\nLipstick,n03916031,\n')
    zmap = load_map(tmp_path / 'map.csv')
    assert zmap['Umbrella Hats'] == (imagenet_index('umbrella'), imagenet_index('sombrero'))
    assert zmap['Lipstick'] == (imagenet_index('perfume'),) and zmap['Sunscreen'] == read_map(TABLE)['Sunscreen']


def test_scores_come_from_the_mapped_imagenet_classes():
    head = ZeroShotHead.of(['Lipstick', 'Shoe Laces', 'Perfume and Body Mist'], load_map())
    assert head.classes == ('Lipstick', 'Perfume and Body Mist')  # no row for Shoe Laces: no zero-shot answer
    p = np.zeros((2, 1000)); p[0, 629] = .7; p[0, 0] = .3; p[1, imagenet_index('hair spray')] = .4
    scores, evidence = head.scores(p)
    assert np.allclose(scores, [[.7, 0], [0, .4]]) and np.allclose(evidence, [.7, .4])


def test_joined_probabilities_sum_to_one():
    rng = np.random.default_rng(0)
    trained = rng.dirichlet(np.ones(5), 50)
    scores = rng.dirichlet(np.ones(4), 50) * rng.uniform(0, 1, (50, 1))
    scores[0] = 0  # no evidence at all: the trained head answers alone
    joined = join(trained, scores, scores.sum(1), .3)
    assert joined.shape == (50, 9) and np.allclose(joined.sum(1), 1)
    closed = scores.sum(1) < .3
    assert np.allclose(joined[closed, :5], trained[closed]) and (joined[closed, 5:] == 0).all()
    assert np.allclose(joined[~closed, 5:].sum(1), scores.sum(1)[~closed])


@pytest.mark.parametrize('max_routed', [0.01, 0.1, 0.])
def test_the_gate_keeps_the_holdout_bound_and_is_the_lowest_that_does(max_routed):
    rng = np.random.default_rng(1)
    n = 1000
    trained = rng.dirichlet(np.ones(6) * .3, n)
    scores = rng.dirichlet(np.ones(3), n) * rng.uniform(0, 1, (n, 1)) ** 2
    evidence = scores.sum(1)
    routed = lambda t: (join(trained, scores, evidence, t).argmax(1) >= 6).mean()
    t = gate_threshold(trained, scores, evidence, max_routed)
    assert routed(t) <= max_routed
    assert routed(np.nextafter(t, -np.inf)) > max_routed  # any lower threshold routes one image too many
