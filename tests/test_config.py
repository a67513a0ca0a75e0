"""`TrainConfig`: every option checked once, when the configuration is built (before any data is read), with the option
and the offending value named; written as config.json and read back for `--resume`; the CLI's options are its fields."""
import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from fashion_fastai.config import TrainConfig, resolve_precision
from fashion_fastai.errors import DataError, OptionError
from fashion_fastai.weights import default_arch


@pytest.mark.parametrize('change, named', [
    (dict(arch='vgg99'), ['--arch', 'vgg99', 'resnet18', 'resnet152']),
    (dict(size='big'), ['--size', 'big']), (dict(size='0'), ['--size']), (dict(size='80x0'), ['--size', '80x0']),
    (dict(size='-80x60'), ['--size']), (dict(size='80x60x3'), ['--size', '80x60x3']),
    (dict(epochs=0), ['--epochs', '0']), (dict(epochs=-2), ['--epochs', '-2']),
    (dict(bs=-1), ['--bs', '-1']), (dict(topk=0), ['--topk', '0']),
    (dict(epochs2=-1), ['--epochs2', '-1', '0 to skip stage two']),
    (dict(freeze_epochs=-1), ['--freeze-epochs', '-1']),
    (dict(holdout=1.5), ['--holdout', '1.5']), (dict(holdout=1.0), ['--holdout', '1.0']),
    (dict(holdout=-0.1), ['--holdout', '-0.1']), (dict(holdout=float('nan')), ['--holdout', 'nan']),
    (dict(workers=-1), ['--workers', '-1']),
    (dict(demo_scale=0.), ['--demo-scale', '0.0']),
    (dict(label_smoothing=1.), ['--label-smoothing', '1.0']), (dict(label_smoothing=-0.1), ['--label-smoothing', '-0.1']),
    (dict(tta=-1), ['--tta', '-1']),
    (dict(lr='-1'), ['--lr', '-1']), (dict(lr2='fast'), ['--lr2', 'fast', 'auto']),
    (dict(precision='fp8'), ['--precision', 'fp8', 'bf16']),
    (dict(pretrained='maybe'), ['--pretrained', 'maybe', 'auto, yes, no']),
    (dict(stage2_init='random'), ['--stage2-init', 'random', 'scratch']),
    (dict(stage2_head='zero'), ['--stage2-head', 'zero', 'imprint']),
    (dict(stage2_head='imprint', stage2_init='scratch'), ['--stage2-head imprint', 'scratch', '--stage2-head new']),
    (dict(tta='mirror'), ['--tta', 'mirror', 'flip']),
    (dict(rank_on='test'), ['--rank-on', 'test', 'train']),
    (dict(weights=Path('/nonexistent/resnet18.pth')), ['--weights', '/nonexistent/resnet18.pth']),
])
def test_bad_options_are_refused_naming_the_option_and_value(change, named):
    TrainConfig(pretrained='no')  # the baseline is valid
    with pytest.raises(OptionError) as e: TrainConfig(**{'pretrained': 'no', **change})
    for word in named: assert word in str(e.value), (word, str(e.value))


def test_fp16_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(OptionError, match='fp16'): TrainConfig(precision='fp16')


def test_resolve_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert resolve_precision('auto') == 'fp32'  # no CUDA: bf16 on the CPU is opt-in
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert resolve_precision('auto') == 'bf16'  # Ampere and newer
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: False)
    assert resolve_precision('auto') == 'fp32'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for p in ('fp32', 'bf16'): assert resolve_precision(p) == p
    for bad in ('fp64', 'BF16', '', None):
        with pytest.raises(OptionError, match='precision'): resolve_precision(bad)


@pytest.mark.parametrize('holdout', [0, 0., 0.1, 0.999])
def test_holdout_zero_means_none_and_fractions_are_accepted(holdout):
    assert TrainConfig(holdout=holdout).holdout == holdout


def test_values_are_normalised_once():
    c = TrainConfig(size='80x60', lr='3e-3', lr2='auto', data=None)
    assert c.size == (80, 60) and c.lr == 3e-3 and c.lr2 == 'auto'
    assert TrainConfig(size='224').size == (224, 224) and TrainConfig(size=(96, 72)).size == (96, 72)
    assert c.arch == default_arch(False, 'auto') and c.precision in ('fp32', 'bf16')  # the demo's arch; 'auto' resolved


