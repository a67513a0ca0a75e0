"""`TrainConfig`: every option checked once, when the configuration is built (before any data is read), with the option
and the offending value named; written as config.json and read back for `--resume`; the CLI's options are its fields."""
import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from fashion_fastai.training.config import TrainConfig, resolve_precision
from fashion_fastai.core.errors import DataError, OptionError
from fashion_fastai.networks.weights import default_arch


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
    (dict(label_smoothing=1.), ['--label-smoothing', '1.0']),
    (dict(label_smoothing=-0.1), ['--label-smoothing', '-0.1']), (dict(tta=-1), ['--tta', '-1']),
    (dict(lr='-1'), ['--lr', '-1']), (dict(lr2='fast'), ['--lr2', 'fast', 'auto']),
    (dict(lr2='2e-3:2e-4'), ['--lr2', '2e-3:2e-4', 'LO <= HI']),
    (dict(lr_all='1e-4:2e-3:1'), ['--lr-all', '1e-4:2e-3:1']), (dict(lr='0:2e-3'), ['--lr', '0:2e-3']),
    (dict(precision='fp8'), ['--precision', 'fp8', 'bf16']),
    (dict(pretrained='maybe'), ['--pretrained', 'maybe', 'auto, yes, no']),
    (dict(stage2_body='random'), ['--stage2-body', 'random', 'scratch']),
    (dict(stage2_head='zero'), ['--stage2-head', 'zero', 'imprint']),
    (dict(stage2_head='imprint', stage2_body='scratch'), ['--stage2-head imprint', 'scratch', '--stage2-head new']),
    (dict(epochs='four'), ['--epochs', 'four', 'integer']), (dict(holdout='a tenth'), ['--holdout', 'a tenth']),
    (dict(tta='mirror'), ['--tta', 'mirror', 'flip']),
    (dict(rank_on='test'), ['--rank-on', 'test', 'train']),
    (dict(holdout_by='colour'), ['--holdout-by', 'colour', 'years, products, random']),
    (dict(holdout=0, holdout_by='years'), ['--holdout-by years', '--holdout 0', 'fraction']),
    (dict(zero_shot='maybe'), ['--zero-shot', 'maybe', 'yes, no']),
    (dict(weights=Path('/nonexistent/resnet18.pth')), ['--weights', '/nonexistent/resnet18.pth']),
])
def test_bad_options_are_refused_naming_the_option_and_value(change, named):
    TrainConfig(pretrained='no')  # the baseline is valid
    with pytest.raises(OptionError) as e: TrainConfig(**{'pretrained': 'no', **change})
    for word in named: assert word in str(e.value), (word, str(e.value))


def test_fp16_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    # a choice this machine lacks
    with pytest.raises(OptionError, match='fp16'): TrainConfig(precision='fp16').resolve()


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


def test_values_are_parsed_once_into_their_types():
    c = TrainConfig(size='80x60', lr='3e-3', lr2='auto', data=None, epochs='2', holdout='0.1', tta='flip',
                    attributes='gender,usage', channels_last='yes', out='runs')
    assert c.size == (80, 60) and c.lr == 3e-3 and c.lr2 == 'auto' and c.epochs == 2 and c.holdout == 0.1
    assert c.tta == 'flip' and c.attributes == ('gender', 'usage') and c.attribute_weights == (2., .5, .5)
    assert c.channels_last is True and c.out == Path('runs') and TrainConfig(tta='3').tta == 3
    assert TrainConfig(size='224').size == (224, 224) and TrainConfig(size=(96, 72)).size == (96, 72)
    assert c.replace() == c  # parsing a parsed value changes nothing
    assert c.arch is None and c.precision == 'auto'  # machine choices stay choices until `resolve`
    resolved, record = c.resolve()
    assert resolved.arch == default_arch(False, 'auto')[0] == record['arch']  # the demo's arch
    assert resolved.precision in ('fp32', 'bf16') and record['why']['arch'] and record['size'] == [80, 60]


