"""Tests for the synthetic demo data set: layout, determinism, and that every real-data trap is present.

The CSV is parsed with the stdlib on purpose (split on ',' and re-join the surplus fields into the
name) so these tests check the files themselves, independently of the project's loader.
"""
import os
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from fashion_fastai.data.demo import DEMO_CLASSES, demo_dir, generate_demo

from helpers import HEADER
SCALE = 0.1


def parse(out: Path):
    "Rows of styles.csv as dicts; fields beyond the 9th are the (unquoted, comma-containing) name."
    lines = (out / "styles.csv").read_text(encoding="utf-8").split("\n")
    assert lines[0] == HEADER and lines[-1] == ""  # header, '\n' endings, trailing newline
    cols = HEADER.split(",")
    rows = []
    for line in lines[1:-1]:
        f = line.split(",")
        rows.append(dict(zip(cols[:9], f[:9]), productDisplayName=",".join(f[9:]), nfields=len(f)))
    return rows


def split_of(row):
    "train/test from the year parity (even = train); None for an empty year."
    return None if row["year"] == "" else ("train" if int(row["year"]) % 2 == 0 else "test")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = generate_demo(tmp_path_factory.mktemp("demo") / "out", scale=SCALE, seed=0)
    return out, parse(out)


def img_path(out, row):
    return out / "images" / f"{row['id']}.jpg"


def test_layout_and_header(demo):
    out, rows = demo
    assert (out / "styles.csv").is_file() and (out / "images").is_dir()
    assert b"\r" not in (out / "styles.csv").read_bytes() and b'"' not in (out / "styles.csv").read_bytes()
    assert 250 <= len(rows) <= 330
    ids = [int(r["id"]) for r in rows]
    assert len(set(ids)) == len(ids)
    assert {r["gender"] for r in rows} <= {"Men", "Women", "Boys", "Girls", "Unisex"}
    assert {r["season"] for r in rows} <= {"Summer", "Fall", "Winter", "Spring"}
    assert {r["usage"] for r in rows} <= {"Casual", "Formal", "Sports", "Ethnic"}
    assert {r["year"] for r in rows} - {""} <= {str(y) for y in range(2011, 2019)}
    for r in rows:
        assert DEMO_CLASSES[r["articleType"]] == (r["masterCategory"], r["subCategory"])
        assert r["productDisplayName"].replace(",", "").endswith(r["articleType"])
    # only the image files of the rows, nothing else
    assert {p.name for p in (out / "images").iterdir()} <= {f"{i}.jpg" for i in ids}


def test_images_size_and_mode(demo):
    out, rows = demo
    modes = Counter()
    for r in rows:
        p = img_path(out, r)
        if not p.exists():
            continue
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (60, 80)
            modes[im.mode] += 1
    assert set(modes) == {"RGB", "L"}
    assert 3 <= modes["L"] <= max(3, 0.05 * sum(modes.values()))  # trap 3: a few greyscale images


def test_deterministic(tmp_path, demo):
    out, _ = demo
    other = generate_demo(tmp_path / "again", scale=SCALE, seed=0)
    assert (other / "styles.csv").read_bytes() == (out / "styles.csv").read_bytes()
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == sorted(p.name for p in (other / "images").iterdir())
    for n in names:
        assert (other / "images" / n).read_bytes() == (out / "images" / n).read_bytes()


def test_seed_changes_data(tmp_path, demo):
    out, _ = demo
    other = generate_demo(tmp_path / "seed1", scale=SCALE, seed=1)
    assert (other / "styles.csv").read_bytes() != (out / "styles.csv").read_bytes()


def test_classes_and_skew(demo):
    _, rows = demo
    counts = Counter(r["articleType"] for r in rows)
    assert len(DEMO_CLASSES) >= 26 and set(counts) == set(DEMO_CLASSES)
    names = list(DEMO_CLASSES)
    frequent, rare = names[:20], names[20:]
    assert len(rare) >= 6
    top20 = [c for c, _ in counts.most_common(20)]
    assert set(top20) == set(frequent)
    assert min(counts[c] for c in frequent) > max(counts[c] for c in rare)  # unambiguous top-20
    assert counts[frequent[0]] >= 2 * counts[frequent[-1]]  # skewed