def test_data_folder_without_styles_csv_says_where_it_is(tmp_path):
    kaggle = tmp_path / 'fashion-product-images-small'
    (kaggle / 'myntradataset').mkdir(parents=True)
    (kaggle / 'myntradataset' / 'styles.csv').write_text('id\n')
    for data, hint in [(kaggle, f"try --data {kaggle / 'myntradataset'}"),
                       (kaggle / 'myntradataset' / 'styles.csv', 'give the folder holding it'),
                       (tmp_path / 'typo', 'does not exist')]:
        with pytest.raises(DataError) as e: TrainConfig(data=data)
        assert f'--data {data}' in str(e.value) and hint in str(e.value)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='styles.csv and images/'): TrainConfig(data=tmp_path / 'empty')
    c = TrainConfig(data=kaggle / 'myntradataset', pretrained='no')
    assert c.data == kaggle / 'myntradataset' and c.arch == 'resnet50'  # the design's default with real data


def test_config_json_round_trip_and_resume(tmp_path):
    c = TrainConfig(out=tmp_path, name='r', size='64x48', lr='auto', holdout=0.1, epochs2=0, seed=7, pretrained='no')
    run = tmp_path / 'r'; run.mkdir()
    (run / 'config.json').write_text(json.dumps({**c.to_dict(), 'versions': {'torch': 'x'}, 'timings_seconds': {}}))
    assert TrainConfig.of_run(run) == c
    assert set(c.to_dict()) == {f.name for f in fields(TrainConfig)}
    with pytest.raises(OptionError, match=f'--resume {tmp_path}'): TrainConfig.of_run(tmp_path)  # no config.json
    (run / 'config.json').write_text('{not json')
    with pytest.raises(OptionError, match='not a run configuration'): TrainConfig.of_run(run)


def test_replace_checks_again():
    c = TrainConfig(pretrained='no')
    assert c.replace(epochs=2).epochs == 2 and c.epochs == 4
    with pytest.raises(OptionError, match='--epochs'): c.replace(epochs=0)


def test_every_option_is_on_the_command_line_with_its_help():
    "The CLI's options are the fields, defaults and help of `TrainConfig` (defined once), plus --resume."
    from fashion_fastai.train import parser
    actions = {a.dest: a for a in parser()._actions if a.help != '==SUPPRESS=='}
    assert set(actions) - {'help', 'resume'} == {f.name for f in fields(TrainConfig)}
    for f in fields(TrainConfig):
        a = actions[f.name]
        assert a.option_strings == [f"--{f.name.replace('_', '-')}"] and len(a.help) > 10
        assert a.default == f.default or f.default is None
    args = vars(parser().parse_args(['--size', '64x48', '--epochs', '2', '--data', '/x']))
    assert args['size'] == '64x48' and args['epochs'] == 2 and args['data'] == Path('/x')


def test_channels_last_where_it_was_measured_faster(monkeypatch, tmp_path):
    "auto: mixed precision, and timm models on a CPU (EfficientNet-Lite); not a ResNet in fp32 (not measured)."
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert TrainConfig(arch="tf_efficientnet_lite0", pretrained="no").channels_last is True
    assert TrainConfig(arch="resnet18", pretrained="no").channels_last is False
    assert TrainConfig(arch="resnet18", pretrained="no", precision="bf16").channels_last is True
    assert TrainConfig(arch="tf_efficientnet_lite0", pretrained="no", channels_last="no").channels_last is False
    assert TrainConfig(arch="resnet18", pretrained="no", channels_last="yes").channels_last is True
    cfg = TrainConfig(arch="resnet18", pretrained="no", channels_last="yes")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # config.json keeps the resolved choice
    with pytest.raises(OptionError, match="--channels-last must be one of auto, yes, no; got 'maybe'"):
        TrainConfig(channels_last="maybe")


def test_defaults_chosen_on_the_holdout(tmp_path):
    "--data runs at 128x96 (the demo at its images' 80x60); the stages train everything from the first epoch."
    (tmp_path / 'styles.csv').write_text('id,articleType,year\n')
    assert TrainConfig(data=tmp_path, arch='resnet18', pretrained='no').size == (128, 96)
    assert TrainConfig(arch='resnet18', pretrained='no').size == (80, 60)
    assert TrainConfig(data=tmp_path, arch='resnet18', pretrained='no', size='80x60').size == (80, 60)
    cfg = lambda **kw: TrainConfig(arch='resnet18', pretrained='no', **kw)
    assert [cfg().head_epochs(s) for s in ('stage1', 'stage2', 'all')] == [0, 0, 1]
    assert [cfg(freeze_epochs=2).head_epochs(s) for s in ('stage1', 'stage2', 'all')] == [2, 2, 2]
