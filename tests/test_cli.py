"""The two command-line programs end to end, as a user runs them: `train` on a tiny demo set, then `predict` on its
output."""
import json, os, re, subprocess, sys
from pathlib import Path

import pytest
import torch

from helpers import cli_env, run_module, tiny_train_args

TINY = tiny_train_args()
TINY_ALL = tiny_train_args(epochs_all=1, lr_all=1e-3)  # with the all-classes model


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    return cli_env(tmp_path_factory.mktemp('env'))


@pytest.fixture(scope='module')
def run(tmp_path_factory, env):
    "One tiny training run shared by the tests below (training is the slow part)."
    out = tmp_path_factory.mktemp('runs')
    p = run_module('fashion_fastai.train', *TINY_ALL, '--out', out, '--name', 'tiny', '--freeze-epochs', '1', env=env)
    return out / 'tiny', p


@pytest.mark.slow
def test_train_writes_run_folder(run):
    run_dir, _ = run
    for f in ['config.json', 'load_report.json', 'results.md', 'metrics.json',
              'history_stage1.csv', 'history_stage2.csv',
              'stage1.pkl', 'stage1.pth', 'stage1.json', 'stage2.pkl', 'stage2.pth', 'stage2.json',
              'all.pkl', 'all.pth', 'all.json', 'history_all.csv', 'per_class_all.csv', 'losses_all.png',
              'per_class_stage1.csv', 'per_class_stage2.csv', 'losses_stage1.png', 'losses_stage2.png',
              'confusion_top20.png', 'per_class_accuracy.png', 'top_losses.png']:
        assert (run_dir / f).is_file() and (run_dir / f).stat().st_size > 0, f
    assert not list(run_dir.glob('.*tmp*')), 'temporary files left behind'


@pytest.mark.slow
def test_config_and_report_say_what_happened(run):
    run_dir, _ = run
    cfg = json.loads((run_dir / 'config.json').read_text())
    assert cfg['arch'] == 'resnet18' and cfg['size'] == [32, 24] and cfg['weights_info']['pretrained'] is False
    assert cfg['versions']['fastai'].startswith('2.8')
    md = (run_dir / 'results.md').read_text()
    assert 'Trained from scratch' in md and 'Perfume and Body Mist' in md and 'ceiling' in md.lower()
    # the default holdout, settled on the demo's four even years (a quarter each, none near a tenth): a random share
    assert cfg['holdout_by'] == ['auto'] and list(cfg['holdout_rows']) == ['random'] and 'rule random (auto)' in md
    assert 'Holdout (--holdout-by auto): random ' in run[1].stdout
    for png in ('confusion_top20', 'per_class_accuracy', 'top_losses', 'losses_stage1', 'losses_stage2'):
        assert f'![{png}]({png}.png)' in md, png
    m = json.loads((run_dir / 'metrics.json').read_text())
    s1, s2 = m['stages']['stage1'], m['stages']['stage2']
    assert 0 <= s1['all']['micro_top1'] <= s1['all']['micro_top5'] <= 1
    assert s1['n_unseen_test_images'] > 0 and s1['ceiling_top1'] < 1   # Perfume and Body Mist: test-only
    assert s2['n_classes'] >= 6
    rep = json.loads((run_dir / 'load_report.json').read_text())
    assert len(rep['missing_image']) >= 1 and len(rep['recovered_commas']) >= 3 and len(rep['no_year']) >= 1


@pytest.mark.slow
def test_history_has_both_phases(run):
    import pandas as pd
    h = pd.read_csv(run[0] / 'history_stage1.csv')
    assert list(h['phase']) == ['head', 'all'] and {'train_loss', 'valid_loss', 'accuracy', 'top5'} <= set(h.columns)
    # timed, each pass apart (NaN fails): a fast machine may take under the history's hundredth of a second for a pass
    assert (h['train_seconds'] >= 0).all() and (h['valid_seconds'] >= 0).all()


