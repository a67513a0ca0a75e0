"""`python -m fashion_fastai.index` and `predict --similar`: a catalogue's embeddings, exact cosine search, labels from
styles.csv, and an index from another model refused by name."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fashion_fastai.core.errors import ModelError, OptionError
from fashion_fastai.catalogue.index import Index, build, model_identity, weights_only
from fashion_fastai.inference.predictors import WeightsOnlyModel
from helpers import export_untrained, run_module, save_image, style_line, write_dataset


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, tiny_dls):
    folder = tmp_path_factory.mktemp('run')
    export_untrained(folder, tiny_dls)
    return folder


@pytest.fixture(scope='module')
def catalogue(tmp_path_factory):
    "A Kaggle folder of 8 products (styles.csv labels them), plus an unreadable file and a second file with id 3."
    root = write_dataset(tmp_path_factory.mktemp('shop'), [style_line(i, a) for i, a in
                                                           enumerate(['Caps', 'Socks', 'Belts', 'Caps'] * 2, start=1)])
    (root / 'images' / 'broken.jpg').write_bytes(b'not a jpeg')
    save_image(root / 'images' / '03.jpg', seed=3)
    return root


def test_build_embeds_labels_and_skips(run_dir, catalogue):
    index, skipped = build(run_dir / 'stage1.json', [catalogue / 'images'], bs=3, log=lambda *a: None)
    assert sorted(index.ids, key=int) == [str(i) for i in range(1, 9)] and index.vectors.dtype == np.float16
    assert np.allclose(np.linalg.norm(index.vectors.astype(np.float32), axis=1), 1, atol=1e-2)
    assert set(index.label_source) == {'styles.csv'} and index.labels[index.ids.index('2')] == 'Socks'
    reasons = {s['path'].rsplit('/', 1)[1]: s['error'] for s in skipped}
    # 03.jpg came first
    assert set(reasons) == {'broken.jpg', '3.jpg'} and reasons['3.jpg'].startswith('duplicate id 3')
    assert index.model == model_identity(run_dir / 'stage1.json')


def test_search_is_exact_cosine_in_blocks(monkeypatch):
    import fashion_fastai.catalogue.index as ix
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 8)).astype(np.float32); v /= np.linalg.norm(v, axis=1, keepdims=True)
    index = Index(v.astype(np.float16), [str(i) for i in range(50)], [''] * 50, ['x'] * 50, ['model'] * 50, {})
    q = rng.normal(size=(3, 8)).astype(np.float32)
    brute = q @ v.astype(np.float16).astype(np.float32).T
    monkeypatch.setattr(ix, 'BLOCK', 7)  # many blocks: the merge across them must give the global best
    scores, rows = index.search(q, 5)
    assert (rows == np.argsort(-brute, axis=1, kind='stable')[:, :5]).all()
    assert np.allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :5])
    assert index.search(q, 99)[1].shape == (3, 50)  # k beyond the catalogue: all of it


def test_an_indexed_photo_finds_itself_first(run_dir, catalogue, tmp_path):
    index, _ = build(run_dir / 'stage1.json', [catalogue / 'images'], log=lambda *a: None)
    index.save(tmp_path / 'c.npz')
    again = Index.load(tmp_path / 'c.npz', model_identity(run_dir / 'stage1.json'))
    emb, _ = WeightsOnlyModel(run_dir / 'stage1.json', device='cpu').embed([catalogue / 'images' / '5.jpg'])
    near = again.neighbours(emb.numpy(), 3)[0]
    assert near[0]['id'] == '5' and near[0]['score'] == pytest.approx(1, abs=1e-2) and len(near) == 3


def test_another_models_index_is_refused_by_name(run_dir, catalogue, tiny_dls, tmp_path):
    other = export_untrained(tmp_path / 'other', tiny_dls, seed=1)
    index, _ = build(other, [catalogue / 'images'], log=lambda *a: None)
    index.save(tmp_path / 'other.npz')
    with pytest.raises(OptionError, match=r'was built with another model \(.*other/stage1.json\)'):
        Index.load(tmp_path / 'other.npz', model_identity(run_dir / 'stage1.json'))
    (tmp_path / 'junk.npz').write_bytes(b'junk')
    with pytest.raises(OptionError, match='is not an index written by'): Index.load(tmp_path / 'junk.npz')
    pkl = tmp_path / 'pkl'; pkl.mkdir(); (pkl / 'stage1.pkl').write_bytes((run_dir / 'stage1.pkl').read_bytes())
    with pytest.warns(UserWarning), pytest.raises(ModelError, match='needs the weights-only form'):
        weights_only(pkl / 'stage1.pkl')


def test_predict_similar_from_the_command_line(run_dir, catalogue, tmp_path):
    run_module('fashion_fastai.index', run_dir, catalogue / 'images', '--out', tmp_path / 'c.npz')
    p = run_module('fashion_fastai.predict', run_dir, catalogue / 'images' / '2.jpg', '--similar', '2', '--index',
                   tmp_path / 'c.npz', '--json')
    near = json.loads(p.stdout)['predictions'][0]['similar']
    assert [n['id'] for n in near][0] == '2' and len(near) == 2 and near[0]['label'] == 'Socks'
    table = run_module('fashion_fastai.predict', run_dir, catalogue / 'images' / '2.jpg', '--similar', '1', '--index',
                       tmp_path / 'c.npz').stdout
    assert '| similar: 2 Socks 1.00' in table
    bad = run_module('fashion_fastai.predict', run_dir, catalogue / 'images' / '2.jpg', '--similar', '2', check=False)
    assert bad.returncode == 2 and '--similar K needs' in bad.stderr and 'Traceback' not in bad.stderr


def test_an_out_folder_that_cannot_be_written_is_refused_before_any_photo(run_dir, catalogue, tmp_path, monkeypatch):
    "Permissions cannot be taken from root here: the folder's refusal is what the operating system would raise."
    import fashion_fastai.catalogue.index as ix
    def refuse(*a, **k): raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(ix.tempfile, 'NamedTemporaryFile', refuse)
    monkeypatch.setattr(ix, 'build', lambda *a, **k: pytest.fail('photos were read'))
    with pytest.raises(SystemExit) as e: ix.main(str(run_dir), str(catalogue / 'images'), out=str(tmp_path / 'c.npz'))
    assert e.value.code == 2
    assert not list(tmp_path.iterdir())
