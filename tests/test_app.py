"""The web demo (`fashion_fastai.app`): its prediction function, its errors, and the real page in a headless browser.

The models are untrained (random weights, exported like a run's): their answers are meaningless but deterministic, which
is all that is needed to check that the page shows what `predict` answers for the same file.  The similar products'
gallery searches an index of the tiny data set's own photos, so that a photo's nearest product is itself.
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
    from fashion_fastai.data.styles import part_dataloaders
    out = tmp_path_factory.mktemp('run')
    rare = part_dataloaders(tiny_data, 'rare', size=SMALL, bs=8, num_workers=0, augment=False, seed=0)
    for name, dls in (('stage1', tiny_dls), ('stage2', rare)):
        export_untrained(out, dls, name)
    return out


@pytest.fixture(scope='module')
def photo(tiny_dir):
    return sorted((tiny_dir / 'images').glob('*.jpg'))[0]


@pytest.fixture(scope='module')
def indexes(run_dir, tiny_dir, tmp_path_factory):
    "{stage: index file} of the tiny data set's photos, embedded by each stage of `run_dir`."
    from fashion_fastai.catalogue.index import build
    out = tmp_path_factory.mktemp('indexes')
    for stage in ('stage1', 'stage2'):
        build(run_dir / f'{stage}.json', [tiny_dir / 'images'], log=lambda *a: None)[0].save(out / f'{stage}.npz')
    return {stage: out / f'{stage}.npz' for stage in ('stage1', 'stage2')}


def expected_similar(run_dir, stage, index, path, k):
    """What `predict --similar k` adds for `path`: the index's neighbours of its embedding by the model that made the
    index."""
    from fashion_fastai.catalogue.index import Index, model_identity
    from fashion_fastai.inference.predictors import WeightsOnlyModel
    embeddings, _ = WeightsOnlyModel(run_dir / f'{stage}.json').embed([path])
    return Index.load(index, model_identity(run_dir / f'{stage}.json')).neighbours(embeddings.numpy(), k)[0]


def expected(run_dir, stage, path, topk=5):
    "What `predict` answers for `path`: its top-k as {class: prob}, best first."
    from fashion_fastai.inference.answers import predict_paths
    from fashion_fastai.inference.load import load_model
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


@pytest.mark.parametrize('stage', ['stage1', 'stage2'])
def test_gallery_is_predicts_similar_products(run_dir, indexes, photo, stage):
    "With --stage both, the first shown model that made the index embeds the photo; the gallery comes after the labels."
    from fashion_fastai.app import classify, gallery, load_page, pixels
    preds, catalogue = load_page(run_dir, 'both', similar=3, index=str(indexes[stage]))
    assert catalogue.model is list(preds.values())[('stage1', 'stage2').index(stage)]
    want = expected_similar(run_dir, stage, indexes[stage], photo, 3)
    assert catalogue.neighbours(photo) == want and len(want) == 3
    assert classify(preds, photo, catalogue=catalogue) == [*classify(preds, photo), gallery(want)]
    assert gallery(want)[0] == (str(photo), f'{photo.stem} Belts 1.00')  # the photo is in the catalogue: itself first
    (first, caption), *_ = pixels(gallery(want))
    assert first.mode == 'RGB' and first == Image.open(photo).convert('RGB') and caption == gallery(want)[0][1]
    assert classify(preds, None, catalogue=catalogue) == [None] * 3
    assert load_page(run_dir, 'both')[1] is None


def test_both_is_every_stage_the_run_has(run_dir, tmp_path):
    from fashion_fastai.app import load_predictors
    one = tmp_path / 'one'; one.mkdir()
    for f in ('stage1.json', 'stage1.pth'): shutil.copy(run_dir / f, one / f)   # as after --epochs2 0
    assert len(load_predictors(one, 'both')) == 1


def test_the_page_shows_the_all_classes_model_by_default(run_dir, tiny_data, tmp_path):
    "As predict: one answer among every article type when the run has that model; else stage one, with a note."
    from fashion_fastai.app import load_predictors
    from fashion_fastai.data.styles import ALL, part_dataloaders
    with pytest.warns(UserWarning, match='no all-classes model'):
        assert [t.split(':')[0] for t in load_predictors(run_dir)] == ['Stage one']
    both = tmp_path / 'both'; shutil.copytree(run_dir, both)
    export_untrained(both, part_dataloaders(tiny_data, ALL, size=SMALL, bs=8, num_workers=0, augment=False), ALL)
    shown = load_predictors(both)
    assert list(shown) == ['Every article type (4 classes)'] and len(load_predictors(both, 'both')) == 2


def test_page_builds_without_launching_and_keeps_the_uploaded_file(run_dir, indexes, tmp_path):
    import gradio as gr
    from gradio.data_classes import FileData
    from fashion_fastai.app import build_app, load_page, load_predictors, pixels
    demo = build_app(load_predictors(run_dir, 'both'))
    assert isinstance(demo, gr.Blocks) and os.environ['GRADIO_ANALYTICS_ENABLED'] == 'False'
    galleries = lambda demo: [c for c in demo.blocks.values() if isinstance(c, gr.Gallery)]
    assert not galleries(demo)                                                            # no --similar, no gallery
    predictors, catalogue = load_page(run_dir, 'both', similar=3, index=str(indexes['stage1']))
    assert len(galleries(build_app(predictors, catalogue=catalogue))) == 1
    with pytest.raises(ValueError, match='cannot be read any more'):
        pixels([(tmp_path / 'gone.jpg', 'gone since the start')])
    labels = [c for c in demo.blocks.values() if isinstance(c, gr.Label)]
    image, = [c for c in demo.blocks.values() if isinstance(c, gr.Image)]
    assert len(labels) == 2 and image.type == 'filepath'
    # a greyscale JPEG reaches the model as the same file, not re-encoded in RGB by Gradio
    # (which would change its pixels)
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
    """A model that is missing or not what its name says, and a bad --stage: one line naming it, before any page is
    built."""
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


@pytest.mark.parametrize('kind', ['no_index', 'no_similar', 'pickle', 'other_model', 'photos_gone'])
def test_similar_option_errors(run_dir, indexes, tiny_dir, tiny_dls, tmp_path, capsys, monkeypatch, kind):
    "predict's checks, and a catalogue whose photos the page cannot show: one line, before any model is loaded."
    import fashion_fastai.app as app
    from fashion_fastai.catalogue.index import build
    index = str(indexes['stage1'])
    if kind == 'other_model':
        other = export_untrained(tmp_path / 'other', tiny_dls, seed=1)
        index = str(tmp_path / 'other.npz')
        build(other, [tiny_dir / 'images'], log=lambda *a: None)[0].save(index)
    if kind == 'photos_gone':
        shop = tmp_path / 'shop'; shop.mkdir()
        for f in sorted((tiny_dir / 'images').glob('*.jpg'))[:2]: shutil.copy(f, shop / f.name)
        index = str(tmp_path / 'shop.npz')
        build(run_dir / 'stage1.json', [shop], log=lambda *a: None)[0].save(index)
        sorted(shop.iterdir())[0].unlink()
    monkeypatch.setattr(app, 'load_model_file', lambda *a, **k: pytest.fail('a model was loaded'))
    options, message = {
        'no_index': (dict(similar=2), '--similar K needs K >= 1 and --index FILE'),
        'no_similar': (dict(index=index), '--similar K needs K >= 1 and --index FILE'),
        'pickle': (dict(similar=2, index=index, trust_pickle=True), 'weights-only PyTorch model'),
        'other_model': (dict(similar=2, index=index), f'was built with another model ({tmp_path}/other/stage1.json)'),
        'photos_gone': (dict(similar=2, index=index), '1 of its 2 photos are not there to show'),
    }[kind]
    line = app_error(capsys, model=str(run_dir), stage='stage1', **options)
    assert message in line and (kind != 'other_model' or str(run_dir / 'stage1.json') in line)


@pytest.mark.parametrize('port', [0, 70000])
def test_a_port_that_is_no_port(run_dir, capsys, monkeypatch, port):
    import fashion_fastai.app as app
    monkeypatch.setattr(app, 'load_predictors', lambda *a, **k: pytest.fail('the models were loaded'))
    assert (f'--port must be a port number from 1 to 65535, got {port}'
            in app_error(capsys, model=str(run_dir), port=port))


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
    from fashion_fastai.core.models import NAMES, spec
    text = ' '.join(anno_parser(main.__wrapped__).format_help().split())  # argparse wraps lines anywhere
    for opt in ('--port', '--stage', '--host', '--trust-pickle', '--device', '--engine', '--similar', '--index'):
        assert opt in text
    assert all(f"{n} = {spec(n).describe('N')}" in text for n in NAMES) and 'run folder' in text
    assert 'Stage one: the N most frequent article types' in text  # what stage one is, in words, from the table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def serve(request, tmp_path, *args) -> str:
    """`python -m fashion_fastai.app *args` on a free port; its URL once it answers HTTP; stopped after the test.  Its
    temp and working folders are the test's own, so that the catalogue's photos lie outside both: the only folders
    Gradio serves files from unless told otherwise, which the app must not need."""
    port = free_port()
    env = {**os.environ, 'GRADIO_TEMP_DIR': str(tmp_path / 'gradio'), 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1',
           'TMPDIR': str(tmp_path / 'tmp')}
    (tmp_path / 'tmp').mkdir()
    log = (tmp_path / 'app.log').open('w')
    proc = subprocess.Popen([sys.executable, '-m', 'fashion_fastai.app', *map(str, args), '--port', str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    def stop():
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()
    request.addfinalizer(stop)
    url, deadline = f'http://127.0.0.1:{port}/', time.monotonic() + 300   # imports take long on a busy 2-core machine
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the app exited ({proc.returncode}):\n{(tmp_path / 'app.log').read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return url
        except OSError: pass
        if time.monotonic() > deadline:
            pytest.fail(f"the app did not answer in 300 s:\n{(tmp_path / 'app.log').read_text()}")
        time.sleep(0.5)


@pytest.fixture
def served(run_dir, tmp_path, request):
    "`python -m fashion_fastai.app RUN --stage both`, served (see `serve`)."
    return serve(request, tmp_path, run_dir, '--stage', 'both')


@pytest.fixture
def served_similar(run_dir, indexes, tmp_path, request):
    "`python -m fashion_fastai.app RUN --stage both --similar 3 --index <stage two's index>`, served (see `serve`)."
    return serve(request, tmp_path, run_dir, '--stage', 'both', '--similar', 3, '--index', indexes['stage2'])


@pytest.fixture
def playwright_api():
    "playwright's sync API; skips (before the app is started) only where no browser can run."
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (scripts/setup.sh does, as root)")
    try: from playwright import sync_api
    except ImportError as e: pytest.skip(f"playwright not importable ({e}): pip install -e '.[test]'")
    return sync_api


def upload(playwright_api, url, photo, check) -> None:
    "Open the page at `url` in headless Chromium, upload `photo` and run `check(page, expect)`."
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'])
        try:
            page = browser.new_page()
            page.goto(url)
            page.locator('input[type=file]').first.set_input_files(str(photo))
            check(page, playwright_api.expect)
        finally: browser.close()


def test_page_in_a_browser_shows_predicts_top1(playwright_api, served, run_dir, photo):
    want = [next(iter(expected(run_dir, s, photo))) for s in ('stage1', 'stage2')]
    upload(playwright_api, served, photo,
           lambda page, expect: expect(page.get_by_test_id('label-output-value')).to_have_text(want, timeout=60_000))


def test_page_in_a_browser_shows_similar_products(playwright_api, served_similar, run_dir, indexes, photo):
    "The gallery under the labels: the catalogue's photos, captioned with predict's id, label and cosine, best first."
    from fashion_fastai.app import gallery
    captions = [c for _, c in gallery(expected_similar(run_dir, 'stage2', indexes['stage2'], photo, 3))]

    def check(page, expect):
        expect(page.get_by_test_id('label-output-value')).to_have_count(2, timeout=60_000)
        expect(page.locator('.caption-label')).to_have_text(captions, timeout=60_000)
        expect(page.locator('.gallery-item img')).to_have_count(3)
        for img in page.locator('.gallery-item img').all():  # served, not a broken link
            expect(img).to_have_js_property('complete', True)
            assert img.evaluate('i => i.naturalWidth') > 0
    upload(playwright_api, served_similar, photo, check)
