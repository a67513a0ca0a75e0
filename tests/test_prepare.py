"""The pre-resized cache (`fashion_fastai.prepare`) on generated full-size images (1800x2400, as in the Kaggle set)."""
import errno, json, os, shutil
from pathlib import Path

import pytest
from PIL import Image

from fashion_fastai.core.errors import OptionError, DataError
from fashion_fastai.data.prepare import prepare, shrunk_size, shrink_image

STYLES = ("id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
          "1,Men,Apparel,Topwear,Tshirts,Blue,Summer,2012,Casual,Blue tee\n"
          "2,Men,Apparel,Topwear,Shirts,White,Summer,2011,Formal,White shirt\n"
          "3,Women,Footwear,Shoes,Heels,Black,Winter,2012,Casual,Black heels\n"
          "4,Women,Accessories,Bags,Handbags,Red,Fall,2013,Casual,Red bag\n"
          "5,Men,Accessories,Watches,Watches,Silver,Winter,2014,Casual,Watch\n")


def full_size_folder(root: Path) -> Path:
    "A Kaggle-layout folder: three 1800x2400 JPEGs (one greyscale), one already small image and one truncated file."
    d = root / 'full'
    (d / 'images').mkdir(parents=True)
    (d / 'styles.csv').write_text(STYLES)
    for i, colour in [(1, (200, 30, 30)), (2, (30, 200, 30))]:
        im = Image.new('RGB', (1800, 2400), colour)
        im.paste((250, 250, 250), (600, 800, 1200, 1600))  # a light square, so resizing has an edge to keep
        im.save(d / 'images' / f'{i}.jpg', quality=92)
    Image.new('L', (1800, 2400), 90).save(d / 'images' / '3.jpg')
    Image.new('RGB', (60, 80), (10, 20, 250)).save(d / 'images' / '4.jpg')
    good = (d / 'images' / '1.jpg').read_bytes()
    (d / 'images' / '5.jpg').write_bytes(good[:len(good) // 3])  # truncated mid-scan
    return d


@pytest.fixture
def full(tmp_path):
    return full_size_folder(tmp_path)


def test_shrunk_size_keeps_aspect_and_never_enlarges():
    assert shrunk_size(1800, 2400, 256) == (192, 256)
    assert shrunk_size(2400, 1800, 256) == (256, 192)
    assert shrunk_size(60, 80, 256) == (60, 80)
    assert shrunk_size(1, 5000, 100) == (1, 100)


def test_cache_has_the_kaggle_layout_small_rgb_images_and_a_report(full, tmp_path):
    cache = tmp_path / 'cache'
    r = prepare(full, cache, size=256, workers=2, progress=False)  # a real process pool, as on a big data set
    assert (r.images, r.written, r.up_to_date, r.removed) == (5, 4, 0, 0)
    assert [s['file'] for s in r.skipped] == ['5.jpg'] and r.skipped[0]['reason']
    assert (cache / 'styles.csv').read_bytes() == (full / 'styles.csv').read_bytes()
    assert sorted(p.name for p in (cache / 'images').iterdir()) == ['1.jpg', '2.jpg', '3.jpg', '4.jpg']
    for i in (1, 2, 3):
        with Image.open(cache / 'images' / f'{i}.jpg') as im:
            assert im.size == (192, 256) and im.mode == 'RGB' and im.format == 'JPEG'
    with Image.open(cache / 'images' / '1.jpg') as im:  # content survives: red border, light centre
        assert im.getpixel((5, 5))[0] > 150 and min(im.getpixel((96, 128))) > 200
    assert (cache / 'images' / '4.jpg').read_bytes() == (full / 'images' / '4.jpg').read_bytes()  # small: copied as is
    report = json.loads((cache / 'prepare_report.json').read_text())
    assert report['size'] == 256 and report['written'] == 4 and report['skipped'][0]['file'] == '5.jpg'
    assert json.loads((cache / 'prepare.json').read_text())['size'] == 256
    assert not [p for p in (cache / 'images').iterdir() if p.name.startswith('.')], 'temporary files left'


def test_rerun_redoes_only_what_changed(full, tmp_path):
    cache = tmp_path / 'cache'
    prepare(full, cache, size=256, workers=0, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in (cache / 'images').iterdir()}
    r = prepare(full, cache, size=256, workers=0, progress=False)
    assert (r.written, r.up_to_date, len(r.skipped)) == (0, 4, 1)  # the broken file is tried again, and skipped again
    assert {p.name: p.stat().st_mtime_ns for p in (cache / 'images').iterdir()} == before

    Image.new('RGB', (2400, 1800), (0, 0, 0)).save(full / 'images' / '2.jpg')  # replaced by a landscape image
    (full / 'images' / '4.jpg').unlink()
    r = prepare(full, cache, size=256, workers=0, progress=False)
    assert (r.written, r.up_to_date, r.removed) == (1, 2, 1)
    with Image.open(cache / 'images' / '2.jpg') as im: assert im.size == (256, 192)
    assert not (cache / 'images' / '4.jpg').exists()

    r = prepare(full, cache, size=128, workers=0, progress=False)  # other settings: everything is redone
    assert (r.written, r.up_to_date) == (3, 0)
    with Image.open(cache / 'images' / '1.jpg') as im: assert im.size == (96, 128)


def test_an_image_that_breaks_later_leaves_the_cache(full, tmp_path):
    cache = tmp_path / 'cache'
    prepare(full, cache, size=256, workers=0, progress=False)
    (full / 'images' / '3.jpg').write_bytes(b'not a jpeg any more')
    r = prepare(full, cache, size=256, workers=0, progress=False)
    assert sorted(s['file'] for s in r.skipped) == ['3.jpg', '5.jpg']
    assert not (cache / 'images' / '3.jpg').exists()  # a stale good copy would hide the broken source


def test_training_reads_the_cache(full, tmp_path):
    "The cache is a Kaggle folder: the loader finds every cached image and counts the skipped one as missing."
    from fashion_fastai.data.styles import load_data
    cache = tmp_path / 'cache'
    prepare(full, cache, size=64, workers=0, progress=False)
    data = load_data(cache, k=2)
    assert data.report.usable == 4 and data.report.missing_image == [5]
    assert set(data.frame['split']) == {'train', 'test'}


def test_refuses_folders_that_would_overwrite_the_source(full, tmp_path):
    for out in (full, full / 'images', full / 'cache', tmp_path):
        with pytest.raises(OptionError, match='--out'):
            prepare(full, out, progress=False)
    with pytest.raises(DataError, match='styles.csv and images/'):
        prepare(tmp_path / 'nothing', tmp_path / 'cache', progress=False)
    with pytest.raises(OptionError, match='--size'):
        prepare(full, tmp_path / 'cache', size=0, progress=False)
    assert sorted(p.name for p in full.iterdir()) == ['images', 'styles.csv']


def test_shrink_image_reports_a_bomb_without_decoding_it(tmp_path, monkeypatch):
    src = tmp_path / 'big.jpg'
    Image.new('RGB', (400, 300)).save(src)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)  # 120,000 pixels is then far over the limit
    assert 'too large' in shrink_image(src, tmp_path / 'out.jpg', 64)
    assert not (tmp_path / 'out.jpg').exists()


@pytest.mark.slow
def test_train_runs_on_a_cache(tiny_dir, tmp_path):
    "`train --data CACHE` end to end (both stages) on a cache of a small data set shrunk to 40 pixels."
    from fashion_fastai.training.config import TrainConfig
    from fashion_fastai.train import train
    cache = tmp_path / 'cache'
    r = prepare(tiny_dir, cache, size=40, workers=0, progress=False)
    assert r.written == r.images > 0 and not r.skipped
    with Image.open(next((cache / 'images').iterdir())) as im: assert max(im.size) == 40
    run = train(TrainConfig(data=cache, out=tmp_path / 'runs', name='on-cache', arch='resnet18', pretrained='no',
                            size='32x24', bs=8, epochs=1, epochs2=1, epochs_all=0, lr='1e-3', lr2='1e-3', topk=3,
                            precision='fp32', seed=0, workers=0, holdout=0))  # its rare part: two even-year photos
    metrics = json.loads((run / 'metrics.json').read_text())
    assert set(metrics['stages']) == {'stage1', 'stage2'}
    assert json.loads((run / 'config.json').read_text())['data_dir'] == str(cache)


def test_command_line(full, tmp_path):
    import subprocess, sys
    run = lambda *a: subprocess.run([sys.executable, '-m', 'fashion_fastai.prepare', *map(str, a)],
                                    capture_output=True, text=True, timeout=600)
    p = run('--data', full, '--out', tmp_path / 'cache', '--size', '128', '--workers', '0')
    assert p.returncode == 0, p.stderr
    assert '5 images: 4 written, 0 already up to date, 1 skipped' in p.stdout and 'skipped 5.jpg' in p.stdout
    assert f'python -m fashion_fastai.train --data {tmp_path / "cache"}' in p.stdout
    p = run('--data', full, '--out', full / 'small')
    assert p.returncode == 2 and p.stderr.startswith('prepare: error: --out') and len(p.stderr.splitlines()) == 1
    assert not (full / 'small').exists()


# ---------------------------------------------------------------------------------------------------------------------
# Every path the command takes, as a newcomer gets it wrong: one line `prepare: error: ...` naming the path and the fix,
# exit 2, before any image is read (nothing is written under --out)
# ---------------------------------------------------------------------------------------------------------------------

def run_main(capsys, data, out) -> str:
    "The command's entry point in this process: its stderr line, after checking it exited 2 with nothing else."
    from fashion_fastai.data.prepare import main
    with pytest.raises(SystemExit) as e:
        main(data=data, out=out, workers=0)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith('prepare: error: ') and len(err.splitlines()) == 1, err
    return err


def _no_styles(root: Path, full: Path) -> Path:
    d = root / 'photos'; shutil.copytree(full / 'images', d / 'images'); return d


def _no_images_folder(root: Path, full: Path) -> Path:
    d = root / 'csv-only'; d.mkdir(); shutil.copy(full / 'styles.csv', d); return d


def _no_jpg(root: Path, full: Path) -> Path:
    d = root / 'empty-images'; (d / 'images').mkdir(parents=True); shutil.copy(full / 'styles.csv', d)
    (d / 'images' / 'README.txt').write_text('images go here'); return d


def _bad_header(root: Path, full: Path) -> Path:
    d = root / 'semicolons'; shutil.copytree(full, d)
    (d / 'styles.csv').write_text(STYLES.replace(',', ';')); return d


def _empty_csv(root: Path, full: Path) -> Path:
    d = root / 'empty-csv'; shutil.copytree(full, d); (d / 'styles.csv').write_bytes(b''); return d


@pytest.mark.parametrize('make, says', [
    (lambda root, full: root / 'nowhere', 'that folder does not exist'),
    (lambda root, full: full / 'styles.csv', 'is a file, not a folder: give the folder holding it: --data {full}.'),
    (lambda root, full: full.parent, 'it has one in {full}: try --data {full}'),  # one level too high
    (_no_styles, 'has no styles.csv'),
    (_no_images_folder, 'no images/ folder beside it'),
    (_no_jpg, 'holds no .jpg file'),
    (_bad_header, "must be comma-separated, not ';'-separated"),
    (_empty_csv, 'is empty: expected a header line'),
], ids=['missing', 'a-file', 'one-level-up', 'no-styles-csv', 'no-images-folder', 'no-jpg', 'bad-header', 'empty-csv'])
def test_data_that_is_not_a_kaggle_folder(full, tmp_path, capsys, make, says):
    data, out = make(tmp_path, full), tmp_path / 'cache'
    err = run_main(capsys, data, out)
    assert says.format(full=full) in err and str(data) in err
    assert not out.exists()  # refused before anything was made
    assert 'demo' not in err  # `train`'s hint: prepare has no demo data to fall back on


def _out_is_a_file(root: Path) -> Path:
    (root / 'cache').write_text('a file'); return root / 'cache'


def _out_under_a_file(root: Path) -> Path:
    (root / 'notes.txt').write_text('a file'); return root / 'notes.txt' / 'cache'


def _images_is_a_file(root: Path) -> Path:
    (root / 'cache').mkdir(); (root / 'cache' / 'images').write_text('a file'); return root / 'cache'


def _styles_is_a_folder(root: Path) -> Path:
    (root / 'cache' / 'styles.csv').mkdir(parents=True); return root / 'cache'


@pytest.mark.parametrize('make, says', [
    (_out_is_a_file, 'is a file: give a folder'),
    (_out_under_a_file, 'notes.txt is a file, not a folder'),
    (_images_is_a_file, "holds a file {out}/images where the cache keeps its images folder"),
    (_styles_is_a_folder, "holds a folder {out}/styles.csv where the cache keeps its styles.csv file"),
], ids=['a-file', 'under-a-file', 'images-is-a-file', 'styles-csv-is-a-folder'])
def test_out_that_cannot_hold_the_cache(full, tmp_path, capsys, make, says):
    out = make(tmp_path)
    err = run_main(capsys, full, out)
    assert says.format(out=out) in err and err.startswith(f'prepare: error: --out {out}')
    assert not (tmp_path / 'cache' / 'prepare_report.json').exists()


def test_out_that_cannot_be_written(full, tmp_path, capsys, monkeypatch):
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root: permissions do not bind, so the OS's refusal is simulated
        mkdir = Path.mkdir
        def refuse(self, *a, **kw):
            if locked in self.parents: raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return mkdir(self, *a, **kw)
        monkeypatch.setattr(Path, 'mkdir', refuse)
    try:
        err = run_main(capsys, full, locked / 'cache')
    finally: locked.chmod(0o755)
    assert f'--out {locked / "cache"} cannot be written (Permission denied): choose a folder you can write to' in err
    assert not (locked / 'cache').exists()


def test_every_image_broken_is_an_error_after_the_counted_skips(full, tmp_path, capsys):
    "Bad images are counted skips; when none is left there is nothing to train on, which is said as an error."
    for p in (full / 'images').iterdir(): p.write_bytes(b'<html>404</html>')
    from fashion_fastai.data.prepare import main
    with pytest.raises(SystemExit) as e:
        main(data=full, out=tmp_path / 'cache', workers=0)
    out, err = capsys.readouterr()
    assert e.value.code == 2 and '5 images: 0 written, 0 already up to date, 5 skipped' in out
    assert err.startswith('prepare: error: none of the 5 files') and len(err.splitlines()) == 1
    assert 'Next:' not in out
