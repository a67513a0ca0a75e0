"""ONNX export (shipped/onnx_export.py) and the ONNX Runtime engine (shipped/runtime.py, `--engine onnx`): the graph
answers as PyTorch does, within what float32 arithmetic allows, and fails loudly otherwise; the engine runs without
PyTorch."""
from __future__ import annotations

import json, os, shutil, subprocess, sys

import numpy as np
import pytest
import torch

from fashion_fastai.shipped import onnx_export as export
from fashion_fastai.shipped import runtime as shipped
from fashion_fastai.core.errors import ModelError, OptionError
from fashion_fastai.inference.load import load_model
from fashion_fastai.inference.locate import choose_engine, find_model
from fashion_fastai.inference.predictors import WeightsOnlyModel
from helpers import export_untrained, run_module, save_image

pytest.importorskip('onnxruntime')
ATTRIBUTES = {'gender': ['Boys', 'Girls', 'Men', 'Women'], 'usage': ['Casual', 'Sports']}


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp('photos')
    for i in range(10): save_image(folder / f'{i}.jpg', seed=i)
    save_image(folder / 'rgba.png', mode='RGBA', seed=99)
    return folder


@pytest.fixture(scope='module')
def shipped_run(tmp_path_factory, tiny_dls, photos):
    "A run folder whose stage one (with two attribute heads) is exported to ONNX."
    folder = tmp_path_factory.mktemp('run')
    json_path = export_untrained(folder, tiny_dls, attributes=ATTRIBUTES)
    export.export_onnx(json_path, export.check_images(folder, photos))
    return folder


def test_the_graph_answers_as_pytorch_does(shipped_run, photos):
    meta = json.loads((shipped_run / 'stage1.json').read_text())
    record = meta['onnx']
    assert record['outputs'] == ['gender', 'usage', 'articleType'] and record['input'] == 'pixels'
    assert (shipped_run / record['file']).is_file() and record['check']['images'] == 11
    assert sorted(f.name for f in shipped_run.iterdir() if 'onnx' in f.name or f.name.startswith('.')) == [
        'stage1.onnx']  # self-contained: no weights beside it under a temporary name
    assert record['check']['max_abs_diff'] <= record['check']['tolerance'] and meta['vocab']  # the rest stays
    files = sorted(photos.iterdir())
    ours = shipped.OnnxModel(shipped_run / 'stage1.json').head_probs(files, bs=4)  # batches of another size: dynamic
    torch_side = WeightsOnlyModel(shipped_run / 'stage1.json', device='cpu').head_probs(files)
    for head, p in torch_side.items():
        assert ours[head].shape == tuple(p.shape) and np.allclose(ours[head].sum(1), 1, atol=1e-5)
        assert np.abs(ours[head] - p.numpy()).max() <= record['check']['tolerance'], head


def test_a_graph_that_is_not_the_model_fails_loudly(tmp_path, tiny_dls, photos, monkeypatch):
    json_path = export_untrained(tmp_path / 'run', tiny_dls)
    real = export.session

    class Off:  # ONNX Runtime answering a little off, as a wrong graph would
        def __init__(self, path): self.s = real(path)
        def run(self, names, feed): return [o + 1e-3 for o in self.s.run(names, feed)]
    monkeypatch.setattr(export, 'session', Off)
    with pytest.raises(ModelError, match=r"stage1.onnx: ONNX Runtime's articleType probabilities differ .* beyond"):
        export.export_onnx(json_path, export.check_images(tmp_path, photos))
    assert not list((tmp_path / 'run').glob('*.onnx')) and 'onnx' not in json.loads(json_path.read_text())


def test_tolerance_comes_from_pytorchs_own_float32_error():
    ref = [torch.zeros(2, 3, dtype=torch.float64)]
    assert export.tolerance(ref, [torch.full((2, 3), 1e-4)]) == pytest.approx(export.TOLERANCE_FACTOR * 1e-4)
    assert export.tolerance(ref, [torch.zeros(2, 3)]) == export.FLOOR  # exact float32: a few ulps still allowed


