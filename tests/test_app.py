"""The web demo (`fashion_fastai.app`): its prediction function, its errors, and the real page in a headless browser.

The models are untrained (random weights, exported like a run's): their answers are meaningless but deterministic, which is
all that is needed to check that the page shows what `predict` answers for the same file.
"""
import os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest
from PIL import Image

from helpers import SMALL, export_untrained

CHROMIUM = Path('/usr/bin/chromium')


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, tiny_data, tiny_dls):
    "A run folder with both stages exported from untrained tiny learners (3 top classes, 1 rare class)."
    from fashion_fastai.data import part_dataloaders
    out = tmp_path_factory.mktemp('run')
    rare = part_dataloaders(tiny_data, 'rare', size=SMALL, bs=8, num_workers=0, augment=False, seed=0)
    for name, dls in (('stage1', tiny_dls), ('stage2', rare)):
        export_untrained(out, dls, name)
    return out


@pytest.fixture(scope='module')
def photo(tiny_dir):
    return sorted((tiny_dir / 'images').glob('*.jpg'))[0]


def expected(run_dir, stage, path, topk=5):
    "What `predict` answers for `path`: its top-k as {class: prob}, best first."
    from fashion_fastai.inference import load_model, predict_paths
    (res,), skipped = predict_paths(load_model(run_dir, stage), [path], topk)
    assert not skipped
    return {t['class']: t['prob'] for t in res['top']}


def test_classify_is_predicts_answer(run_dir, photo, tmp_path):
    from fashion_fastai.app import classify, load_predictors
    preds = load_predictors(run_dir, 'both')
    assert [len(p.vocab) for p in preds.values()] == [3, 1] and 'Stage one' in list(preds)[0]
    assert classify(preds, photo) == [expected(run_dir, 'stage1', photo), expected(run_dir, 'stage2', photo)]
    assert list(classify(preds, photo)[0]) == list(expected(run_dir, 'stage1', photo))  # same order too
    assert classify(preds, None) == [None, None]                                          # image cleared
    assert list(load_predictors(run_dir, 'stage2')) == list(preds)[1:]
    assert list(load_predictors(run_dir / 'stage1.json', 'both')) == list(preds)[:1]    # a file: its own stage
    bad = tmp_path / 'bad.jpg'; bad.write_bytes(b'not an image')
    with pytest.raises(ValueError, match='Not a readable image'): classify(preds, bad)


def test_both_is_every_stage_the_run_has(run_dir, tmp_path):
    from fashion_fastai.app import load_predictors
    one = tmp_path / 'one'; one.mkdir()
    for f in ('stage1.json', 'stage1.pth'): shutil.copy(run_dir / f, one / f)   # as after --epochs2 0
    assert len(load_predictors(one, 'both')) == 1


def test_the_page_shows_the_all_classes_model_by_default(run_dir, tiny_data, tmp_path):
    "As predict: one answer among every article type when the run has that model; else stage one, with a note."
    from fashion_fastai.app import load_predictors
    from fashion_fastai.data import ALL, part_dataloaders
    with pytest.warns(UserWarning, match='no all-classes model'):
        assert [t.split(':')[0] for t in load_predictors(run_dir)] == ['Stage one']
    both = tmp_path / 'both'; shutil.copytree(run_dir, both)
    export_untrained(both, part_dataloaders(tiny_data, ALL, size=SMALL, bs=8, num_workers=0, augment=False), ALL)
    shown = load_predictors(both)
    assert list(shown) == ['Every article type (4 classes)'] and len(load_predictors(both, 'both')) == 2


def test_page_builds_without_launching_and_keeps_the_uploaded_file(run_dir, tmp_path):
    import gradio as gr
    from gradio.data_classes import FileData
    from fashion_fastai.app import build_app, load_predictors
    demo = build_app(load_predictors(run_dir, 'both'))
    assert isinstance(demo, gr.Blocks) and os.environ['GRADIO_ANALYTICS_ENABLED'] == 'False'
    labels = [c for c in demo.blocks.values() if isinstance(c, gr.Label)]
    image, = [c for c in demo.blocks.values() if isinstance(c, gr.Image)]
    assert len(labels) == 2 and image.type == 'filepath'
    # a greyscale JPEG reaches the model as the same file, not re-encoded in RGB by Gradio (which would change its pixels)
    grey = tmp_path / 'grey.jpg'; Image.new('L', (60, 80), 90).save(grey)
    assert image.preprocess(FileData(path=str(grey), orig_name='grey.jpg')) == str(grey)


def app_error(capsys, **options) -> str:
    "`app` run as the CLI runs it, up to serving: one line `app: error: ...`, exit status 2; that line."
    from fashion_fastai.app import main
    with pytest.raises(SystemExit) as e: main.__wrapped__(**options)   # the function behind call_parse's argv parsing
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith('app: error: '), err
    return err[0]


