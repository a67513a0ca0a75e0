"""`python -m fashion_fastai.tag`: a folder into a CSV in styles.csv's layout, chunk by chunk, resumable after SIGKILL
(no finished row lost, none repeated), bad files counted and listed, bad inputs refused before any image is read."""
from __future__ import annotations

import csv, os, subprocess, sys

import pytest

from fashion_fastai.core.errors import DataError, OptionError
from fashion_fastai.inference.load import load_model
from fashion_fastai.core.schema import image_id
from fashion_fastai.catalogue.tag import tag
from helpers import export_untrained, run_module, save_image, sigkill_when

ATTRIBUTES = {'gender': ['Boys', 'Girls', 'Men', 'Women'], 'usage': ['Casual', 'Sports']}


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, tiny_dls):
    folder = tmp_path_factory.mktemp('run')
    export_untrained(folder, tiny_dls, attributes=ATTRIBUTES)
    return folder


def photos(folder, n, start=1000):
    folder.mkdir(parents=True, exist_ok=True)
    return [save_image(folder / f'{start + i}.jpg', seed=i) for i in range(n)]


def read(path):
    with open(path, newline='') as f: return list(csv.reader(f))


def test_rows_in_styles_csv_layout(run_dir, tmp_path):
    photos(tmp_path / 'shop', 5)
    (tmp_path / 'shop' / 'broken.jpg').write_bytes(b'\xff\xd8 not a jpeg')
    (tmp_path / 'shop' / 'sub').mkdir()
    save_image(tmp_path / 'shop' / 'sub' / '01001.jpg', seed=7)  # id 1001 again, in a subfolder
    out = tmp_path / 'tags.csv'
    counts = tag(load_model(run_dir), [tmp_path / 'shop'], out, min_prob=1., chunk=2, show=False)
    rows = read(out)
    assert rows[0] == ['id', 'gender', 'gender_prob', 'articleType', 'articleType_prob', 'usage', 'usage_prob',
                       'needs_review', 'file']  # styles.csv's column order, each head with its probability
    assert sorted(r[0] for r in rows[1:]) == ['1000', '1001', '1002', '1003', '1004']
    assert all(r[1] in ATTRIBUTES['gender'] and r[5] in ATTRIBUTES['usage'] and 0 < float(r[4]) <= 1 for r in rows[1:])
    assert all(r[7] == 'True' for r in rows[1:])  # min_prob 1: every answer needs review
    skipped = read(tmp_path / 'tags.csv.skipped.csv')
    assert skipped[0] == ['path', 'reason'] and len(skipped) == 3 and counts == dict(tagged=5, skipped=2, already=0)
    reasons = {os.path.basename(r[0]): r[1] for r in skipped[1:]}
    assert 'duplicate id 1001' in reasons['01001.jpg'] and reasons['broken.jpg']
    again = tag(load_model(run_dir), [tmp_path / 'shop'], out, min_prob=1., chunk=2, show=False)
    assert again == dict(tagged=0, skipped=0, already=5) and read(out) == rows  # a finished run: nothing repeated
    assert image_id('x/0042.png') == '42' and image_id('SKU-7.jpg') == 'SKU-7'


def test_a_line_cut_short_is_tagged_again(run_dir, tmp_path):
    files = photos(tmp_path / 'shop', 4)
    out = tmp_path / 'tags.csv'
    tag(load_model(run_dir), [tmp_path / 'shop'], out, chunk=4, show=False)
    whole = read(out)
    text = out.read_text()
    out.write_text(text[:text.rindex('\n', 0, len(text) - 1) + 5])  # the last row cut after 4 characters, as by a kill
    assert tag(load_model(run_dir), [tmp_path / 'shop'], out, chunk=4, show=False)['tagged'] == 1
    again = read(out)
    assert len(again) == len(whole) and {r[-1] for r in again[1:]} == {str(f) for f in files}


