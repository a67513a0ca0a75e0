"""zero_shot.py: the table names only real ImageNet classes, a bad map file names its row, the joined probabilities sum
to 1, and the gate's boost keeps the held-out images routed to zero-shot classes within the bound, exactly."""
from __future__ import annotations

import numpy as np
import pytest

from fashion_fastai.answering.temperature import fit_temperature
from fashion_fastai.core.errors import DataError
from fashion_fastai.answering.zero_shot import (SECONDARY, TABLE, ZeroShotHead, ZeroShotPath, fit_boost, imagenet_index,
                                                join, load_map, read_map)


def test_the_table_names_only_imagenet_classes():
    table = read_map(TABLE)
    assert len(table) == 30 and all(rows and all(0 <= i < 1000 for i in rows) for rows in table.values())
    assert table['Lipstick'] == {imagenet_index('n03676483'): 1.} == {629: 1.}
    assert table['Perfume and Body Mist'] == {imagenet_index('perfume'): 1., imagenet_index('hair spray'): SECONDARY}
    mains = [i for row in table.values() for i, w in row.items() if w == 1.]
    assert len(mains) == len(set(mains))  # each ImageNet class is the main answer of one row at most


@pytest.mark.parametrize('body, message', [
    ('articleType,imagenet\nLipstick,lipstick\nGlitter,lip gloss\n', r"line 3 \(Glitter\): 'lip gloss' is no ImageNet"),
    ('articleType,imagenet\nCranes,crane\n',
     r"line 2 \(Cranes\): 'crane' names two ImageNet classes: give its synset id"),
    ('articleType,imagenet\nLipstick,lipstick\nLipstick,perfume\n', r"line 3: 'Lipstick' has a row already"),
    ('articleType,imagenet\nLipstick,\n', r"line 2: every row needs an article type and at least one ImageNet class"),
    ('articleType,classes\nLipstick,lipstick\n', r"no column imagenet"),
    ('articleType,imagenet,main\nLipstick,lipstick,perfume\n', r"line 2 \(Lipstick\): its main class 'perfume' is not"),
    ('articleType,imagenet,main\nLipstick,lipstick,lipstick\nGloss,lipstick,lipstick\n',
     r"line 3 \(Gloss\): 'lipstick' is the main class of 'Lipstick' already"),
])
def test_a_bad_map_file_names_its_row(tmp_path, body, message):
    (tmp_path / 'map.csv').write_text(body)
    with pytest.raises(DataError, match=message): read_map(tmp_path / 'map.csv')



def test_a_map_that_is_not_text_is_one_line(tmp_path):
    (tmp_path / 'map.csv').write_bytes(bytes(range(256)))
    with pytest.raises(DataError, match=r'map.csv is not a CSV \(not UTF-8 text\)'): read_map(tmp_path / 'map.csv')

def test_a_users_map_adds_and_replaces_rows(tmp_path):
    (tmp_path / 'map.csv').write_text('articleType,imagenet,main,why\nUmbrella Hats,umbrella; sombrero,sombrero,new\n'
                                      'Lipstick,n03916031,,\n')
    zmap = load_map(tmp_path / 'map.csv')
    assert zmap['Umbrella Hats'] == {imagenet_index('umbrella'): SECONDARY, imagenet_index('sombrero'): 1.}
    assert (zmap['Lipstick'] == {imagenet_index('perfume'): SECONDARY}
            and zmap['Sunscreen'] == read_map(TABLE)['Sunscreen'])
    assert zmap['Hat'][imagenet_index('sombrero')] == SECONDARY  # the user's row took the main answer for sombrero


def test_scores_come_from_the_mapped_imagenet_classes():
    head = ZeroShotHead.of(['Lipstick', 'Shoe Laces', 'Perfume and Body Mist', 'Lip Gloss'], load_map())
    # no row for Shoe Laces: no zero-shot answer
    assert head.classes == ('Lipstick', 'Perfume and Body Mist', 'Lip Gloss')
    p = np.zeros((2, 1000)); p[0, 629] = .7; p[0, 0] = .3; p[1, imagenet_index('hair spray')] = .4
    scores, evidence = head.scores(p)
    assert np.allclose(scores, [[.7, 0, .7 * SECONDARY], [0, .4 * SECONDARY, 0]]) and np.allclose(evidence, [.7, .4])
    assert scores[0].argmax() == 0  # the row whose main answer lipstick is wins its photos; the others rank after it


def test_joined_probabilities_sum_to_one_and_the_boost_moves_mass():
    rng = np.random.default_rng(0)
    trained = rng.dirichlet(np.ones(5), 50)
    scores = rng.dirichlet(np.ones(4), 50) * rng.uniform(0, 1, (50, 1))
    scores[0] = 0  # no evidence at all: the trained head answers alone
    evidence = scores.sum(1)
    plain, boosted = join(trained, scores, evidence, 1.), join(trained, scores, evidence, 4.)
    assert plain.shape == (50, 9) and np.allclose(plain.sum(1), 1) and np.allclose(boosted.sum(1), 1)
    assert np.allclose(plain[0, :5], trained[0]) and (plain[0, 5:] == 0).all()
    assert np.allclose(plain[1:, 5:].sum(1), evidence[1:])  # a boost of 1: the ImageNet evidence as it is
    odds = lambda p: p[1:, 5:].sum(1) / p[1:, :5].sum(1)
    assert np.allclose(odds(boosted), 4 * odds(plain))
    assert np.allclose(plain[1:, 5:] / plain[1:, 5:].sum(1, keepdims=True), scores[1:] / evidence[1:, None])