@pytest.mark.slow
def test_time_by_model_and_phase_in_log_config_and_report(run):
    "Where a run's time goes: each model's epochs by phase, its evaluation, calibration and export."
    import pandas as pd
    from fashion_fastai.training.stages import EPOCH_SECONDS_DIGITS
    run_dir, p = run
    phases = json.loads((run_dir / 'metrics.json').read_text())['config']['phase_seconds']
    assert phases == json.loads((run_dir / 'config.json').read_text())['phase_seconds']
    assert set(phases) == {'stage1', 'stage2', 'all', 'joined'}  # the models, then choosing the answer for any photo
    assert set(phases.pop('joined')) == {'join'}
    keys = {'head_epochs', 'whole_network_epochs', 'validation_passes', 'evaluation', 'calibration', 'export'}
    for model, ph in phases.items():
        assert set(ph) == keys and all(v >= 0 for v in ph.values()), model
        h = pd.read_csv(run_dir / f'history_{model}.csv')
        # each total is the sum of its history rows, both in hundredths: any order of summing a few dozen of them is
        # within 1e-9 of a whole hundredth, far from the 0.005 where round(_, 2) could go either way: they agree exactly
        assert 'head' in set(h['phase'])  # --freeze-epochs 1
        summed = lambda seconds: round(seconds.sum(), EPOCH_SECONDS_DIGITS)
        assert ph['head_epochs'] == summed(h.loc[h['phase'] == 'head', 'train_seconds'])
        assert ph['whole_network_epochs'] == summed(h.loc[h['phase'] == 'all', 'train_seconds'])
        assert ph['validation_passes'] == summed(h['valid_seconds'])
        assert f'{model}: time, minutes: head epochs' in p.stdout
    assert '| time by phase, minutes | stage1: head epochs' in (run_dir / 'results.md').read_text()


@pytest.mark.slow
def test_plain_epoch_lines_when_not_a_tty(run):
    out = run[1].stdout
    assert '[stage1 head] epoch 0' in out and '[stage2 all] epoch 0' in out
    assert '\r' not in out and '█' not in out       # no progress bars in logs
    assert 'Run folder:' in out and 'python -m fashion_fastai.predict' in out


def some_test_images(run_dir, n=3):
    cfg = json.loads((run_dir / 'config.json').read_text())
    return sorted((Path(cfg['data_dir']) / 'images').glob('*.jpg'))[:n]


@pytest.mark.slow
def test_exported_learner_predicts_bare_paths_and_matches_weights_only(run):
    from fastai.vision.all import load_learner
    from fashion_fastai.inference.predictors import WeightsOnlyModel, PickledLearner
    run_dir, _ = run
    imgs = some_test_images(run_dir)
    learn = load_learner(run_dir / 'stage1.pkl', cpu=True)
    label, idx, probs = learn.predict(str(imgs[0]))
    assert label in learn.dls.vocab and probs.shape == (len(learn.dls.vocab),)
    w = WeightsOnlyModel(run_dir / 'stage1.json')
    assert w.vocab == list(learn.dls.vocab)
    seen = []  # the model gets plain tensors, as in fastai's Learner: a TensorImage would run Python around every layer
    w.model.register_forward_pre_hook(lambda m, args: seen.append(type(args[0])))
    assert torch.allclose(w.probs(imgs), PickledLearner(run_dir / 'stage1.pkl').probs(imgs), atol=1e-5)
    assert seen == [torch.Tensor]


@pytest.mark.slow
def test_predict_cli_skips_bad_files_and_reports_json(run, env, tmp_path):
    run_dir, _ = run
    imgs = some_test_images(run_dir, 2)
    bad = tmp_path / 'notes.jpg'; bad.write_text('not an image')
    p = run_module('fashion_fastai.predict', run_dir, imgs[0], bad, imgs[1], '--json', '--topk', '3', env=env)
    res = json.loads(p.stdout)
    assert [r['path'] for r in res['predictions']] == [str(imgs[0]), str(imgs[1])]
    assert all(len(r['top']) == 3 and r['top'][0]['prob'] >= r['top'][1]['prob'] for r in res['predictions'])
    assert res['skipped'][0]['path'] == str(bad) and 'skipped' in p.stderr
    folder = run_module('fashion_fastai.predict', run_dir / 'stage2.json', imgs[0].parent, env=env)
    assert folder.stdout.count('\n') == len(list(imgs[0].parent.glob('*.jpg')))


