"""inference/options.py: the model options of the five commands that load a model, declared once and checked once,
before any model is loaded or image read."""
from __future__ import annotations

import inspect, sys

import pytest

from fashion_fastai import app, predict
from fashion_fastai.catalogue import audit, index, tag
from fashion_fastai.core.errors import OptionError
from fashion_fastai.inference import options
from fashion_fastai.inference.options import DEFAULT, check_model_options

COMMANDS = {'predict': predict, 'app': app, 'tag': tag, 'index': index, 'audit': audit}
SHARED = {'stage': options.Stage, 'engine': options.Engine, 'device': options.Device, 'processes': options.Processes,
          'trust_pickle': options.TrustPickle, 'min_prob': options.MinProb, 'bs': options.Batch,
          'closed_set': options.ClosedSet}


@pytest.mark.parametrize('name', COMMANDS)
def test_every_command_declares_the_shared_options_alike(name):
    "Same type, help and default wherever an option appears (app's --stage picks shown models: a meaning of its own)."
    params = inspect.signature(COMMANDS[name].main.__wrapped__, eval_str=True).parameters
    assert params['model'].annotation in (options.Model, options.WeightsModel)
    shared = [k for k in SHARED if k in params and not (name == 'app' and k == 'stage')]
    assert 'device' in shared
    for k in shared:
        assert params[k].annotation == SHARED[k] and params[k].default == getattr(DEFAULT, k), (name, k)


@pytest.mark.parametrize('option, value, message', [
    ('stage', 'stage9', '--stage must be one of'), ('engine', 'tf', '--engine must be one of torch, onnx'),
    ('device', 'tpu', '--device must be one of auto, cpu, cuda'), ('processes', 0, '--processes must be at least 1'),
    ('min_prob', 0., r'--min-prob must be a probability in \(0, 1\]'), ('bs', 0, '--bs must be at least 1')])
def test_a_value_that_cannot_work_is_refused(option, value, message):
    with pytest.raises(OptionError, match=message): check_model_options(**{option: value})


def test_what_the_machine_cannot_honour(monkeypatch):
    with pytest.raises(OptionError, match='give at least one image'): check_model_options(())
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # the optional extra not installed
    with pytest.raises(OptionError, match=r"needs onnxruntime.*pip install 'fashion_fastai\[onnx\]'"):
        check_model_options(engine='onnx')
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    with pytest.raises(OptionError, match='--device cuda, but torch sees no CUDA GPU'):
        check_model_options(device='cuda')
    assert check_model_options(['x.jpg']) == DEFAULT


@pytest.mark.parametrize('name', COMMANDS)
def test_each_command_checks_before_it_looks_at_the_model(name, tmp_path, capsys):
    "A model that does not exist is not reached: the option's line comes first, `NAME: error: ...`, exit status 2."
    args = [str(tmp_path / 'missing')] + ([] if name in ('app', 'audit') else [str(tmp_path)])
    with pytest.raises(SystemExit) as e: COMMANDS[name].main(*args, device='tpu')
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == f"{name}: error: --device must be one of auto, cpu, cuda, got 'tpu'."