def test_predict_engine_onnx_answers_like_torch(shipped_run, photos, tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    args = [shipped_run, photos, '--json']
    ours = json.loads(run_module('fashion_fastai.predict', *args, '--engine', 'onnx', env=env).stdout)
    torchs = json.loads(run_module('fashion_fastai.predict', *args, env=env).stdout)
    assert [r['path'] for r in ours['predictions']] == [r['path'] for r in torchs['predictions']]
    for a, b in zip(ours['predictions'], torchs['predictions']):
        assert a['top'][0]['class'] == b['top'][0]['class'] and abs(a['top'][0]['prob'] - b['top'][0]['prob']) <= 1e-3
        assert ({h: v['class'] for h, v in a['attributes'].items()}
                == {h: v['class'] for h, v in b['attributes'].items()})


def test_worker_processes_run_the_graph_too(shipped_run, photos):
    files = sorted(photos.iterdir())
    one = load_model(shipped_run, engine='onnx').head_probs(files)
    with load_model(shipped_run, engine='onnx', processes=2) as pool: two = pool.head_probs(files, bs=4)
    # other batches and threads may sum in another order (kernels chosen by shape and CPU): float32 rounding, a few
    # 1e-8 of a probability, never 1e-6
    assert all(torch.allclose(one[h], two[h], rtol=0, atol=1e-6) for h in one)


def test_runs_where_pytorch_is_not_installed(shipped_run, photos):
    code = ("import sys; sys.modules.update(torch=None, fastai=None, torchvision=None)  # importing them now fails\n"
            "from fashion_fastai.shipped import OnnxModel\n"
            f"m = OnnxModel({str(shipped_run / 'stage1.json')!r})\n"
            f"p = m.head_probs([{str(photos / '0.jpg')!r}])\n"
            "print(sorted(p), p['articleType'].shape)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['articleType', 'gender', 'usage'] (1, 3)"


def test_what_is_missing_is_said(tmp_path, tiny_dls, shipped_run, photos, monkeypatch):
    bare = export_untrained(tmp_path / 'bare', tiny_dls)  # trained, never exported to ONNX
    with pytest.raises(ModelError, match='has no ONNX graph beside it yet: run `python -m fashion_fastai.export'):
        choose_engine(find_model(bare.parent), 'onnx')
    with pytest.raises(OptionError, match='--engine must be one of torch, onnx'): choose_engine((bare, 'weights'), 'tf')
    pkl_only = tmp_path / 'pkl'; pkl_only.mkdir(); shutil.copy(bare.with_suffix('.pkl'), pkl_only / 'stage1.pkl')
    with pytest.raises(ModelError, match='reads the weights-only stage1.json'):
        choose_engine((pkl_only / 'stage1.pkl', 'pickle'), 'onnx')
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # the optional extra not installed
    with pytest.raises(ImportError, match=r"pip install 'fashion_fastai\[onnx\]'"): shipped.import_onnxruntime()
    with pytest.raises(OptionError, match='needs onnxruntime'): load_model(shipped_run, engine='onnx')


def test_a_graph_of_another_model_is_refused_before_any_photo(shipped_run, photos, tmp_path):
    "A JSON whose heads (or input size) differ from its graph's: copied from another model, or edited by hand."
    meta = json.loads((shipped_run / 'stage1.json').read_text())
    other = tmp_path / 'other'; other.mkdir()
    shutil.copy(shipped_run / 'stage1.onnx', other / 'stage1.onnx')
    for name, changed in (('fewer', {**meta, 'vocab': meta['vocab'][:-1]}), ('size', {**meta, 'size': [64, 48]})):
        (other / 'stage1.json').write_text(json.dumps(changed))
        with pytest.raises(ModelError, match=r'does not belong to .*stage1\.json.*export'):
            load_model(other / 'stage1.json', engine='onnx')
    p = run_module('fashion_fastai.predict', other, photos, '--engine', 'onnx', check=False)
    assert p.returncode == 2 and 'predict: error:' in p.stderr and 'does not belong to' in p.stderr


def test_export_command_checks_its_inputs(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    p = run_module('fashion_fastai.export', tmp_path, env=env, check=False)
    assert p.returncode == 2 and 'export: error:' in p.stderr and 'holds no weights-only model' in p.stderr
    assert 'Traceback' not in p.stderr


def test_the_web_page_runs_the_graph_too(shipped_run, photos):
    from fashion_fastai.app import classify, load_predictors
    from fashion_fastai.inference.predictors import OnnxPredictor
    pages = {e: load_predictors(shipped_run, engine=e) for e in ('onnx', 'torch')}
    assert all(isinstance(p, OnnxPredictor) for p in pages['onnx'].values())
    ours, theirs = (classify(pages[e], photos / '3.jpg') for e in ('onnx', 'torch'))
    assert [max(d, key=d.get) for d in ours] == [max(d, key=d.get) for d in theirs]  # every head's answer


@pytest.mark.slow
def test_the_gpu_script_runs_end_to_end_on_the_cpu(tmp_path):
    "bench/gpu.sh --dry-run: the device run's every step (train in bf16 + channels_last, the shipping bench, summary)."
    env = {**os.environ, 'OUT': str(tmp_path / 'out'), 'PYTHON': sys.executable, 'OMP_NUM_THREADS': '1',
           'FASHION_FASTAI_CACHE': str(tmp_path / 'cache'), 'TORCH_HOME': str(tmp_path / 'torch')}
    root = __import__('pathlib').Path(__file__).resolve().parents[1]
    p = subprocess.run(['bash', 'bench/gpu.sh', '--dry-run'], cwd=root, env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert 'wall time of training and evaluation' in p.stdout and 'stage1: test micro top-1' in p.stdout
    record = json.loads((tmp_path / 'out' / 'shipping-speed.json').read_text())
    answers = {f'{a}_{e}' for a in ('all_zero_shot', 'joined_all_parts', 'joined_stages') for e in ('torch', 'onnx')}
    assert set(record['results']['resnet18 32x24']['latency_ms']) == {'bare_nchw', 'torch_path', 'onnx_path', *answers}
    assert (tmp_path / 'out' / 'run' / 'results.md').is_file() and (tmp_path / 'out' / 'gpu.log').is_file()