def demo_image(run_dir, part):
    "One demo image (file, class) of the top or the rare part, from the run's own data."
    import pandas as pd
    cfg = json.loads((run_dir / 'config.json').read_text())
    styles = pd.read_csv(Path(cfg['data_dir']) / 'styles.csv', on_bad_lines='skip')
    styles = styles[styles['articleType'].isin(cfg['top_classes']) == (part == 'top')]
    row = next(r for r in styles.itertuples() if (Path(cfg['data_dir']) / 'images' / f'{r.id}.jpg').is_file())
    return Path(cfg['data_dir']) / 'images' / f'{row.id}.jpg', row.articleType


@pytest.mark.slow
def test_predict_answers_among_every_article_type_by_default(run, env):
    "A photo of a top class and one of a rare class: the run folder's default model ranks both among all classes."
    run_dir, _ = run
    vocab = json.loads((run_dir / 'all.json').read_text())['vocab']
    stages = {s: json.loads((run_dir / f'{s}.json').read_text())['vocab'] for s in ('stage1', 'stage2')}
    assert sorted(vocab) == vocab and set(vocab) == set(stages['stage1']) | set(stages['stage2'])
    for part in ('top', 'rare'):
        image, article = demo_image(run_dir, part)
        assert article in vocab
        p = run_module('fashion_fastai.predict', run_dir, image, '--json', '--topk', str(len(vocab)), env=env)
        top = json.loads(p.stdout)['predictions'][0]['top']
        assert [t['class'] for t in top if t['class'] == article] == [article]  # ranked among all classes
        assert abs(sum(t['prob'] for t in top) - 1) < 1e-3 * len(vocab)  # rounded to 4 decimals each
        assert 'no all-classes model' not in p.stderr
    p = run_module('fashion_fastai.predict', run_dir, image, '--min-prob', '1', '--json', env=env)
    assert json.loads(p.stdout)['predictions'][0]['uncertain'] is True  # no answer is certain beyond probability 1
    table = run_module('fashion_fastai.predict', run_dir, image, '--min-prob', '1', env=env)
    assert '(uncertain)' in table.stdout
    md = (run_dir / 'results.md').read_text()
    assert '## all' in md and 'By part' in md and 'top part' in md and 'rare part' in md
    m = json.loads((run_dir / 'metrics.json').read_text())['stages']['all']
    assert m['n_test'] == m['parts']['top']['n_test'] + m['parts']['rare']['n_test']


@pytest.mark.slow
def test_predict_prefers_weights_only_and_warns_on_lone_pickle(run, tmp_path):
    import shutil
    from fashion_fastai.inference.locate import find_model
    run_dir, _ = run
    assert find_model(run_dir / 'stage1.pkl') == (run_dir / 'stage1.json', 'weights')
    assert find_model(run_dir / 'stage1.pkl', trust_pickle=True) == (run_dir / 'stage1.pkl', 'pickle')
    lone = tmp_path / 'stage1.pkl'; shutil.copy(run_dir / 'stage1.pkl', lone)
    with pytest.warns(UserWarning, match='runs code'): assert find_model(lone)[1] == 'pickle'
    with pytest.raises(FileNotFoundError, match='not found'): find_model(tmp_path / 'nope.pkl')