def test_bad_inputs_are_refused_before_any_image_is_read(run_dir, tmp_path):
    photos(tmp_path / 'shop', 2)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='holds no image files'):
        tag(load_model(run_dir), [tmp_path / 'empty'], tmp_path / 't.csv', show=False)
    with pytest.raises(OptionError, match='is a folder'):
        tag(load_model(run_dir), [tmp_path / 'shop'], tmp_path, show=False)
    with pytest.raises(OptionError, match='does not exist'):
        tag(load_model(run_dir), [tmp_path / 'shop'], tmp_path / 'nowhere' / 't.csv', show=False)
    other = tmp_path / 'other.csv'
    other.write_text('id,articleType,articleType_prob,needs_review,file\n1,Caps,0.9,False,x\n')
    with pytest.raises(OptionError, match='comes from another model'):
        tag(load_model(run_dir), [tmp_path / 'shop'], other, show=False)
    p = run_module('fashion_fastai.tag', run_dir, tmp_path / 'empty', '--out', tmp_path / 't.csv', check=False)
    assert p.returncode == 2 and 'tag: error:' in p.stderr and 'Traceback' not in p.stderr



def test_an_out_that_is_not_a_csv_is_refused_unchanged(run_dir, tmp_path):
    photos(tmp_path / 'shop', 1)
    binary = tmp_path / 'tags.csv'; binary.write_bytes(bytes(range(256)))
    with pytest.raises(OptionError, match='is not a CSV'):
        tag(load_model(run_dir), [tmp_path / 'shop'], binary, show=False)
    assert binary.read_bytes() == bytes(range(256))


def test_a_kill_inside_the_header_or_the_skipped_list_loses_nothing(run_dir, tmp_path):
    "The header cut short: nothing was finished.  A skipped path cut short: the next one still starts a line."
    files = photos(tmp_path / 'shop', 2)
    (tmp_path / 'shop' / 'broken.jpg').write_bytes(b'not a jpeg')
    out = tmp_path / 'tags.csv'
    out.write_text('id,gend')
    (tmp_path / 'tags.csv.skipped.csv').write_text('path,reason\n/elsewhere/cut')
    assert tag(load_model(run_dir), [tmp_path / 'shop'], out, show=False) == dict(tagged=2, skipped=1, already=0)
    assert sorted(r[-1] for r in read(out)[1:]) == sorted(map(str, files))
    assert [r[0] for r in read(tmp_path / 'tags.csv.skipped.csv')[1:]] == [str(tmp_path / 'shop' / 'broken.jpg')]

@pytest.mark.slow
def test_sigkill_then_the_same_command_finishes_without_repeating_a_row(run_dir, tmp_path):
    files = photos(tmp_path / 'shop', 400)
    cmd = [sys.executable, '-m', 'fashion_fastai.tag', str(run_dir), str(tmp_path / 'shop'), '--chunk', '2',
           '--engine', 'torch', '--device', 'cpu']
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    out = tmp_path / 'tags.csv'
    first_chunk = lambda: out.is_file() and out.read_bytes().count(b'\n') >= 3  # the header and a first chunk
    sigkill_when([*cmd, '--out', out], first_chunk, 'a first chunk of rows', env, poll=0.005)
    killed = read(out) if out.read_bytes().endswith(b'\n') else read(out)[:-1]
    assert 2 <= len(killed) - 1 < len(files), len(killed)
    subprocess.run([*cmd, '--out', str(out)], env=env, check=True, capture_output=True, timeout=900)
    rows = read(out)[1:]
    assert sorted(r[-1] for r in rows) == sorted(str(f) for f in files)  # every image once: none lost, none repeated
    assert rows[:len(killed) - 1] == killed[1:]  # what the killed run finished is kept as it was
    reference = tmp_path / 'reference.csv'
    subprocess.run([*cmd, '--out', str(reference)], env=env, check=True, capture_output=True, timeout=900)
    same = {r[-1]: r[1::2][:-1] for r in read(reference)[1:]}  # each head's answer (probabilities may differ in the
    assert {r[-1]: r[1::2][:-1] for r in rows} == same       # last digit with the batch they were predicted in)