@pytest.mark.parametrize("scale", [0.05, 0.1, 1.0])
def test_counts_at_scales(scale):
    "Top-20 membership stays unambiguous at every supported scale (counts only, no images)."
    from fashion_fastai.data.demo import _N_FREQUENT, _SPEC, _count

    freq = [_count(b, True, scale) for _, _, _, b, *_ in _SPEC[:_N_FREQUENT]]
    rare = [_count(b, False, scale) for _, _, _, b, *_ in _SPEC[_N_FREQUENT:]]
    assert min(freq) > max(rare) and min(rare) >= 2
    if scale == 1.0:
        assert 2500 <= sum(freq) + sum(rare) <= 3000
        assert freq == sorted(freq, reverse=True) and rare == sorted(rare, reverse=True)
        assert freq[0] >= 240 and freq[-1] >= 50 and 5 <= min(rare) and max(rare) <= 30


def test_split_ratio(demo):
    _, rows = demo
    splits = Counter(split_of(r) for r in rows if r["year"])
    assert 0.5 <= splits["train"] / (splits["train"] + splits["test"]) <= 0.6


def test_trap_perfume_test_only(demo):
    _, rows = demo
    perfume = [r for r in rows if r["articleType"] == "Perfume and Body Mist"]
    assert perfume and all(split_of(r) == "test" for r in perfume)
    counts = Counter(r["articleType"] for r in rows)
    assert "Perfume and Body Mist" in [c for c, _ in counts.most_common(20)]


def test_trap_rare_single_split(demo):
    _, rows = demo
    rare = list(DEMO_CLASSES)[20:]
    splits = {c: {split_of(r) for r in rows if r["articleType"] == c} - {None} for c in rare}
    assert sum(s == {"test"} for s in splits.values()) >= 2
    assert sum(s == {"train"} for s in splits.values()) >= 1
    assert sum(s == {"train", "test"} for s in splits.values()) >= 1


def test_trap_missing_image(demo):
    out, rows = demo
    missing = [r for r in rows if not img_path(out, r).exists()]
    assert missing and all(r["articleType"] in list(DEMO_CLASSES)[:20] for r in missing)


def test_trap_commas_in_name(demo):
    out, rows = demo
    comma = [r for r in rows if "," in r["productDisplayName"]]
    assert len(comma) >= 3
    assert all(r["nfields"] > 10 and img_path(out, r).exists() for r in comma)
    assert all(r["nfields"] == 10 for r in rows if r not in comma)


def test_trap_empty_year(demo):
    out, rows = demo
    empty = [r for r in rows if r["year"] == ""]
    assert empty and all(img_path(out, r).exists() for r in empty)


def test_generate_into_old_output_keeps_missing_image(tmp_path, demo):
    "Regenerating over an older output must not leave a stale image for a 'missing image' row."
    out, rows = demo
    target = tmp_path / "reuse"
    (target / "images").mkdir(parents=True)
    for r in rows:
        (target / "images" / f"{r['id']}.jpg").write_bytes(b"stale")
    generate_demo(target, scale=SCALE, seed=0)
    assert [r for r in parse(target) if not img_path(target, r).exists()]


def test_cache_root(tmp_path, monkeypatch):
    "One cache folder for the demo data and converted weights: $FASHION_FASTAI_CACHE, else under the home folder."
    from fashion_fastai.core.cache import cache_root
    monkeypatch.setenv("FASHION_FASTAI_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("FASHION_FASTAI_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "fashion_fastai"


def test_demo_dir_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_FASTAI_CACHE", str(tmp_path))
    d = demo_dir(scale=0.05, seed=0)
    assert d.parent == tmp_path and "v1" in d.name and "0.05" in d.name and "seed0" in d.name
    assert (d / "styles.csv").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [d.name]  # no temp folder left behind
    mtime = os.stat(d / "styles.csv").st_mtime_ns
    assert demo_dir(scale=0.05, seed=0) == d
    assert os.stat(d / "styles.csv").st_mtime_ns == mtime  # not regenerated
    assert demo_dir(cache=tmp_path / "other", scale=0.05, seed=0).parent == tmp_path / "other"