@pytest.mark.parametrize('max_routed', [0.01, 0.1, 0.])
def test_the_boost_keeps_the_holdout_bound_and_is_the_largest_that_does(max_routed):
    rng = np.random.default_rng(1)
    n = 1000
    trained = rng.dirichlet(np.ones(6) * .3, n)
    scores = rng.dirichlet(np.ones(3), n) * rng.uniform(0, 1, (n, 1)) ** 2
    evidence = scores.sum(1)
    routed = lambda b: (join(trained, scores, evidence, b).argmax(1) >= 6).mean()
    b = fit_boost(trained, scores, evidence, max_routed)
    assert routed(b) <= max_routed
    assert routed(b * (1 + 1e-6)) > max_routed  # any larger boost routes one image too many


def test_the_gate_is_fitted_on_photos_of_trained_classes_alone():
    "Held-out photos of a class without training photos (a held year can have some) do not spend the routing bound."
    vocab = ['Shirts', 'Lipstick', 'Watches']
    path = ZeroShotPath.of(vocab, ['Lipstick'], load_map())
    rng = np.random.default_rng(0)
    probs, imagenet = rng.dirichlet(np.ones(3), 200), rng.dirichlet(np.ones(1000) * .05, 200)
    targets = rng.choice([0, 2], 200)
    lipstick = imagenet_index('lipstick')
    imagenet[:20] = 0; imagenet[:20, lipstick] = 1  # twenty photos that are plainly lipsticks
    targets_with_lipsticks = targets.copy(); targets_with_lipsticks[:20] = 1
    trained_only = path.fitted(probs[20:], imagenet[20:], 0.05, targets[20:])
    assert path.fitted(probs, imagenet, 0.05, targets_with_lipsticks).boost == trained_only.boost
    assert path.fitted(probs, imagenet, 0.05).boost < path.fitted(probs[20:], imagenet[20:], 0.05).boost  # counted,
    # they would close the gate


@pytest.mark.parametrize('max_class_loss', [0.01, 0.05, 0.2])
def test_the_boost_keeps_each_classs_bound_and_is_the_largest_that_does(max_class_loss):
    "A bound on the average alone lets one class lose a third of its photos: no class loses more than its share."
    rng = np.random.default_rng(2)
    n = 1200
    trained = rng.dirichlet(np.ones(6) * .3, n)
    scores = rng.dirichlet(np.ones(3), n) * rng.uniform(0, 1, (n, 1)) ** 2
    classes = rng.choice(6, n, p=[.5, .2, .1, .1, .05, .05])
    scores[classes == 3] *= 2  # one class looks like the zero-shot ones
    scores /= np.maximum(1, scores.sum(1, keepdims=True) / .99)  # the evidence stays under 1
    evidence = scores.sum(1)
    def lost(b):
        routed = join(trained, scores, evidence, b).argmax(1) >= 6
        return np.array([routed[classes == c].sum() for c in range(6)])
    allowed = np.floor(max_class_loss * np.bincount(classes) + 1e-9)
    b = fit_boost(trained, scores, evidence, 1., classes, max_class_loss)
    assert (lost(b) <= allowed).all()
    assert (lost(b * (1 + 1e-6)) > allowed).any()  # any larger boost takes one photo too many from some class
    assert b < fit_boost(trained, scores, evidence, 1.)  # without the classes, the average bound alone is looser


def test_a_path_joins_in_the_models_vocab_and_survives_its_json(tmp_path):
    vocab = ['Shirts', 'Lipstick', 'Watches', 'Shoe Laces', 'Perfume and Body Mist']
    path = ZeroShotPath.of(vocab, ['Lipstick', 'Shoe Laces', 'Perfume and Body Mist'], load_map(), boost=2.5)
    assert path.head.classes == ('Lipstick', 'Perfume and Body Mist') and list(path.trained_index) == [0, 2]
    rng = np.random.default_rng(2)
    probs, imagenet = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(1000) * .05, 20)
    joined = path.joined(probs, imagenet)
    assert np.allclose(joined.sum(1), 1) and (joined[:, 3] == 0).all()  # no row, no training photo: never answered
    again = ZeroShotPath.from_dict(vocab, __import__('json').loads(__import__('json').dumps(path.to_dict())))
    assert np.array_equal(again.joined(probs, imagenet), joined)
    assert list(path.routed(joined)) == list(np.isin(joined.argmax(1), [1, 4]))


def test_the_joined_temperature_leaves_out_classes_it_cannot_answer():
    """A held-out photo of a class with no training photo and no map row (Gloves: a held year can have some) has joined
    probability 0; fitted with it, the temperature runs off to flatten everything, as a stage two of whole held years
    did."""
    vocab = ['Shirts', 'Lipstick', 'Watches', 'Gloves']
    path = ZeroShotPath.of(vocab, ['Lipstick', 'Gloves'], load_map())
    assert path.head.classes == ('Lipstick',)
    rng = np.random.default_rng(0)
    targets = rng.choice([0, 2], 300)
    probs = np.full((300, 4), .02); probs[np.arange(300), targets] = .94  # sure, and right on 87.5% of the photos below
    wrong = rng.random(300) < .125; probs[wrong] = probs[wrong][:, [2, 1, 0, 3]]
    probs[:, 3] = 1e-6; probs /= probs.sum(1, keepdims=True)
    joined = path.joined(probs, rng.dirichlet(np.ones(1000) * .05, 300))
    targets[:30] = 3  # thirty photos of gloves
    assert joined[:, 3].max() == 0 and path.answerable(targets).tolist() == [False] * 30 + [True] * 270
    keep = path.answerable(targets)
    assert fit_temperature(joined, targets) > 50 * fit_temperature(joined[keep], targets[keep])
    assert 0.5 < fit_temperature(joined[keep], targets[keep]) < 3