def test_options_from_the_environment_are_parsed_as_the_cli_does(monkeypatch):
    monkeypatch.setenv('FASHION_NB_EPOCHS', '1'); monkeypatch.setenv('FASHION_NB_SIZE', '32x24')
    monkeypatch.setenv('FASHION_NB_ARCH', 'resnet18'); monkeypatch.setenv('OTHER_EPOCHS', '9')
    c = TrainConfig.from_env('FASHION_NB_')
    assert (c.epochs, c.size, c.arch, c.epochs2) == (1, (32, 24), 'resnet18', 10)
    monkeypatch.setenv('FASHION_NB_BS', 'many')
    with pytest.raises(OptionError, match="--bs must be an integer, got 'many'"): TrainConfig.from_env('FASHION_NB_')


def test_the_default_arch_is_one_whose_imagenet_weights_are_here(monkeypatch, tmp_path):
    "With --data and no --arch: ResNet50 where torchvision's weights can be had, else the installed Lite0, said why."
    import fashion_fastai.networks.weights as w
    data = tmp_path / 'd'; (data / 'images').mkdir(parents=True)
    (data / 'styles.csv').write_text('id,articleType,year\n'); (data / 'images' / '1.jpg').write_bytes(b'x')
    monkeypatch.setattr(w, 'torchvision_weights_available', lambda arch: (False, 'offline'))
    cfg, record = TrainConfig(data=data).resolve()
    assert cfg.arch == 'tf_efficientnet_lite0'
    assert 'offline' in record['why']['arch'] and 'resnet50' in record['why']['arch']
    monkeypatch.setattr(w, 'torchvision_weights_available', lambda arch: (True, 'cached at X'))
    cfg, record = TrainConfig(data=data).resolve()
    assert cfg.arch == 'resnet50' and 'cached at X' in record['why']['arch']
    assert TrainConfig(data=data, pretrained='no').resolve()[0].arch == 'resnet50'  # scratch asked for: the protocol's
    assert TrainConfig(data=data, arch='resnet18').resolve()[1]['why']['arch'] == 'given with --arch'
    # resuming: the arch the run started with (its checkpoints), whatever this machine would choose now
    assert TrainConfig(data=data).resolve({'arch': 'resnet34'})[0].arch == 'resnet34'


def test_machine_choices_resolve_again_on_another_machine(monkeypatch):
    c = TrainConfig(arch='resnet18', pretrained='no')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert c.resolve()[0].precision == 'fp32'
    saved = TrainConfig.from_dict(c.to_dict())  # what config.json keeps: the choice, not this machine's answer
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)
    resolved, record = saved.resolve({'arch': 'resnet18', 'precision': 'fp32'})
    assert resolved.precision == 'bf16' and resolved.channels_last is True and record['precision'] == 'bf16'


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
    found = kaggle / 'myntradataset'
    with pytest.raises(DataError, match='no images/ folder'): TrainConfig(data=found)  # checked before anything is read
    (found / 'images').mkdir()
    (found / 'images' / 'notes.txt').write_text('x')
    with pytest.raises(DataError, match='holds no .jpg file'): TrainConfig(data=found)
    (found / 'images' / '1.jpg').write_bytes(b'x')
    c = TrainConfig(data=found, pretrained='no')
    assert c.data == found and c.resolve()[0].arch == 'resnet50'  # the design's default with real data


def test_config_json_round_trip_and_resume(tmp_path):
    c = TrainConfig(out=tmp_path, name='r', size='64x48', lr='auto', lr2='2e-4:2e-3', holdout=0.1, epochs2=0, seed=7,
                    pretrained='no')
    assert c.lr2 == (2e-4, 2e-3)  # discriminative rates: the body's, the head's
    run = tmp_path / 'r'; run.mkdir()
    (run / 'config.json').write_text(json.dumps({**c.to_dict(), 'versions': {'torch': 'x'}, 'timings_seconds': {}}))
    assert TrainConfig.of_run(run) == c
    assert set(c.to_dict()) == {f.name for f in fields(TrainConfig)}
    with pytest.raises(OptionError, match=f'--resume {tmp_path}'): TrainConfig.of_run(tmp_path)  # no config.json
    (run / 'config.json').write_text('{not json')
    with pytest.raises(OptionError, match='not a run configuration'): TrainConfig.of_run(run)
    (run / 'config.json').write_text('[1, 2]')  # JSON, but not ours
    with pytest.raises(OptionError, match='not a run configuration'): TrainConfig.of_run(run)
    with pytest.raises(OptionError, match='no such folder'): TrainConfig.of_run(tmp_path / 'gone')


