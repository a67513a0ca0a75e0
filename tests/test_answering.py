"""Zero-shot answers and calibration end to end: a tiny run whose starting weights keep ImageNet's 1000-class layer fits
the temperatures and the gate on its holdout, reports both ways, and every form of its models answers with them;
`--closed-set`, a model from before, a missing network and a bad map file each say what they are."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import cli_env, distinctive_resnet_state, run_module, tiny_train_args

from fashion_fastai.networks import imagenet_classifier
from fashion_fastai.answering.answering import Answering
from fashion_fastai.core.errors import ModelError
from fashion_fastai.inference.load import load_model
from fashion_fastai.answering.zero_shot import MAX_ROUTED, ZeroShotPath, load_map

PERFUME = 'Perfume and Body Mist'  # the demo's top-20 class with test photos only, like the Kaggle data's


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    return cli_env(tmp_path_factory.mktemp('env'))


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp('weights') / 'resnet18_imagenet.pth'
    torch.save(distinctive_resnet_state(), path)  # a whole torchvision resnet18, its 1000-class `fc` included
    return path


@pytest.fixture(scope='module')
def run(tmp_path_factory, env, weights):
    out = tmp_path_factory.mktemp('runs')
    # the stages joined by the all-classes model's part sums: the default answer whatever the tiny holdout prefers
    run_module('fashion_fastai.train', *tiny_train_args(epochs_all=1, lr_all=1e-3, answer='all_parts',
                                                        attributes='masterCategory,subCategory'), '--weights',
               weights, '--out', out, '--name', 'zs', env=env)
    return out / 'zs'


def photos(run_dir, n=6):
    cfg = json.loads((run_dir / 'config.json').read_text())
    return sorted((Path(cfg['data_dir']) / 'images').glob('*.jpg'))[:n]


def test_the_frozen_network_needs_a_whole_imagenet_classifier(weights):
    net, why = imagenet_classifier.network('resnet18', torch.load(weights, weights_only=True))
    assert net is not None and why == '' and not any(p.requires_grad for p in net.parameters())
    assert imagenet_classifier.network('resnet18', None)[0] is None
    headless = {k: v for k, v in torch.load(weights, weights_only=True).items() if not k.startswith('fc.')}
    net, why = imagenet_classifier.network('resnet18', headless)
    assert net is None and 'no whole ImageNet-1k classifier' in why
    assert imagenet_classifier.input_size('tf_efficientnet_lite0', (128, 96)) == (224, 168)
    assert imagenet_classifier.input_size('resnet18', (32, 24)) == (224, 168)


@pytest.mark.slow
def test_the_run_fits_on_its_holdout_and_reports_both_ways(run):
    meta = json.loads((run / 'stage1.json').read_text())
    a = Answering.from_meta(meta)
    assert a.has_zero_shot and a.zero_shot.head.classes == (PERFUME,) and a.network['file'] == 'imagenet.pth'
    assert set(a.temperatures) == {'articleType', 'masterCategory', 'subCategory'}  # every head has its own
    assert all(t > 0 for t in a.temperatures.values())
    assert a.holdout['images'] > 0 and a.holdout['routed'] <= MAX_ROUTED  # the gate's bound, on the holdout
    assert (run / 'imagenet.pth').is_file() and (run / 'reliability_stage1.png').is_file()
    md = (run / 'results.md').read_text()
    section = md.split('## stage1')[1].split('## stage2')[0]
    assert '### Calibration and zero-shot answers' in section and 'with zero-shot answers' in section
    row = next(l for l in section.splitlines() if l.startswith(f'| {PERFUME} | 0 |'))  # no training photo
    assert row.endswith('| zero-shot |') and 'with zero-shot top-1 %' in section
    assert '![reliability_stage1](reliability_stage1.png)' in md
    m = json.loads((run / 'metrics.json').read_text())['stages']['stage1']['answering']
    zs = m['zero_shot']
    assert zs['holdout_routed'] <= MAX_ROUTED and 0 <= zs['test_routed'] <= 1 and zs['classes'] == [PERFUME]
    assert zs['test_images_of_zero_shot_classes'] > 0 and zs['closed_zero_shot_classes_top1'] is not None
    for way in (m['heads']['articleType'], zs):
        assert 0 <= way['ece_after'] <= 1 and 0 <= way['coverage'] <= 1
        assert 0 <= way['ece_nameable'] <= 1 and 0 < way['nameable'] <= 1  # the photos of a class it can name
    assert zs['nameable'] >= m['heads']['articleType']['nameable']  # a zero-shot row makes a class nameable
    assert 'ECE % calibrated, photos of a class it can name' in section
    per_class = __import__('pandas').read_csv(run / 'per_class_stage1.csv', index_col=0)
    assert per_class.loc[PERFUME, 'zero_shot'] and not per_class.drop(index=PERFUME)['zero_shot'].any()
    assert 'stage2' in json.loads((run / 'metrics.json').read_text())['stages']
    why = json.loads((run / 'stage2.json').read_text())['answering']['why_not']
    assert 'no zero-shot map row' in why  # the demo's rare test-only classes (Gloves, Scarves) have none


@pytest.mark.slow
def test_every_form_answers_with_the_zero_shot_path(run, env):
    files = photos(run)
    weights_only = load_model(run, stage='stage1', device='cpu')
    heads, routed = weights_only.answer_probs(files)
    assert weights_only.zero_shot and len(routed) == len(files)
    assert torch.allclose(heads['articleType'].sum(1), torch.ones(len(files)), atol=1e-5)
    raw = weights_only.head_probs(files)['articleType'].numpy()
    imagenet = weights_only.scorer.probs(files)
    a = weights_only.answering
    expected = a.zero_shot.joined(raw, imagenet)
    expected = torch.softmax(torch.log(torch.from_numpy(expected).clamp_min(1e-300)) / a.joined_temperature, 1)
    assert torch.allclose(heads['articleType'].double(), expected, atol=1e-5)
    pickled = load_model(run / 'stage1.pkl', trust_pickle=True, device='cpu')
    assert pickled.zero_shot and torch.allclose(pickled.answer_probs(files)[0]['articleType'], heads['articleType'],
                                                atol=1e-4)
    closed = load_model(run, stage='stage1', device='cpu', closed_set=True)
    closed_heads, none = closed.answer_probs(files)
    assert none is None and closed.scorer is None and not closed.zero_shot
    # a temperature keeps order
    assert torch.equal(closed_heads['articleType'].argmax(1), torch.from_numpy(raw).argmax(1))
    p = run_module('fashion_fastai.predict', run / 'stage1.json', *files[:2], '--json', env=env)
    out = json.loads(p.stdout)
    assert {k: out['answering'][k] for k in ('calibrated', 'zero_shot', 'zero_shot_classes')} == \
        {'calibrated': True, 'zero_shot': True, 'zero_shot_classes': 1}
    assert out['answering']['review_prob'] == weights_only.review_prob == weights_only.answering.review['zero_shot']
    assert all('zero_shot' in r and 'uncertain' in r for r in out['predictions'])
    p = run_module('fashion_fastai.predict', run / 'stage1.json', files[0], '--json', '--closed-set', env=env)
    out = json.loads(p.stdout)
    assert not out['answering']['zero_shot'] and 'closed-set' in out['answering']['why_not']
    assert 'zero_shot' not in out['predictions'][0] and 'no zero-shot answers' in p.stderr


@pytest.mark.slow
def test_a_model_from_before_or_without_its_network_says_so(run, env, tmp_path):
    import shutil
    old = tmp_path / 'old'
    shutil.copytree(run, old, ignore=shutil.ignore_patterns('checkpoints'))
    meta = json.loads((old / 'stage1.json').read_text())
    (old / 'stage1.json').write_text(json.dumps({k: v for k, v in meta.items() if k != 'answering'}))
    p = run_module('fashion_fastai.predict', old / 'stage1.json', photos(run, 1)[0], '--json', env=env)
    out = json.loads(p.stdout)
    assert out['answering']['zero_shot'] is False and 'exported before zero-shot answers' in out['answering']['why_not']
    (old / 'stage1.json').write_text(json.dumps(meta))
    (old / 'imagenet.pth').unlink()
    p = run_module('fashion_fastai.predict', old / 'stage1.json', photos(run, 1)[0], env=env, check=False)
    assert p.returncode != 0 and 'imagenet.pth' in p.stderr and '--closed-set' in p.stderr
    run_module('fashion_fastai.predict', old / 'stage1.json', photos(run, 1)[0], '--closed-set', env=env)


@pytest.mark.slow
def test_the_shipped_graphs_answer_as_pytorch(run, env, tmp_path):
    pytest.importorskip('onnxruntime')
    import shutil
    shipped = tmp_path / 'shipped'
    shutil.copytree(run, shipped, ignore=shutil.ignore_patterns('checkpoints'))
    run_module('fashion_fastai.export', shipped, '--photos', '8', env=env)
    assert (shipped / 'imagenet.onnx').is_file()
    files = photos(run)
    torch_heads, torch_routed = load_model(shipped, stage='stage1', device='cpu').answer_probs(files)
    onnx = load_model(shipped, stage='stage1', device='cpu', engine='onnx')
    onnx_heads, onnx_routed = onnx.answer_probs(files)
    assert onnx.zero_shot and onnx_routed == torch_routed
    assert torch.allclose(onnx_heads['articleType'], torch_heads['articleType'], atol=1e-4)
    joined = load_model(shipped, device='cpu', engine='onnx')  # the default answer: every member's graph, joined
    assert [type(m).__name__ for m in joined.members.values()] == ['OnnxPredictor'] * len(joined.members)
    onnx_heads, onnx_routed = joined.answer_probs(files)
    torch_heads, torch_routed = load_model(shipped, device='cpu').answer_probs(files)
    assert onnx_routed == torch_routed and torch.allclose(onnx_heads['articleType'], torch_heads['articleType'],
                                                          atol=1e-4)


@pytest.mark.slow
def test_the_joined_answer_is_every_commands_default(run, env, tmp_path):
    "The stages joined by the part gate answer for the run folder; --stage all is the all-classes model alone."
    from fashion_fastai.inference import default_model
    from fashion_fastai.inference.joined import JoinedPredictor
    from fashion_fastai.inference.locate import find_model
    files = photos(run, 8)
    assert default_model(run) == 'joined' and (run / 'joined.json').is_file()
    joined = load_model(run, device='cpu')
    assert isinstance(joined, JoinedPredictor) and joined.zero_shot and joined.zero_shot_classes == (PERFUME,)
    heads, routed = joined.answer_probs(files)
    alone = load_model(run, stage='all', device='cpu')
    assert not isinstance(alone, JoinedPredictor) and joined.vocab == alone.vocab and len(routed) == len(files)
    assert torch.allclose(heads['articleType'].sum(1), torch.ones(len(files)), atol=1e-5)
    # the gate's model answers as its own JSON says, the stages each as theirs, then the part gate and a temperature
    members = {n: load_model(run, stage=n, device='cpu').answer_probs(files)[0]['articleType'].double().numpy()
               for n in joined.answer.members}
    expected = joined.answer.apply(members)
    assert np.abs(heads['articleType'].double().numpy() - expected).max() < 1e-5
    with load_model(run, device='cpu', processes=2) as pool:
        pooled, pooled_routed = pool.answer_probs(files, bs=4)
    assert pooled_routed == routed and torch.allclose(pooled['articleType'], heads['articleType'], atol=1e-6)
    closed = load_model(run, device='cpu', closed_set=True)
    assert not closed.zero_shot and closed.answer_probs(files)[1] is None
    p = run_module('fashion_fastai.predict', run, *files[:2], '--json', env=env)
    note = json.loads(p.stdout)['answering']
    assert {k: note[k] for k in ('calibrated', 'zero_shot', 'zero_shot_classes')} == \
        {'calibrated': True, 'zero_shot': True, 'zero_shot_classes': 1}
    m = json.loads((run / 'metrics.json').read_text())
    assert m['joined']['kept'] == 'all_parts' and set(m['joined']['candidates']) == {'all', 'all_parts', 'stages'}
    parts = m['stages']['joined']['answering']['zero_shot']['parts']
    assert sum(p['photos'] for p in parts.values()) == m['stages']['joined']['n_test']
    joined_ways = m['stages']['joined']['answering']
    assert joined_ways['zero_shot']['nameable'] >= joined_ways['heads']['articleType']['nameable'] > 0
    md = (run / 'results.md').read_text()
    assert '## joined' in md and '(kept)' in md and 'answered in the other part %' in md
    import shutil
    older = tmp_path / 'older'
    shutil.copytree(run, older, ignore=shutil.ignore_patterns('checkpoints', 'joined.json'))
    assert default_model(older) == 'all'
    with pytest.raises(ModelError, match='no joined answer'): find_model(older, 'joined')
    (older / 'joined.json').write_text('{"format": "something else"}')
    with pytest.raises(ModelError, match='not a joined answer'): load_model(older, device='cpu')


@pytest.mark.slow
def test_a_users_map_must_name_the_datas_article_types(env, tmp_path, weights):
    bad = tmp_path / 'map.csv'
    bad.write_text('articleType,imagenet\nPerfume and Body Mists,perfume\n')
    p = run_module('fashion_fastai.train', *tiny_train_args(), '--weights', weights, '--zero-shot-map', bad,
                   '--out', tmp_path, env=env, check=False)
    assert p.returncode != 0 and 'line 2' in p.stderr and "did you mean 'Perfume and Body Mist'" in p.stderr
    bad.write_text('articleType,imagenet\nPerfume and Body Mist,parfum\n')
    p = run_module('fashion_fastai.train', *tiny_train_args(), '--weights', weights, '--zero-shot-map', bad,
                   '--out', tmp_path, env=env, check=False)
    assert p.returncode != 0 and "line 2 (Perfume and Body Mist): 'parfum' is no ImageNet-1k class" in p.stderr


def test_a_path_without_zero_shot_classes_answers_with_temperatures_alone():
    a = Answering({'articleType': 2.})
    p = np.array([[.7, .2, .1]])
    out, routed = a.apply({'articleType': p}, np.full((1, 1000), 1e-3))
    assert routed is None and out['articleType'][0].argmax() == 0 and out['articleType'][0, 0] < .7
    path = ZeroShotPath.of(['A', 'Lipstick'], ['Lipstick'], load_map(), boost=1.)
    a = Answering({'articleType': 1.}, path, 1., {'file': 'imagenet.pth'})
    imagenet = np.zeros((1, 1000)); imagenet[0, 629] = .9; imagenet[0, 0] = .1
    out, routed = a.apply({'articleType': np.array([[.6, .4]])}, imagenet)
    assert list(routed) == [True] and np.isclose(out['articleType'].sum(), 1)
    assert Answering.from_meta({'vocab': ['A', 'Lipstick'], 'answering': a.to_dict()}).zero_shot.boost == 1.


def test_the_scorer_remembers_only_when_training(tmp_path):
    from helpers import save_image
    files = [save_image(tmp_path / f'{i}.jpg', seed=i) for i in range(3)]
    calls = []
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 1000))
    net.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    for remember, second in ((True, []), (False, [2])):
        calls.clear()
        scorer = imagenet_classifier.Scorer(net, (16, 12), [.5] * 3, [.25] * 3, remember=remember)
        first = scorer.probs(files[:2])
        again = scorer.probs(files[1::-1])
        assert calls[1:] == second and np.allclose(again, first[::-1]) and np.allclose(first.sum(1), 1, atol=1e-5)
        assert len(scorer.seen) == (2 if remember else 0)


@pytest.mark.slow
def test_a_finished_run_takes_a_users_map_on_resume(run, env, tmp_path):
    "Rows for the demo's rare test-only classes: `--resume` refits the gate and temperatures without training again."
    import shutil
    again = tmp_path / 'again'
    shutil.copytree(run, again)
    assert 'no zero-shot map row' in json.loads((again / 'stage2.json').read_text())['answering']['why_not']
    (tmp_path / 'map.csv').write_text('articleType,imagenet,main\nGloves,mitten,mitten\nScarves,stole,stole\n')
    p = run_module('fashion_fastai.train', '--resume', again, '--zero-shot-map', tmp_path / 'map.csv', env=env)
    assert 'changing zero_shot_map' in p.stdout and 'already trained' in p.stdout
    a = Answering.from_meta(json.loads((again / 'stage2.json').read_text()))
    assert a.zero_shot.head.classes == ('Gloves', 'Scarves') and a.holdout['routed'] <= MAX_ROUTED
    resumed, trained = (torch.load(d / 'stage2.pth', weights_only=True) for d in (again, run))
    assert resumed.keys() == trained.keys() and all(torch.equal(resumed[k], trained[k]) for k in trained)  # not
    # trained again
    # stage one refitted from a fresh holdout pass: as when training's last validation pass gave the holdout's outputs
    first, refit = (Answering.from_meta(json.loads((d / 'stage1.json').read_text())) for d in (run, again))
    assert refit.temperatures['articleType'] == pytest.approx(first.temperatures['articleType'], rel=1e-3)
    assert refit.zero_shot.boost == pytest.approx(first.zero_shot.boost, rel=1e-3)
    assert refit.joined_temperature == pytest.approx(first.joined_temperature, rel=1e-3)


def split_photos(run_dir, name):
    "(the test photos of model `name`'s part, their article types), as the run chose them (its config.json)."
    from fashion_fastai.core.models import ALL, JOINED, spec
    from fashion_fastai.data.styles import eval_rows, load_data
    from fashion_fastai.training.config import TrainConfig
    record = json.loads((run_dir / 'config.json').read_text())
    part = ALL if name == JOINED else spec(name).part
    rows = eval_rows(load_data(Path(record['data_dir']), **TrainConfig.of_run(run_dir).data_options()), part)
    return list(rows['file']), list(rows['articleType'])


TIE = 1e-5  # two probabilities this close may swap between two correct float32 passes (batch size, kernels)


@pytest.mark.slow
def test_the_report_holds_what_predict_answers(run):
    """results.md and metrics.json's micro top-1 of the model `predict` answers with, both ways, are `predict_paths`'s
    answers for that model's test photos: the same count of right answers, but for a photo whose two best
    probabilities are within `TIE` (the report's pass and predict's may order those two either way)."""
    from fashion_fastai.inference import answer_files, default_model, predict_paths
    from fashion_fastai.reporting.report import _pct
    name = default_model(run)
    files, truth = split_photos(run, name)
    stage = json.loads((run / 'metrics.json').read_text())['stages'][name]
    reported = {True: stage['answering']['closed_summary'], False: stage['answering']['zero_shot']['summary']}
    assert stage['n_test'] == len(files) and stage['answering']['closed_summary']['all'] == stage['all']
    section = (run / 'results.md').read_text().split(f'## {name}\n')[1].split('\n## ')[0]
    assert (f"| micro top-1 % | {_pct(reported[True]['all']['micro_top1'])} | "
            f"{_pct(reported[False]['all']['micro_top1'])} |") in section
    for closed_set, summary in reported.items():
        model = load_model(run, device='cpu', closed_set=closed_set)
        results, skipped = predict_paths(model, files, topk=1)
        assert not skipped and [r['path'] for r in results] == list(map(str, files))
        right = sum(r['top'][0]['class'] == y for r, y in zip(results, truth))
        best = answer_files(model, files)[0]['articleType'].double().topk(2, dim=1).values  # unrounded, as answered
        ties = int((best[:, 0] - best[:, 1] <= TIE).sum())
        assert abs(right - round(summary['all']['micro_top1'] * len(files))) <= ties, (closed_set, right, ties)


@pytest.mark.slow
def test_the_index_labels_an_unlabelled_photo_as_predict_answers(run, tmp_path):
    "A catalogue photo without a styles.csv row gets the article type `predict` gives it, zero-shot classes included."
    import shutil
    from fashion_fastai.catalogue.index import build
    from fashion_fastai.inference import answer_files, default_model, predict_paths
    files, _ = split_photos(run, default_model(run))
    loose = tmp_path / 'loose'; loose.mkdir()
    for f in files[:12]: shutil.copy(f, loose)
    from fashion_fastai.catalogue.index import weights_only
    index, _ = build(weights_only(run), [loose], device='cpu', log=lambda *a: None)
    model = load_model(run, device='cpu')
    results, _ = predict_paths(model, [loose], topk=1)
    answered = answer_files(model, [r['path'] for r in results])[0]['articleType']
    assert set(index.label_source) == {'model'} and len(results) == len(index.labels) == 12
    for label, r, p in zip(index.labels, results, answered):  # predict's answer, or a class tied with it exactly
        assert label == r['top'][0]['class'] or p[model.vocab.index(label)] == p.max()


@pytest.mark.slow
def test_closed_set_needs_no_imagenet_network_in_every_command(run, env, tmp_path):
    "Without imagenet.pth beside the model, the zero-shot answer says --closed-set, which every answering command has."
    import shutil
    from fashion_fastai.catalogue.index import build
    from fashion_fastai.inference import default_model
    name = default_model(run)
    alone = tmp_path / 'alone'  # the run's models without the frozen network
    shutil.copytree(run, alone, ignore=shutil.ignore_patterns('checkpoints', 'imagenet.*', '*.pkl'))
    default = alone / ('joined.json' if name == 'joined' else f'{name}.json')
    files, _ = split_photos(run, name)
    with pytest.raises(ModelError, match='imagenet.*--closed-set'): build(default, files[:3], log=print)
    index, _ = build(default, files[:3], device='cpu', log=lambda *a: None, closed_set=True)
    assert len(index.labels) == 3
    for command in ('predict', 'tag', 'index'):
        extra = {'tag': ['--out', tmp_path / 't.csv'], 'index': ['--out', tmp_path / 'i.npz']}.get(command, [])
        p = run_module(f"fashion_fastai.{command}", alone, *files[:3], *extra, "--closed-set", env=env, check=False)
        assert p.returncode == 0, (command, p.stderr[-2000:])


@pytest.mark.slow
def test_an_answer_agrees_with_itself_and_flags_by_the_holdouts_rule(run, tmp_path):
    """Every command's answer: masterCategory and subCategory from the article type answered where the holdout chose
    so (the kept way recorded in the JSON), `uncertain` by the review rule fitted on the holdout, tag's row the same."""
    import csv
    from fashion_fastai.answering.categories import ARTICLE_TYPE, DECIDED
    from fashion_fastai.catalogue.tag import tag
    from fashion_fastai.inference.answers import predict_paths
    files = photos(run, 12)
    for stage in ('joined', 'stage1', 'all'):
        predictor = load_model(run, stage=stage, device='cpu')
        ways = predictor.answering.attributes
        assert set(ways) == set(DECIDED) and all(len(w['of']) == len(predictor.vocab) for w in ways.values())
        results, _ = predict_paths(predictor, files)
        for r in results:
            # the answer's probability is rounded to 4 decimals: within 5e-5 of the threshold either side is right
            assert (r['uncertain'] == (r['top'][0]['prob'] < predictor.review_prob)
                    or abs(r['top'][0]['prob'] - predictor.review_prob) <= 5e-5)
            for a, w in ways.items():
                if w['way'] == ARTICLE_TYPE:  # the value of the article type answered
                    of = w['of'][predictor.vocab.index(r['top'][0]['class'])]
                    assert of < 0 or r['attributes'][a]['class'] == predictor.vocabs[a][of]
        if stage == 'joined':
            out = tmp_path / 'tags.csv'
            tag(predictor, files, out, show=False)
            with open(out, newline='') as f: rows = {r['file']: r for r in csv.DictReader(f)}
            for r in results:  # a tag row is predict's answer for its photo
                row = rows[r['path']]
                assert row['articleType'] == r['top'][0]['class'] and row['needs_review'] == str(r['uncertain'])
                assert all(row[a] == r['attributes'][a]['class'] for a in DECIDED)
    joined = json.loads((run / 'joined.json').read_text())
    assert set(joined['review']) == {'zero_shot', 'closed_set'} and set(joined['attributes']) == set(DECIDED)
    m = json.loads((run / 'metrics.json').read_text())['stages']
    for stage in ('joined', 'stage1', 'all'):
        a = m[stage]['answering']
        assert set(a['attributes']) == set(DECIDED) and {'holdout', 'test', 'kept'} <= set(a['attributes'][DECIDED[0]])
        assert a['review']['precision_threshold'] <= a['review']['threshold']
        assert 'untrained_right_or_flagged' in a['review_zero_shot']['test']
        assert 'trained_photos_taken' in a['collateral']
    md = (run / 'results.md').read_text()
    assert 'Attributes the article type decides' in md and 'Review rule (`uncertain`)' in md
    assert 'What zero-shot takes and gives' in md
