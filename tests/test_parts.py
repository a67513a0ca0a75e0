"""The answer for any photo from the run's experts (answering/parts.py, evaluation/join.py) and the prior's logit
adjustment (answering/answering.py), on probabilities made up for the purpose: exact arithmetic, no model."""
import json

import numpy as np
import pytest

from fashion_fastai.answering.answering import Answering, adjust_prior, fit_prior_strength
from fashion_fastai.answering.parts import (PartAnswer, fit_platt, gate_evidence, platt, read_part_answer)
from fashion_fastai.core.errors import ModelError
from fashion_fastai.evaluation.join import candidates, part_numbers

TOP, RARE = ('Shirts', 'Tshirts'), ('Gloves', 'Ties', 'Wallets')
VOCAB = tuple(sorted(TOP + RARE))  # the all-classes order: the parts' classes interleaved
STAGES = {'top': ('stage1', TOP), 'rare': ('stage2', RARE)}
FIT = dict(scale=1., bias=0., temperature=1.)


def answer(gate='all_parts', **fit) -> PartAnswer:
    return PartAnswer(VOCAB, STAGES, gate, {'zero_shot': {**FIT, **fit}, 'closed_set': dict(FIT)}, 'all')


def members(n=4, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    def probs(k): p = rng.random((n, k)); return p / p.sum(1, keepdims=True)
    return {'stage1': probs(len(TOP)), 'stage2': probs(len(RARE)), 'all': probs(len(VOCAB))}


def test_the_joined_answer_is_the_part_gate_times_each_stage():
    m = members()
    out = answer().apply(m)
    top = [VOCAB.index(c) for c in TOP]
    g = m['all'][:, top].sum(1)  # scale 1, bias 0: the all-classes model's top part sum itself
    assert np.allclose(out.sum(1), 1, atol=1e-12)
    assert np.allclose(out[:, top], g[:, None] * m['stage1'], atol=1e-12)
    assert np.allclose(out[:, [VOCAB.index(c) for c in RARE]], (1 - g)[:, None] * m['stage2'], atol=1e-12)
    best = {p: m[n].max(1) for p, (n, _) in STAGES.items()}
    assert np.allclose(gate_evidence('stages', m, answer('stages').index()), best['top'] / (best['top'] + best['rare']))
    with pytest.raises(ValueError, match='gate'): gate_evidence('nope', m, answer().index())


def test_a_temperature_and_the_gates_platt_scaling_keep_within_part_order():
    m = members(8)
    plain, scaled = answer().apply(m), answer(scale=2., bias=-1., temperature=3.).apply(m)
    top = [VOCAB.index(c) for c in TOP]
    assert np.array_equal(plain[:, top].argmax(1), scaled[:, top].argmax(1)) and np.allclose(scaled.sum(1), 1)
    assert answer().members == ('stage1', 'stage2', 'all') and answer('stages').members == ('stage1', 'stage2')


def test_platt_scaling_recovers_a_gates_prior_shift():
    rng = np.random.default_rng(1)
    z = rng.normal(size=4000)
    is_top = rng.random(4000) < 1 / (1 + np.exp(-(0.5 * z + 1.5)))  # the truth: scale 0.5, bias 1.5
    scale, bias = fit_platt(1 / (1 + np.exp(-z)), is_top)
    # maximum likelihood on 4,000 draws: within a few standard errors (about 0.05 here) of the truth
    assert scale == pytest.approx(0.5, abs=0.15) and bias == pytest.approx(1.5, abs=0.2)
    assert np.allclose(platt(np.array([0.5]), scale, bias), 1 / (1 + np.exp(-bias)))


def test_fitting_on_the_holdout_sets_each_way_apart():
    m = members(200, seed=2)
    parts = np.where(np.random.default_rng(3).random(200) < 0.7, 'top', 'rare')
    targets = np.array([VOCAB.index(TOP[0]) if p == 'top' else VOCAB.index(RARE[1]) for p in parts])
    fitted = answer().fitted(m, parts, targets, 'zero_shot')
    assert fitted.fits['closed_set'] == FIT and fitted.fits['zero_shot'] != FIT
    assert fitted.fits['zero_shot']['temperature'] > 0


def test_the_record_round_trips_and_a_bad_one_is_named(tmp_path):
    a = answer('stages', bias=0.25)
    assert PartAnswer.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    path = a.save(tmp_path)
    assert path.name == 'joined.json' and read_part_answer(path) == a
    path.write_text('not json')
    with pytest.raises(ModelError, match='not a readable joined answer'): read_part_answer(path)
    path.write_text(json.dumps({**a.to_dict(), 'format': 'other/9'}))
    with pytest.raises(ModelError, match='not a joined answer'): read_part_answer(path)
    path.write_text(json.dumps({**a.to_dict(), 'stages': {'top': a.to_dict()['stages']['top']}}))
    with pytest.raises(ModelError, match='each part'): read_part_answer(path)


def test_the_holdout_keeps_the_gate_when_the_experts_know_better():
    "Stages that are right on every photo beat an all-classes model that is right on none; the numbers say so."
    parts = np.array(['top'] * 30 + ['rare'] * 10)
    targets = np.array([VOCAB.index(TOP[i % 2]) for i in range(30)] + [VOCAB.index(RARE[i % 3]) for i in range(10)])
    eye = lambda k, idx: np.eye(k)[idx] * 0.9 + 0.1 / k
    unsure = lambda k, rows: np.full((rows, k), 1 / k)  # an expert shown a photo of the other part
    stage1 = np.concatenate([eye(len(TOP), [i % 2 for i in range(30)]), unsure(len(TOP), 10)])
    stage2 = np.concatenate([unsure(len(RARE), 30), eye(len(RARE), [i % 3 for i in range(10)])])
    wrong = eye(len(VOCAB), (targets + 1) % len(VOCAB))  # always the next class: wrong, and often the other part
    hold = {'stage1': {w: stage1 for w in ('zero_shot', 'closed_set')},
            'stage2': {w: stage2 for w in ('zero_shot', 'closed_set')},
            'all': {w: wrong for w in ('zero_shot', 'closed_set')}}
    found = candidates(hold, parts, targets, PartAnswer(VOCAB, STAGES, 'all_parts'))
    assert found['all']['zero_shot'] == (None, 0.)
    assert found['stages']['zero_shot'][1] == 1.  # each stage is sure on its own part only: the gate is right
    answer_kept = found['stages']['zero_shot'][0]
    numbers = part_numbers(answer_kept.apply({n: hold[n]['zero_shot'] for n in answer_kept.members}), targets, parts,
                           answer_kept.index())
    assert numbers == {'top': dict(photos=30, top1=1., other_part=0.), 'rare': dict(photos=10, top1=1., other_part=0.)}


def test_logit_adjustment_divides_by_the_prior_and_spares_untrained_classes():
    probs = np.array([[0.5, 0.3, 0.2]])
    counts = (100, 1, 0)
    assert adjust_prior(probs, counts, 0.) is probs or np.array_equal(adjust_prior(probs, counts, 0.), probs)
    out = adjust_prior(probs, counts, 1.)
    expected = np.array([0.5 / 100, 0.3 / 1, 0.2 / 100])  # an untrained class counts as the most frequent
    assert np.allclose(out, expected / expected.sum(), atol=1e-15)


def test_the_prior_strength_is_the_holdouts_weakest_best():
    # a head that favours class 0 (many training photos): its second-best answers are right on the holdout
    probs = np.array([[0.6, 0.4], [0.55, 0.45], [0.9, 0.1]])
    targets, counts = np.array([1, 1, 0]), (100, 10)
    strength, top1 = fit_prior_strength(probs, targets, counts)
    assert top1[0.] == pytest.approx(1 / 3) and top1[strength] == 1. and strength > 0
    assert all(top1[s] < 1. for s in top1 if s < strength)  # the weakest that reaches the best
    none, _ = fit_prior_strength(np.eye(2)[[0, 1]] * 0.8 + 0.1, np.array([0, 1]), counts)
    assert none == 0.  # nothing to gain: left as trained


def test_an_answering_record_keeps_its_prior():
    a = Answering({'articleType': 2.}, prior=(5, 1), prior_strength=0.5)
    back = Answering.from_meta({'vocab': ['a', 'b'], 'answering': a.to_dict()})
    assert back.prior == (5, 1) and back.prior_strength == 0.5
    probs = {'articleType': np.array([[0.6, 0.4]])}
    assert np.allclose(back.apply(probs)[0]['articleType'], a.apply(probs)[0]['articleType'])
    assert Answering.from_meta({'vocab': ['a'], 'answering': {'temperatures': {}}}).prior_strength == 0.