def test_older_config_json_names_are_read():
    old = {**TrainConfig(pretrained='no').to_dict(), 'stage2_init': 'scratch', 'all_init': 'new'}
    del old['stage2_body'], old['all_head']
    c = TrainConfig.from_dict(old)
    assert (c.stage2_body, c.all_head) == ('scratch', 'new')


def test_resume_applies_safe_changes_and_refuses_the_others_by_name():
    saved = TrainConfig(pretrained='no', arch='resnet18', epochs2=1)
    c = saved.resumed_with(dict(workers=2, tta='flip', epochs2=3, lr2='1e-3', size=None), started={'stage1'})
    assert (c.workers, c.tta, c.epochs2, c.lr2, c.epochs) == (2, 'flip', 3, 1e-3, 4)  # stage two has not started
    assert saved.resumed_with(dict(size=None, epochs=4), {'stage1'}) == saved  # given but unchanged: nothing to refuse
    with pytest.raises(OptionError) as e: saved.resumed_with(dict(size='64x48', data=None), {'stage1'})
    assert '--size' in str(e.value) and '--data' not in str(e.value) and '--workers' in str(e.value)
    with pytest.raises(OptionError, match='--epochs2'): saved.resumed_with(dict(epochs2=5), {'stage1', 'stage2'})
    with pytest.raises(OptionError, match='--epochs cannot change'): saved.resumed_with(dict(epochs=9), {'stage1'})


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
    assert args['size'] == '64x48' and args['epochs'] == 2 and args['data'] == '/x'  # strings: TrainConfig parses them


def test_given_options_are_those_typed():
    from fashion_fastai.train import given_options
    assert given_options(['--resume', 'r', '--workers', '2', '--epochs2', '10']) == {'workers', 'epochs2'}
    assert given_options(['--resume', 'r']) == set()


def test_channels_last_where_it_was_measured_faster(monkeypatch, tmp_path):
    "auto: mixed precision, and timm models on a CPU (EfficientNet-Lite); not a ResNet in fp32 (not measured)."
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    layout = lambda **kw: TrainConfig(pretrained="no", **kw).resolve()[0].channels_last
    assert layout(arch="tf_efficientnet_lite0") is True
    assert layout(arch="resnet18") is False
    assert layout(arch="resnet18", precision="bf16") is True
    assert layout(arch="tf_efficientnet_lite0", channels_last="no") is False
    assert layout(arch="resnet18", channels_last="yes") is True
    cfg = TrainConfig(arch="resnet18", pretrained="no", channels_last="yes")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # config.json keeps the choice
    with pytest.raises(OptionError, match="--channels-last must be one of auto, yes, no; got 'maybe'"):
        TrainConfig(channels_last="maybe")


def test_defaults_chosen_on_the_holdout(tmp_path):
    "--data runs at 128x96 (the demo at its images' 80x60); the stages train everything from the first epoch."
    (tmp_path / 'styles.csv').write_text('id,articleType,year\n')
    (tmp_path / 'images').mkdir(); (tmp_path / 'images' / '1.jpg').write_bytes(b'x')
    assert TrainConfig(data=tmp_path, arch='resnet18', pretrained='no').input_size == (128, 96)
    assert TrainConfig(arch='resnet18', pretrained='no').input_size == (80, 60)
    assert TrainConfig(data=tmp_path, arch='resnet18', pretrained='no', size='80x60').input_size == (80, 60)
    cfg = lambda **kw: TrainConfig(arch='resnet18', pretrained='no', **kw)
    assert [cfg().head_epochs(s) for s in ('stage1', 'stage2', 'all')] == [0, 0, 1]
    assert [cfg(freeze_epochs=2).head_epochs(s) for s in ('stage1', 'stage2', 'all')] == [2, 2, 2]
