"""A real training process killed with SIGKILL after its first checkpoint, then `--resume`d to the end."""
from __future__ import annotations

import json, subprocess, sys

import pandas as pd
import pytest

from helpers import cli_env, sigkill_when, tiny_train_args

ARGS = tiny_train_args(epochs=2, freeze_epochs=1, epochs_all=1)


@pytest.mark.slow
@pytest.mark.parametrize('extra', [[], ['--attributes', 'masterCategory']], ids=['articleType', 'with-attributes'])
def test_sigkill_then_resume(tmp_path, extra):
    env = cli_env(tmp_path)
    run_dir = tmp_path / 'runs' / 'killed'
    state_file = run_dir / 'checkpoints' / 'stage1.json'
    cmd = [sys.executable, '-m', 'fashion_fastai.train', *ARGS, *extra, '--out', tmp_path / 'runs', '--name', 'killed']
    first = sigkill_when(cmd, state_file.exists, 'its first checkpoint', env)
    killed_at = json.loads(state_file.read_text())
    assert (killed_at['phase'], killed_at['epoch']) == ('head', 0) and not (run_dir / 'results.md').exists(), first

    refused = subprocess.run([sys.executable, '-m', 'fashion_fastai.train', '--resume', str(run_dir), '--size', '64x48',
                              '--epochs', '5'], env=env, capture_output=True, text=True, timeout=900)
    assert refused.returncode == 2 and '--size' in refused.stderr and '--epochs' in refused.stderr, refused.stderr
    # refused before training
    assert 'Traceback' not in refused.stderr and not (run_dir / 'history_stage1.csv').exists()

    # options that leave what is trained as it was: how it computes, and the epochs of a model not yet started
    p = subprocess.run([sys.executable, '-m', 'fashion_fastai.train', '--resume', str(run_dir), '--workers', '0',
                        '--epochs-all', '2'], env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    assert 'stage1: resuming after head epoch 0' in p.stdout and 'changing epochs_all' in p.stdout
    assert list(pd.read_csv(run_dir / 'history_all.csv')['phase']) == ['head', 'all', 'all']  # --epochs-all 2 applied
    h1, h2 = pd.read_csv(run_dir / 'history_stage1.csv'), pd.read_csv(run_dir / 'history_stage2.csv')
    assert list(h1['phase']) == ['head', 'all', 'all'] and list(h1['epoch']) == [0, 1, 2]  # all 1 + 2 epochs
    assert list(h2['phase']) == ['head', 'all'] and h1['train_loss'].notna().all()
    md = (run_dir / 'results.md').read_text()
    assert 'stage1' in md and 'stage2' in md and 'since the last --resume' in md
    m = json.loads((run_dir / 'metrics.json').read_text())['stages']
    assert 0 <= m['stage1']['all']['micro_top1'] <= 1 and 0 <= m['stage2']['all']['micro_top1'] <= 1
    cfg = json.loads((run_dir / 'config.json').read_text())
    assert cfg['epochs'] == 2 and cfg['epochs_all'] == 2 and cfg['resumed_by'] and '--resume' in cfg['resumed_by'][0]
    # this machine's answers, apart
    assert cfg['resolved']['arch'] == 'resnet18' and cfg['resolved']['precision'] == 'fp32'
    for s in ('stage1', 'stage2', 'all'):
        assert json.loads((run_dir / 'checkpoints' / f'{s}.json').read_text())['done'] is True
        assert (run_dir / f'{s}.json').is_file() and (run_dir / f'{s}.pth').is_file()
    assert not list(run_dir.rglob('.*tmp*')), 'temporary files left behind'

    again = subprocess.run([sys.executable, '-m', 'fashion_fastai.train', '--resume', str(run_dir)], env=env,
                           capture_output=True, text=True, timeout=900)  # a finished run: reloads, trains nothing
    assert again.returncode == 0 and all(f'{s}: already trained' in again.stdout for s in ('stage1', 'stage2', 'all'))
    assert not any(f'[{s} ' in again.stdout for s in ('stage1', 'stage2', 'all'))  # no epoch trained again
    assert json.loads((run_dir / 'metrics.json').read_text())['stages'] == m  # same weights, same evaluation
    if extra: assert set(json.loads((run_dir / 'metrics.json').read_text())['attributes']['all']) == {'masterCategory'}
