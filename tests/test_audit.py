"""`python -m fashion_fastai.audit`: labels judged only where the model never trained, near-duplicates by embedding and
perceptual hash, disagreeing groups per attribute, the page, and the inputs it refuses."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fashion_fastai.catalogue.audit import (TrainingSet, audit, disagreements, duplicate_groups, label_issues,
                                            summary_lines)
from fashion_fastai.core.errors import DataError, OptionError
from helpers import run_module, style_line, write_dataset

pytest.importorskip('cleanlab')
imagehash = pytest.importorskip('imagehash')


def noise_image(path, seed):
    "A photo unlike any other seed's: random pixels differ everywhere, embeddings and perceptual hashes alike."
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(path, 'JPEG', quality=95)


def line(ident, article, year, colour):
    return style_line(ident, article, year).replace(',Black,', f',{colour},')


@pytest.fixture(scope='module')
def shop(tmp_path_factory):
    """Three article types over even (training) and odd years; 201 and 202 are one photo under two ids whose colours
    disagree; 203 is labelled Socks but is a copy of a Belts photo."""
    rows = [line(i, a, 2012 if i % 2 else 2013, 'Black') for i, a in
            enumerate(['Belts', 'Caps', 'Socks'] * 6, start=100)]
    rows += [line(201, 'Caps', 2013, 'Red'), line(202, 'Caps', 2013, 'Blue'), line(203, 'Socks', 2013, 'Black')]
    root = write_dataset(tmp_path_factory.mktemp('shop'), rows, images=[])
    for i in range(100, 118): noise_image(root / 'images' / f'{i}.jpg', i)
    noise_image(root / 'images' / '201.jpg', 999)
    (root / 'images' / '202.jpg').write_bytes((root / 'images' / '201.jpg').read_bytes())
    (root / 'images' / '203.jpg').write_bytes((root / 'images' / '100.jpg').read_bytes())
    return root


@pytest.fixture(scope='module')
def run(shop, tmp_path_factory):
    "A real (tiny) run on the shop: the all-classes model with a baseColour head, trained on the even years."
    from fashion_fastai.training.config import TrainConfig
    from fashion_fastai.train import train
    cfg = TrainConfig(data=str(shop), arch='resnet18', size='32x24', bs=8, epochs=1, epochs2=0, epochs_all=1,
                      pretrained='no', lr=1e-3, lr_all=1e-3, topk=3, workers=0, attributes='baseColour', holdout=0,
                      out=str(tmp_path_factory.mktemp('runs')), name='run')
    return train(cfg)


@pytest.fixture(scope='module')
def audited(run, tmp_path_factory):
    out = tmp_path_factory.mktemp('audit')
    return audit(run, out=out, min_train=1, log=lambda *a: None), out


def test_label_issues_judges_only_what_the_model_did_not_train_on():
    import cleanlab.filter
    vocab = ['a', 'b', 'c']
    rows = pd.DataFrame(dict(id=range(8), file=[f'{i}.jpg' for i in range(8)],
                             articleType=['a', 'a', 'b', 'b', 'a', 'c', '', 'a']))
    p = torch.tensor([[.9, .05, .05], [.8, .1, .1], [.1, .8, .1], [.05, .9, .05],
                      [.02, .97, .01],  # labelled a, confidently b: the one to flag
                      [.3, .3, .4], [.4, .3, .3], [.01, .98, .01]])  # c never trained; no label; 7 trained on
    judged = np.array([True] * 7 + [False])
    trained = TrainingSet(classes={'articleType': {'a': 10, 'b': 12, 'c': 9}}, known=True)  # c: too few to judge
    heads = {'articleType': p, 'gender': p}  # gender: a head of the model, but not a column asked for
    issues, counts = label_issues(rows.assign(gender='a'), ['articleType'], heads,
                                  {'articleType': vocab, 'gender': vocab},
                                  judged, trained, cleanlab.filter.find_label_issues, min_train=10)
    assert list(counts) == ['articleType'] and set(issues['attribute']) == {'articleType'}
    assert counts['articleType'] == dict(judged=5, not_judged_trained_on=1, not_judged_missing_label=1,
                                         not_judged_class_too_rare=1, flagged=len(issues))
    first = issues.iloc[0]
    assert (first['id'], first['given'], first['suggested'], first['rank']) == (4, 'a', 'b', 1)
    assert (first['prob_given'] == pytest.approx(.02, abs=1e-4)
            and first['prob_suggested'] == pytest.approx(.97, abs=1e-4))
    assert not set(issues['id']) & {5, 6, 7}


def test_near_duplicates_need_both_the_embedding_and_the_hash(tmp_path):
    files = []
    for i, seed in enumerate([1, 1, 2, 3]):
        files.append(tmp_path / f'{i}.jpg'); noise_image(files[-1], seed)
    same = np.array([1., 0, 0], np.float32)
    vectors = np.stack([same, same, same, [0, 1, 0]]).astype(np.float32)  # 2 looks like 0 and 1 to the embedding only
    groups = duplicate_groups(files, vectors, .95, 6, imagehash)
    assert groups[0] == groups[1] >= 0 and groups[2] == groups[3] == -1
    assert (duplicate_groups(files, np.eye(4, dtype=np.float32), .95, 6, imagehash) == -1).all()  # hash alone: no


def test_near_duplicates_of_another_colour_are_other_products(tmp_path):
    "One layout in red and in blue: two shades of one product, not one product listed twice."
    files = []
    for colour in ((200, 30, 30), (30, 30, 200)):
        arr = np.full((80, 60, 3), 245, np.uint8); arr[15:65, 12:48] = colour
        files.append(tmp_path / f'{len(files)}.jpg'); Image.fromarray(arr).save(files[-1], 'JPEG', quality=95)
    same = np.ones((2, 4), np.float32) / 2
    assert (duplicate_groups(files, same, .95, 64, imagehash, max_colour_bits=0) == -1).all()
    assert (duplicate_groups(files, same, .95, 64, imagehash, max_colour_bits=42) >= 0).all()


def test_disagreements_per_attribute_ignore_missing_values():
    rows = pd.DataFrame(dict(id=[1, 2, 3, 4, 5], file=list('abcde'), baseColour=['Red', 'Blue', 'Red', 'Red', None],
                             gender=['Men', 'Men', 'Men', 'Women', 'Men']))
    dups, counts = disagreements(rows, np.array([0, 0, 1, 1, 1]), ['baseColour', 'gender'])
    assert counts == dict(baseColour=dict(groups=1, photos=2), gender=dict(groups=1, photos=3))
    assert list(dups.loc[dups['attribute'] == 'baseColour', 'id']) == [2, 1]  # sorted by value within the group


def test_audit_of_a_run_on_its_own_data(audited, shop):
    summary, out = audited
    assert summary['photos'] == 21  # season and usage only when asked: no one can check them on a photo
    assert summary['attributes'] == ['articleType', 'gender', 'masterCategory', 'subCategory', 'baseColour']
    lt = summary['label_issues']['articleType']
    assert lt['not_judged_trained_on'] == 9 and lt['judged'] + lt['not_judged_class_too_rare'] == 12
    assert 'gender' not in summary['label_issues']  # the model has no gender head: duplicates only
    assert summary['near_duplicates']['disagreeing']['baseColour'] == dict(groups=1, photos=2)
    dups = pd.read_csv(out / 'duplicate_groups.csv')
    assert set(dups.loc[dups['attribute'] == 'baseColour', 'id']) == {201, 202}
    assert set(dups.loc[dups['attribute'] == 'articleType', 'id']) == {100, 203}  # Belts photo labelled Socks
    issues = pd.read_csv(out / 'label_issues.csv')
    assert len(issues) == lt['flagged'] + summary['label_issues']['baseColour']['flagged']
    assert json.loads((out / 'summary.json').read_text()) == summary
    page = (out / 'audit.html').read_text()
    assert page.count('data:image/jpeg;base64,') >= 4 and '201<br><b>Red</b>' in page and '202<br><b>Blue</b>' in page
    assert any(l.startswith('baseColour: 1 near-duplicate groups disagree') for l in summary_lines(summary))


def test_another_data_folder_is_judged_whole(run, shop, tmp_path):
    other = write_dataset(tmp_path / 'other', [line(i, 'Caps', 2012, 'Black') for i in (1, 2)], images=[])
    for i in (1, 2): noise_image(other / 'images' / f'{i}.jpg', 50 + i)
    summary = audit(run, other, tmp_path / 'out', min_train=1, log=lambda *a: None)
    assert summary['label_issues']['articleType'] == dict(judged=0, flagged=0, not_judged_one_class=2,
                                                          not_judged_trained_on=0, not_judged_missing_label=0,
                                                          not_judged_class_too_rare=0)


def test_bad_inputs(run, shop, tmp_path):
    with pytest.raises(DataError, match='no column usage'):
        bare = write_dataset(tmp_path / 'bare', ['1,Men,Tshirts,2012'], header='id,gender,articleType,year')
        audit(run, bare, tmp_path / 'o1', attributes=['usage'], log=lambda *a: None)
    empty = tmp_path / 'empty'; (empty / 'images').mkdir(parents=True)
    (empty / 'styles.csv').write_text((shop / 'styles.csv').read_text())
    with pytest.raises(DataError, match='holds no .jpg'): audit(run, empty, tmp_path / 'o2', log=lambda *a: None)
    blocker = tmp_path / 'file'; blocker.write_text('x')
    with pytest.raises(OptionError, match='cannot write there'): audit(run, shop, blocker / 'sub', log=lambda *a: None)


def test_missing_extras_say_how_to_install(run, monkeypatch, tmp_path):
    import builtins
    real = builtins.__import__
    monkeypatch.setattr(builtins, '__import__', lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name.startswith('cleanlab') else real(name, *a, **k))
    with pytest.raises(OptionError, match=r"fashion_fastai\[catalogue\]"): audit(run, out=tmp_path, log=lambda *a: None)


def test_command_line(run, tmp_path):
    p = run_module('fashion_fastai.audit', run, '--out', tmp_path / 'a', '--page-items', 5)
    assert 'near-duplicate photos' in p.stdout and (tmp_path / 'a' / 'audit.html').is_file()
    bad = run_module('fashion_fastai.audit', run, '--attributes', 'colour', check=False)
    assert bad.returncode == 2 and "audit: error: --attributes: colour is not a label column" in bad.stderr