def test_cli_errors_are_one_line_before_any_work(env, tmp_path):
    "A bad option or an unwritable output folder stops the CLI at once, with a one-line message and no traceback."
    blocker = tmp_path / 'file'; blocker.write_text('x')
    p = run_module('fashion_fastai.train', *TINY, '--out', blocker / 'runs', env=env, check=False)
    assert p.returncode == 2 and 'train: error: Cannot write the run folder' in p.stderr
    assert 'Traceback' not in p.stderr and 'Loaded' not in p.stdout
    p = run_module('fashion_fastai.train', *TINY, '--weights', blocker, '--out', tmp_path / 'runs', env=env,
                   check=False)
    assert p.returncode == 2 and f'train: error: --weights {blocker} is not a readable PyTorch state_dict' in p.stderr
    assert 'Traceback' not in p.stderr and 'Loaded' not in p.stdout  # checked before the data is read
    for resume, why in [(tmp_path / 'gone', 'no such folder'), (tmp_path, 'no config.json')]:
        p = run_module('fashion_fastai.train', '--resume', resume, env=env, check=False)
        assert (p.returncode == 2 and f'train: error: --resume {resume}: {why}' in p.stderr
                and 'Traceback' not in p.stderr)
    p = run_module('fashion_fastai.predict', tmp_path / 'missing.json', blocker, env=env, check=False)
    assert p.returncode == 2 and 'predict: error:' in p.stderr and 'Traceback' not in p.stderr


HELP_MODULES = ['fashion_fastai.train', 'fashion_fastai.predict', 'fashion_fastai.app', 'fashion_fastai.prepare',
                'fashion_fastai.export', 'fashion_fastai.tag', 'fashion_fastai.index']
# Each module's `--help` run as `python -m` runs it (`runpy`, as __main__), all in one fresh process: importing torch
# and fastai costs half a minute, and whatever any import prints still reaches this process's stderr.
HELP_RUNNER = """
import contextlib, io, json, runpy, sys, warnings
# runpy, for the 2nd module on
warnings.filterwarnings('ignore', message='.*found in sys.modules', category=RuntimeWarning)
helps = {}
for mod in sys.argv[1:]:
    sys.argv, out = [mod, '--help'], io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        runpy.run_module(mod, run_name='__main__', alter_sys=True)  # alter_sys: call_parse runs only in __main__
    helps[mod] = out.getvalue()
print(json.dumps(helps))
"""


@pytest.fixture(scope='module')
def helps(env):
    p = subprocess.run([sys.executable, '-c', HELP_RUNNER, *HELP_MODULES], capture_output=True, text=True, env=env,
                       timeout=900)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), p.stderr


@pytest.mark.parametrize('mod', HELP_MODULES)
def test_help_reads_well(mod, helps):
    "`--help`: the command as typed, every option with one line of meaning, and nothing else on the terminal."
    text, stderr = helps[0][mod], helps[1]
    assert text.startswith(f'usage: python -m {mod} ['), text[:200]
    lines = [l for l in text.split('options:')[1].splitlines() if l.strip().startswith('--')]
    assert len(lines) >= 2
    for line in lines:  # option, its type, then its meaning on the same line
        meaning = re.sub(r'^\s*--[\w-]+(\s+\(\w+\))?', '', line).strip()
        assert len(meaning) > 10, f'{mod}: {line.strip()!r} has no description'
    assert stderr == '', f'--help printed warnings:\n{stderr}'


@pytest.mark.slow
def test_progress_bars_in_a_terminal(env, tmp_path):
    "In a terminal (a pseudo-terminal here) the user sees fastprogress's bars and fastai's epoch table, not log lines."
    import pty
    master, slave = pty.openpty()
    cmd = [sys.executable, '-m', 'fashion_fastai.train', *TINY, '--epochs2', '0', '--out', str(tmp_path),
           '--name', 'tty']
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try: data = os.read(master, 65536)
        except OSError: break  # EIO: the child has closed the terminal
        if not data: break
        chunks.append(data)
    os.close(master)
    out = b''.join(chunks).decode(errors='replace')
    assert p.wait(900) == 0, out
    assert '█' in out and 'train_loss' in out, out[-3000:]
    assert '[stage1 all]' not in out, 'plain epoch lines in a terminal'
    assert 'Run folder:' in out