@pytest.mark.parametrize('kind', ['missing', 'stage', 'not_ours', 'not_json', 'no_model'])
def test_user_errors_exit_2_with_one_line(run_dir, tmp_path, capsys, kind):
    "A model that is missing or not what its name says, and a bad --stage: one line naming it, before any page is built."
    (tmp_path / 'config.json').write_text('{"arch": "resnet18"}')  # a run's config.json handed as the model
    (tmp_path / 'stage1.json').write_text('{"arch": ')              # cut short
    (tmp_path / 'empty').mkdir()
    model, stage, message = {'missing': (tmp_path / 'nope', 'both', 'not found'),
                             'stage': (run_dir, 'stage3', '--stage must be'),
                             'not_ours': (tmp_path / 'config.json', 'auto', 'not a weights-only model'),
                             'not_json': (tmp_path / 'stage1.json', 'auto', 'not a readable JSON'),
                             'no_model': (tmp_path / 'empty', 'auto', 'holds no model')}[kind]
    line = app_error(capsys, model=str(model), stage=stage)
    assert message in line and (kind == 'stage' or str(model) in line)


@pytest.mark.parametrize('port', [0, 70000])
def test_a_port_that_is_no_port(run_dir, capsys, monkeypatch, port):
    import fashion_fastai.app as app
    monkeypatch.setattr(app, 'load_predictors', lambda *a, **k: pytest.fail('the models were loaded'))
    assert f'--port must be a port number from 1 to 65535, got {port}' in app_error(capsys, model=str(run_dir), port=port)


def test_a_port_already_served(run_dir, capsys):
    "Another program on the port: one line naming it and --port, not Gradio's traceback."
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0)); busy.listen()
        port = busy.getsockname()[1]
        line = app_error(capsys, model=str(run_dir), port=port, stage='stage1')
    assert f'cannot serve on 127.0.0.1:{port}' in line and 'another --port' in line


def test_device_cuda_without_a_gpu(run_dir, capsys, monkeypatch):
    import torch
    import fashion_fastai.app as app
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(app, 'load_predictors', lambda *a, **k: pytest.fail('the models were loaded'))
    assert '--device cuda' in app_error(capsys, model=str(run_dir), device='cuda')


def test_help_documents_every_option():
    from fastcore.script import anno_parser
    from fashion_fastai.app import main
    from fashion_fastai.models import NAMES, spec
    text = ' '.join(anno_parser(main.__wrapped__).format_help().split())  # argparse wraps lines anywhere
    for opt in ('--port', '--stage', '--host', '--trust-pickle', '--device'): assert opt in text
    assert all(f"{n} = {spec(n).describe('N')}" in text for n in NAMES) and 'run folder' in text
    assert 'Stage one: the N most frequent article types' in text  # what stage one is, in words, from the table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture
def served(run_dir, tmp_path, request):
    "`python -m fashion_fastai.app RUN --stage both` on a free port; yields its URL once it answers HTTP; always stopped."
    port = free_port()
    env = {**os.environ, 'GRADIO_TEMP_DIR': str(tmp_path / 'gradio'), 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}
    log = (tmp_path / 'app.log').open('w')
    proc = subprocess.Popen([sys.executable, '-m', 'fashion_fastai.app', str(run_dir), '--port', str(port), '--stage', 'both'],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    def stop():
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()
    request.addfinalizer(stop)
    url, deadline = f'http://127.0.0.1:{port}/', time.monotonic() + 300   # imports take long on a busy 2-core machine
    while True:
        if proc.poll() is not None: pytest.fail(f"the app exited ({proc.returncode}):\n{(tmp_path / 'app.log').read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return url
        except OSError: pass
        if time.monotonic() > deadline: pytest.fail(f"the app did not answer in 300 s:\n{(tmp_path / 'app.log').read_text()}")
        time.sleep(0.5)


@pytest.fixture
def playwright_api():
    "playwright's sync API; skips (before the app is started) only where no browser can run."
    if not CHROMIUM.exists(): pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (scripts/setup.sh does, as root)")
    try: from playwright import sync_api
    except ImportError as e: pytest.skip(f"playwright not importable ({e}): pip install -e '.[test]'")
    return sync_api


def test_page_in_a_browser_shows_predicts_top1(playwright_api, served, run_dir, photo):
    sync_playwright, expect = playwright_api.sync_playwright, playwright_api.expect
    want = [next(iter(expected(run_dir, s, photo))) for s in ('stage1', 'stage2')]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'])
        try:
            page = browser.new_page()
            page.goto(served)
            page.locator('input[type=file]').first.set_input_files(str(photo))
            expect(page.get_by_test_id('label-output-value')).to_have_text(want, timeout=60_000)
        finally: browser.close()
