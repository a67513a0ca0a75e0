"""The loader against each trap of the Kaggle files, and the protocol (year-parity split, top-k parts, union vocabs).

Custom data sets are written by `make_dataset` (conftest.py; `helpers.write_dataset`) from unquoted CSV lines, like the
Kaggle `styles.csv`.
"""
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fashion_fastai.data.styles import (DataError, LABEL, SplitColumn, as_items, load_data, load_styles,
                                        part_dataloaders, part_vocab, top_classes, year_split)

from helpers import TINY_RARE, tiny_lines, write_dataset, COLUMNS, REAL_DATA, SMALL, style_line
from fashion_fastai.core.models import MODELS

STAGE1, STAGE2, ALL_CLASSES = MODELS  # the run's models, in training order


def ids_of(rows):
    return sorted(int(i) for i in rows["id"])


# ---------------------------------------------------------------------------------------------------------------------
# styles.csv parsing
# ---------------------------------------------------------------------------------------------------------------------

def test_extra_commas_in_name_are_recovered(make_dataset):
    names = {2: "Puma Men, Black, Tshirts", 3: "Odd,, name, ending in a comma,", 4: "Plain Name Tshirts"}
    root = make_dataset([style_line(i, year=2012, name=n) for i, n in names.items()])
    raw = (root / "styles.csv").read_bytes()
    assert b'"' not in raw and b"Puma Men, Black, Tshirts\n" in raw  # unquoted: those lines have extra fields
    df, report = load_styles(root / "styles.csv")
    assert list(df.columns) == COLUMNS
    assert dict(zip(df["id"], df["productDisplayName"])) == names  # re-joined exactly, commas and empties included
    assert sorted(report.recovered_commas) == [2, 3]
    assert all(isinstance(i, int) for i in report.recovered_commas)
    assert (df["articleType"] == "Tshirts").all() and df["year"].tolist() == [2012] * 3
    assert report.malformed == [] and report.lines_read == report.rows_parsed == 3


def test_too_few_fields_and_bad_id_are_counted_with_line_numbers(make_dataset):
    lines = [style_line(1),                          # line 2
             "",                                     # line 3: blank, ignored, not counted
             "2,Men,Apparel,Topwear,Tshirts,Black",  # line 4: too few fields
             style_line("x7"),                       # line 5: id not an integer
             style_line(-3),                         # line 6: negative is not an id either
             style_line(8, article=" "),             # line 7: empty articleType
             style_line(9)]                          # line 8
    df, report = load_styles(make_dataset(lines) / "styles.csv")
    assert df["id"].tolist() == [1, 9]
    assert [m["line"] for m in report.malformed] == [4, 5, 6, 7]
    assert "6 fields, expected 10" in report.malformed[0]["reason"]
    assert "id" in report.malformed[1]["reason"]
    assert report.lines_read == 6 and report.rows_parsed == 2


def test_duplicate_id_keeps_the_first_row(make_dataset):
    lines = [style_line(5, "Tshirts"), style_line(6, "Shirts"), style_line(5, "Jeans"), style_line(5, "Caps")]
    df, report = load_styles(make_dataset(lines) / "styles.csv")
    assert df["id"].tolist() == [5, 6]
    assert df.set_index("id").loc[5, "articleType"] == "Tshirts"
    assert report.duplicate_ids == [5, 5]
    assert report.lines_read == 4 and report.rows_parsed == 2


def test_bom_and_crlf(make_dataset):
    root = make_dataset([style_line(1, year=2012, name="A, b"), style_line(2, year=2013)], bom=True, eol="\r\n")
    raw = (root / "styles.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfid,") and b"\r\n" in raw
    df, report = load_styles(root / "styles.csv")
    assert list(df.columns) == COLUMNS
    assert not any("\ufeff" in c for c in df.columns)
    assert df["id"].tolist() == [1, 2]
    assert df["productDisplayName"].tolist() == ["A, b", "Brand Men Black Tshirts"]  # no stray '\r'
    assert df["year"].tolist() == [2012, 2013] and report.recovered_commas == [1] and report.undecodable_lines == 0
    data = load_data(root, k=1)
    assert data.frame.set_index("id")["split"].to_dict() == {1: "train", 2: "test"}


def test_non_utf8_bytes_are_counted_not_fatal(make_dataset):
    lines = [style_line(1), style_line(2, name="Caf\xe9 Tshirts").encode("latin-1"),
             style_line(3, name="Brand \xff\xfe Tshirts").encode("latin-1"), style_line(4)]
    root = make_dataset(lines, bom=True)  # the BOM must also be stripped on the lenient (errors='replace') path
    df, report = load_styles(root / "styles.csv")
    assert list(df.columns) == COLUMNS
    assert df["id"].tolist() == [1, 2, 3, 4]
    assert report.undecodable_lines == 2
    names = df.set_index("id")["productDisplayName"]
    assert names[2] == "Caf\ufffd Tshirts" and "\ufffd" in names[3] and "\ufffd" not in names[1]


def test_missing_styles_csv_names_the_file(tmp_path):
    with pytest.raises(DataError, match="styles.csv") as e:
        load_data(tmp_path)
    assert str(tmp_path) in str(e.value)
    with pytest.raises(DataError) as e:
        load_styles(tmp_path / "nope.csv")
    assert str(tmp_path / "nope.csv") in str(e.value)


def test_load_data_checks_the_folder_before_reading(make_dataset, tmp_path):
    """The one check of a data folder (`data_folder_problem`): what is wrong and where the right folder is, before any
    row."""
    root = make_dataset([style_line(1)])
    (root / "images" / "1.jpg").rename(root / "images" / "1.png")
    (tmp_path / "archive.zip").write_bytes(b"PK")
    for given, says in [(root, "its images/ folder holds no .jpg file"),
                        (root / "styles.csv", f"is a file, not a folder: give the folder holding it: --data {root}."),
                        (tmp_path / "archive.zip", "is a file, not a folder: unzip it"),
                        (root.parent, f"has no styles.csv (it has one in {root}: try --data {root})")]:
        with pytest.raises(DataError) as e: load_data(given)
        assert says in str(e.value) and str(given) in str(e.value)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_empty_styles_csv(tmp_path, content):
    (tmp_path / "styles.csv").write_bytes(content)
    with pytest.raises(DataError, match="empty") as e:
        load_styles(tmp_path / "styles.csv")
    assert str(tmp_path / "styles.csv") in str(e.value)


def test_header_only_styles_csv(make_dataset):
    root = make_dataset([])
    with pytest.raises(DataError, match="no parseable rows") as e:
        load_styles(root / "styles.csv")
    assert str(root / "styles.csv") in str(e.value)


@pytest.mark.parametrize("drop", ["year", "articleType", "id"])
def test_missing_required_column(make_dataset, drop):
    header = ",".join(c for c in COLUMNS if c != drop)
    root = make_dataset(["1,Men,Apparel,Topwear,Tshirts,Black,Summer,2012,Casual"], header=header)
    with pytest.raises(DataError) as e:
        load_styles(root / "styles.csv")
    assert repr(drop) in str(e.value) and str(root / "styles.csv") in str(e.value)


def test_missing_images_folder(make_dataset):
    root = make_dataset([style_line(1)])
    (root / "images" / "1.jpg").unlink(); (root / "images").rmdir()
    with pytest.raises(DataError, match="images"):
        load_data(root)


def test_missing_and_empty_images_are_skipped(make_dataset):
    lines = [style_line(i, year=2012 + i % 2) for i in range(1, 7)]
    root = make_dataset(lines, images=[1, 2, 4, 6], empty=[4])  # 3 and 5 missing, 4 zero bytes
    data = load_data(root, k=1)
    assert data.report.missing_image == [3, 5]
    assert data.report.empty_image == [4]
    assert ids_of(data.frame) == [1, 2, 6] and data.report.usable == 3 and data.report.rows_parsed == 6
    assert all(Path(f).is_file() and Path(f).stat().st_size > 0 for f in data.frame["file"])
    assert data.frame.set_index("id").loc[6, "file"] == str((root / "images" / "6.jpg").resolve())


def test_missing_or_bad_year_goes_to_split_none(make_dataset):
    lines = [style_line(1, year=2012), style_line(2, year=2013), style_line(3, year=None),
             style_line(4, year="unknown"), style_line(5, year=2014), style_line(6, year=2015)]
    data = load_data(make_dataset(lines), k=1)
    assert sorted(data.report.no_year) == [3, 4]
    split = data.frame.set_index("id")["split"].to_dict()
    assert split == {1: "train", 2: "test", 3: "none", 4: "none", 5: "train", 6: "test"}  # kept, in neither split
    assert ids_of(data.part("top")) == [1, 2, 5, 6]
    dls = part_dataloaders(data, "top", size=SMALL, bs=8, num_workers=0, augment=False)
    used = {Path(it["file"]).stem for it in [*dls.train_ds.items, *dls.valid_ds.items]}
    assert used == {"1", "2", "5", "6"}


def test_fractional_year_is_no_year(make_dataset):
    df, report = load_styles(make_dataset([style_line(1, year=2012), style_line(2, year="2012.5")]) / "styles.csv")
    assert report.no_year == [2]


def test_duplicate_id_with_other_spelling(make_dataset):
    df, report = load_styles(make_dataset([style_line(1), style_line("01"), style_line(" 1")]) / "styles.csv")
    assert df["id"].tolist() == [1] and report.duplicate_ids == [1, 1]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "RGB"])
def test_image_modes_load_as_3_channels(make_dataset, mode):
    "Each mode in both splits and next to RGB images: one batch must stack into [bs, 3, H, W]."
    lines = [style_line(i, "Tshirts" if i % 2 else "Shirts", 2012 if i < 5 else 2013) for i in range(1, 9)]
    root = make_dataset(lines, modes={i: mode for i in (1, 2, 5, 6)})
    for i in (1, 2, 5, 6):
        assert Image.open(root / "images" / f"{i}.jpg").mode == mode  # the file really is in that mode
    dls = part_dataloaders(load_data(root, k=2), "top", size=SMALL, bs=4, num_workers=0, augment=False)
    for dl in (dls.train, dls.valid):
        x, y = dl.one_batch()
        assert tuple(x.shape) == (4, 3, *SMALL) and x.dtype.is_floating_point
        assert x.isfinite().all() and x.std() > 0


def test_demo_greyscale_images_batch(demo_loaded, demo_dls):
    grey = [f for f in demo_loaded.frame["file"] if Image.open(f).mode == "L"]
    assert grey  # the demo holds greyscale JPEGs among RGB ones
    x, _ = demo_dls["top"].valid.one_batch()
    assert tuple(x.shape) == (8, 3, *SMALL)


# ---------------------------------------------------------------------------------------------------------------------
# Protocol
# ---------------------------------------------------------------------------------------------------------------------

def test_year_split():
    years = pd.Series([2012, 2013, pd.NA, 2000, 1999, 2018], index=[10, 11, 12, 13, 14, 15], dtype="Int64")
    out = year_split(years)
    assert out.to_dict() == {10: "train", 11: "test", 12: "none", 13: "train", 14: "test", 15: "train"}


def styles_frame(counts: dict, year=2012):
    rows = [{"id": i, LABEL: c, "year": year} for i, c in enumerate(c for c, n in counts.items() for _ in range(n))]
    df = pd.DataFrame(rows)
    df["year"] = df["year"].astype("Int64")
    return df


def test_top_classes_ranking_ties_and_k():
    df = styles_frame({"Zeta": 5, "Beta": 3, "Alpha": 3, "Gamma": 2, "Delta": 3})
    assert top_classes(df, 1) == ["Zeta"]
    assert top_classes(df, 2) == ["Zeta", "Alpha"]  # three-way tie at 3: broken by name
    assert top_classes(df, 4) == ["Zeta", "Alpha", "Beta", "Delta"]
    assert top_classes(df, 50) == ["Zeta", "Alpha", "Beta", "Delta", "Gamma"]


def test_top_classes_rank_on_train():
    df = pd.concat([styles_frame({"Perfume": 6}, 2013), styles_frame({"Socks": 4, "Caps": 2}, 2012),
                    styles_frame({"Caps": 3}, 2015)], ignore_index=True)
    assert top_classes(df, 2, "all") == ["Perfume", "Caps"]
    assert top_classes(df, 2, "train") == ["Socks", "Caps"]  # Perfume has no even-year row


def test_top_classes_ranked_over_all_rows_even_without_images(make_dataset):
    "Perfume: 5 rows, only 1 with an image; Socks: 3 rows, all with images.  The protocol ranks on styles.csv."
    lines = [style_line(i, "Perfume", 2013) for i in range(1, 6)] + \
            [style_line(i, "Socks", y) for i, y in ((6, 2012), (7, 2012), (8, 2013))]
    root = make_dataset(lines, images=[1, 6, 7, 8])
    data = load_data(root, k=1)
    assert data.top == ["Perfume"]
    assert top_classes(data.frame, 1) == ["Socks"]  # what ranking over the usable rows would have given
    assert data.vocabs == {"top": ["Perfume"], "rare": ["Socks"], "all": ["Perfume", "Socks"]}
    with pytest.raises(DataError, match="has 0 training image"):  # the top part has test images only
        part_dataloaders(data, "top", size=SMALL, bs=2, num_workers=0)
    assert load_data(root, k=1, rank_on="train").top == ["Socks"]


def test_part_vocab_is_sorted_union():
    df = pd.DataFrame({LABEL: ["b", "a", "c", "d", "e", "x", "y"],
                       "split": ["train", "test", "test", "train", "valid", "none", "train"],
                       "part": ["top", "top", "top", "top", "top", "top", "rare"]})
    assert part_vocab(df, "top") == ["a", "b", "c", "d", "e"]  # test-only a, c; train-only b, d; valid-only e; not x
    assert part_vocab(df, "rare") == ["y"]


def test_demo_vocab_and_labels(demo_loaded, demo_dls):
    for part in ("top", "rare"):
        dls, vocab = demo_dls[part], demo_loaded.vocabs[part]
        rows = demo_loaded.part(part)
        assert vocab == sorted(set(rows.loc[rows["split"] == "train", LABEL])
                               | set(rows.loc[rows["split"] == "test", LABEL]))
        assert list(dls.vocab) == vocab and dls.c == len(vocab)
        for ds in (dls.train_ds, dls.valid_ds):
            for i in range(0, len(ds), max(1, len(ds) // 4)):
                assert int(ds[i][1]) == vocab.index(ds.items[i][LABEL])
    top, rare = demo_loaded.vocabs["top"], demo_loaded.vocabs["rare"]
    # test-only classes have an index and appear only in validation targets; the train-only class only in training
    for part, label, only_in in (("top", "Perfume and Body Mist", "valid"), ("rare", "Scarves", "valid"),
                                 ("rare", "Gloves", "valid"), ("rare", "Mufflers", "train")):
        vocab, dls = demo_loaded.vocabs[part], demo_dls[part]
        idx = vocab.index(label)
        train_t = [int(t) for t in dls.train_ds.tls[1]]
        valid_t = [int(t) for t in dls.valid_ds.tls[1]]
        assert (idx in train_t, idx in valid_t) == (only_in == "train", only_in == "valid")
    assert len(top) == 20 and len(rare) == 7 and not set(top) & set(rare)


def test_split_column():
    items = [{"split": s} for s in ("train", "test", "none", "valid", "train", "test")]
    assert SplitColumn()(items) == ([0, 4], [1, 5])
    assert SplitColumn("valid")(items) == ([0, 4], [3])


def test_as_items():
    df = pd.DataFrame({"file": ["a.jpg", "b.jpg"], LABEL: ["x", "y"], "split": ["train", "test"], "id": [1, 2]})
    assert as_items(df) == [{"file": "a.jpg", LABEL: "x", "split": "train"},
                            {"file": "b.jpg", LABEL: "y", "split": "test"}]


def test_holdout(tiny_dir):
    data = load_data(tiny_dir, k=3, holdout=0.25, seed=1)
    splits = data.frame["split"].value_counts().to_dict()
    even = load_data(tiny_dir, k=3).frame.query("split == 'train'")[LABEL].value_counts()
    carved = sum(round(0.25 * n) for n in even)   # a quarter of each class's even-year rows
    assert carved > 0 and splits == {"train": 20 - carved, "valid": carved, "test": 7}
    assert (data.frame.loc[data.frame["split"] == "valid", "year"] % 2 == 0).all()
    dls = part_dataloaders(data, "top", size=SMALL, bs=8, num_workers=0, augment=False)
    top = data.part("top")
    files = lambda split: set(top.loc[top["split"] == split, "file"])
    train, valid = {it["file"] for it in dls.train_ds.items}, {it["file"] for it in dls.valid_ds.items}
    assert train == files("train") and valid == files("valid") and valid
    assert not (files("test") & (train | valid))  # test rows in neither
    again = load_data(tiny_dir, k=3, holdout=0.25, seed=1)
    assert again.frame["split"].tolist() == data.frame["split"].tolist()  # seeded


def test_holdout_gives_every_part_a_validation_set(tiny_dir, tmp_path):
    """Drawn per class: every part gets a holdout, a small part one photo of its biggest class; a part too small to
    spare one (each class one even-year photo, or two in all, what training needs) is refused, never validated on
    nothing nor left a class without training photos."""
    for seed in range(5):
        data = load_data(tiny_dir, k=3, holdout=0.25, seed=seed)
        top = data.part("top")
        assert (top["split"] == "valid").any() and (top["split"] == "train").any(), seed
        dls = part_dataloaders(data, "top", size=SMALL, bs=8, num_workers=0, augment=False)
        assert len(dls.valid_ds) == (top["split"] == "valid").sum()
        assert not (data.part("rare")["split"] == "valid").any()  # two even-year photos: none to spare
        with pytest.raises(DataError, match="holdout"):
            part_dataloaders(data, "rare", size=SMALL, bs=8, num_workers=0, augment=False)
    more = tiny_lines() + [style_line(900 + i, "Jackets", 2012) for i in range(2)]  # a second rare class, two photos
    data = load_data(write_dataset(tmp_path / "more", more), k=3, holdout=0.25, seed=0)
    rare = data.part("rare")
    held = rare.loc[rare["split"] == "valid", LABEL].tolist()
    assert len(held) == 1 and (rare.loc[rare["split"] == "train", LABEL].value_counts() >= 1).all()
    assert set(rare.loc[rare["split"] == "train", LABEL]) == {TINY_RARE, "Jackets"}


def test_without_holdout_validation_is_test(tiny_data, tiny_dls):
    top = tiny_data.part("top")
    assert {it["file"] for it in tiny_dls.valid_ds.items} == set(top.loc[top["split"] == "test", "file"])
    assert len(tiny_dls.train_ds) == 18 and len(tiny_dls.valid_ds) == 6


# ---------------------------------------------------------------------------------------------------------------------
# Demo and real data end to end
# ---------------------------------------------------------------------------------------------------------------------

def test_demo_end_to_end(demo_loaded):
    data, r = demo_loaded, demo_loaded.report
    assert len(data.top) == 20 and "Perfume and Body Mist" in data.top
    assert data.train_counts("top").get("Perfume and Body Mist", 0) == 0
    perfume = data.part("top").query(f"{LABEL} == 'Perfume and Body Mist'")
    assert len(perfume) > 0 and set(perfume["split"]) == {"test"}
    assert len(r.missing_image) == 1 and len(r.recovered_commas) >= 3 and len(r.no_year) >= 1
    assert r.malformed == [] and r.duplicate_ids == [] and r.empty_image == [] and r.undecodable_lines == 0
    assert r.usable == len(data.frame) == r.rows_parsed - len(r.missing_image) and r.lines_read == r.rows_parsed
    assert not set(r.missing_image) & set(data.frame["id"])
    frame = data.frame.set_index("id")
    assert all(frame.loc[i, "split"] == "none" for i in r.no_year if i in frame.index)
    assert all("," in frame.loc[i, "productDisplayName"] for i in r.recovered_commas if i in frame.index)
    assert set(frame["split"]) == {"train", "test", "none"}


@pytest.mark.skipif(not (REAL_DATA / "styles.csv").is_file(), reason=f"real data not at {REAL_DATA}")
def test_real_data_smoke():
    data = load_data(REAL_DATA)
    r = data.report
    assert r.lines_read == 44446
    # the one spelling of the header (data.COLUMNS) is Kaggle's
    assert list(data.frame.columns[:len(COLUMNS)]) == COLUMNS
    assert "Perfume and Body Mist" in data.top and data.train_counts("top").get("Perfume and Body Mist", 0) == 0
    assert len(data.top) == 20 and len(data.vocabs["top"]) == 20
    assert data.vocabs["all"] == sorted(data.vocabs["top"] + data.vocabs["rare"])  # the all-classes model's classes
    assert len(r.no_year) == 1
    assert data.frame.set_index("id").loc[r.no_year[0], "split"] == "none"
    x, y = part_dataloaders(data, "top", bs=8, num_workers=0).one_batch()
    assert tuple(x.shape) == (8, 3, 80, 60) and tuple(y.shape) == (8,)


# ---------------------------------------------------------------------------------------------------------------------
# More styles.csv traps (issue 4): nothing dropped silently, no crash on a bad line, errors name the file and the fix
# ---------------------------------------------------------------------------------------------------------------------

def test_unclosed_quote_does_not_swallow_the_following_lines(make_dataset):
    "A name opening a quote it never closes: the csv reader would read every later line into that one field, silently."
    lines = [style_line(1), style_line(2, name='"12 inch Tshirts'), style_line(3),
             style_line(4, name='Nike 3.5" Shorts')]
    df, report = load_styles(make_dataset(lines) / "styles.csv")
    assert df["id"].tolist() == [1, 2, 3, 4] and report.lines_read == 4 and report.malformed == []
    assert df.set_index("id").loc[4, "productDisplayName"] == 'Nike 3.5" Shorts'


def test_bad_rows_are_counted_not_fatal(make_dataset):
    "An id beyond int64, and a bad id on a line whose name holds commas, used to raise (OverflowError, ValueError)."
    lines = [style_line(1), style_line(99999999999999999999999), style_line("x7", name="Puma, Black, Tshirts"),
             style_line(4, name="Puma, Black")]
    df, report = load_styles(make_dataset(lines) / "styles.csv")
    assert df["id"].tolist() == [1, 4] and report.recovered_commas == [4]
    assert [m["line"] for m in report.malformed] == [3, 4]
    assert "too large" in report.malformed[0]["reason"] and "'x7'" in report.malformed[1]["reason"]


def test_comma_outside_the_name_is_malformed_not_recovered(make_dataset):
    "Extra fields can only be re-joined when they belong to productDisplayName; shifted columns would mislabel the row."
    df, report = load_styles(make_dataset([style_line(1), style_line(2, article="Shirts, Tops")]) / "styles.csv")
    assert df["id"].tolist() == [1] and report.recovered_commas == []
    assert report.malformed[0]["line"] == 3 and "year 'Summer' is not a number" in report.malformed[0]["reason"]


def test_duplicate_column_in_header(make_dataset):
    root = make_dataset([style_line(1) + ",2013"], header=",".join(COLUMNS) + ",year")
    with pytest.raises(DataError, match=r"\['year'\] appear more than once") as e:
        load_styles(root / "styles.csv")
    assert str(root / "styles.csv") in str(e.value)


@pytest.mark.parametrize("header, hint", [
    (",".join(COLUMNS).replace("year", "Year").replace("articleType", "ArticleType"), "case-sensitive: found "
     "'ArticleType', 'Year'"),
    (";".join(COLUMNS), "must be comma-separated, not ';'-separated"),
    ("\t".join(COLUMNS), "must be comma-separated, not '\\t'-separated"),
])
def test_missing_column_error_says_why(make_dataset, header, hint):
    root = make_dataset([style_line(1)], header=header)
    with pytest.raises(DataError) as e:
        load_styles(root / "styles.csv")
    assert hint in str(e.value) and str(root / "styles.csv") in str(e.value) and "lacks required column" in str(e.value)


def test_all_lines_malformed_error_shows_the_first_problems(make_dataset):
    root = make_dataset(["1;Men;Apparel", "2;Men;Apparel", "3;Men;Apparel", "4;Men;Apparel"])
    with pytest.raises(DataError, match="no parseable rows") as e:
        load_styles(root / "styles.csv")
    msg = str(e.value)
    assert str(root / "styles.csv") in msg and "all 4 data lines" in msg
    assert "line 2: 1 fields, expected 10" in msg and "line 4" in msg and "; ..." in msg  # the first three, then '...'


def test_utf16_styles_csv(tmp_path):
    "pandas' and Excel's 'unicode' exports are UTF-16 with a BOM: read as such, not as U+FFFD soup."
    text = "\n".join([",".join(COLUMNS), style_line(1, name="Caf\xe9, Tshirts"), style_line(2, year=2013)]) + "\n"
    for enc in ("utf-16", "utf-16-be"):
        (tmp_path / "styles.csv").write_bytes(text.encode(enc) if enc == "utf-16" else b"\xfe\xff" + text.encode(enc))
        df, report = load_styles(tmp_path / "styles.csv")
        assert list(df.columns) == COLUMNS and df["id"].tolist() == [1, 2] and report.undecodable_lines == 0
        assert df.set_index("id").loc[1, "productDisplayName"] == "Caf\xe9, Tshirts" and report.recovered_commas == [1]


# ---------------------------------------------------------------------------------------------------------------------
# Labels: parts empty after filtering, classes with a single image
# ---------------------------------------------------------------------------------------------------------------------

def test_part_empty_after_filtering_is_a_clear_error(make_dataset):
    lines = ([style_line(i, "Tshirts", 2012 + i % 2) for i in range(1, 7)]
             + [style_line(7, "Ties", 2012), style_line(8, "Ties", 2013)])
    everything = load_data(make_dataset(lines), k=2)  # --topk covers every class: nothing is left for stage two
    assert everything.vocabs["rare"] == [] and len(everything.part("rare")) == 0
    with pytest.raises(DataError, match=r"top-2 part holds every class.*--topk below 2.*--epochs2 0"):
        part_dataloaders(everything, "rare", size=SMALL, bs=8, num_workers=0)
    no_images = load_data(make_dataset(lines, images=range(1, 7)), k=1)  # the rare class's images are all missing
    assert no_images.report.missing_image == [7, 8]
    with pytest.raises(DataError, match="top-1 part holds every class with images"):
        part_dataloaders(no_images, "rare", size=SMALL, bs=8, num_workers=0)
    one_train = load_data(make_dataset(lines, images=[*range(1, 7), 7]), k=1)  # 1 train image: BatchNorm cannot train
    with pytest.raises(DataError, match=r"rare part has 1 training image.*at least 2.*--epochs2 0"):
        part_dataloaders(one_train, "rare", size=SMALL, bs=8, num_workers=0)


def test_classes_with_one_image_train_and_evaluate(make_dataset, tmp_path):
    """'Solo' has a single image (train), 'Lone' a single image (test only): both keep a vocab index, one epoch trains,
    and the evaluation counts them (Lone unseen, in the ceiling; Solo with no test image)."""
    from fashion_fastai.training.stages import build_model, train_stage
    from fashion_fastai.evaluation.evaluate import evaluate_learner
    from fashion_fastai.data.styles import eval_rows
    lines = [style_line(i, c, y) for i, (c, y) in enumerate(
        [(c, y) for c in ("Belts", "Caps") for y in (2012, 2012, 2014, 2014, 2013, 2015)]
        + [("Solo", 2012), ("Lone", 2013)], start=1)]
    data = load_data(make_dataset(lines), k=4)
    assert data.vocabs["top"] == ["Belts", "Caps", "Lone", "Solo"]
    dls = part_dataloaders(data, "top", size=SMALL, bs=4, num_workers=0, augment=False, seed=0)
    learn = build_model(STAGE1, dls, "resnet18", "imagenet", path=tmp_path)
    train_stage(learn, 1, 1e-3, 0)
    table, summary, probs, targs = evaluate_learner(learn, eval_rows(data, "top"), data.train_counts("top"))
    assert tuple(probs.shape) == (5, 4)
    assert table.loc["Solo", "n_train"] == 1 and table.loc["Solo", "n_test"] == 0
    assert table.loc["Lone", "n_train"] == 0 and table.loc["Lone", "n_test"] == 1 and not table.loc["Lone", "seen"]
    assert summary["ceiling_top1"] == pytest.approx(4 / 5)
    assert 0 <= summary["all"]["micro_top1"] <= summary["all"]["micro_top5"] <= 1
    learn.dls = part_dataloaders(data, "top", size=SMALL, bs=4, num_workers=0, seed=0)  # with augmentation: --tta
    _, tta_summary, tta_probs, tta_targs = evaluate_learner(learn, eval_rows(data, "top"), data.train_counts("top"),
                                                            tta=2)
    assert torch.equal(tta_targs, targs) and tta_probs.shape == probs.shape  # same rows, same order
    assert torch.allclose(tta_probs.sum(1), torch.ones(5)) and not torch.allclose(tta_probs, probs)
    assert tta_summary["ceiling_top1"] == summary["ceiling_top1"]


def test_topk_covering_every_class_fails_before_stage_one(demo_data, tmp_path):
    """--topk 40 on the 27-class demo leaves stage two nothing: the run stops before training anything, saying what to
    do."""
    from fashion_fastai.training.config import TrainConfig
    from fashion_fastai.train import train
    cfg = TrainConfig(data=demo_data, out=tmp_path, name='all-top', arch='resnet18', pretrained='no', size='32x24',
                      bs=8, epochs=1, epochs2=1, lr='1e-3', lr2='1e-3', topk=40, precision='fp32', seed=0, workers=0)
    with pytest.raises(DataError, match=r"top-27 part holds every class.*--topk below 27.*--epochs2 0"):
        train(cfg)
    assert not (tmp_path / 'all-top' / 'checkpoints').exists() and not list((tmp_path / 'all-top').glob('history*'))


def test_pad_resize_passes_target_sized_images_through_and_pads_others_like_fastai():
    from fastai.vision.all import PILImage, Resize, ResizeMethod, PadMode
    from fashion_fastai.data.styles import PadResize
    rng = np.random.default_rng(0)
    exact = PILImage.create(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8))  # height 80, width 60
    odd = PILImage.create(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    ours, fastai = PadResize((80, 60)), Resize((80, 60), method=ResizeMethod.Pad, pad_mode=PadMode.Border)
    for split_idx in (0, 1):  # training and validation
        assert ours(exact, split_idx=split_idx) is exact
        # what it skips is a no-op
        assert np.array_equal(np.asarray(fastai(exact, split_idx=split_idx)), np.asarray(exact))
        random.seed(split_idx); padded = ours(odd, split_idx=split_idx)
        random.seed(split_idx); expected = fastai(odd, split_idx=split_idx)  # training pads at a random offset
        assert padded.size == (60, 80) and np.array_equal(np.asarray(padded), np.asarray(expected))


def test_train_only_affine_augments_training_like_fastai_and_leaves_validation_batches_alone():
    from fastai.vision.all import Pipeline, TensorImage, aug_transforms, Normalize, imagenet_stats, Zoom
    from fashion_fastai.data.styles import batch_tfms, TrainOnlyAffine
    x = TensorImage(torch.rand(4, 3, 80, 60))
    ours = [Pipeline(batch_tfms(), split_idx=i) for i in (0, 1)]
    fastai = [Pipeline([*aug_transforms(max_rotate=5., max_zoom=1.1, max_warp=0., max_lighting=0.2),
                        Normalize.from_stats(*imagenet_stats)], split_idx=i) for i in (0, 1)]
    assert any(isinstance(t, TrainOnlyAffine) for t in ours[0].fs)
    for seed in range(3):  # training: the same random flips, rotations and zooms as fastai's
        random.seed(seed); torch.manual_seed(seed); a = ours[0](x)
        random.seed(seed); torch.manual_seed(seed); b = fastai[0](x)
        assert torch.equal(a, b) and not torch.allclose(a, ours[1](x))
    normalized = Normalize.from_stats(*imagenet_stats)(x, split_idx=1)
    assert torch.equal(ours[1](x), normalized)  # validation: untouched, then normalised
    # fastai's identity resampling: the same pixels up to float32 rounding of its sample points (linspace, unnormalize,
    # reflect at <= 79 px: <= 1.7e-5 px) x neighbour step < 1 / std 0.224 = 8e-5; a 0.001 px shift moves pixels by 1e-3
    assert torch.allclose(fastai[1](x), normalized, atol=2e-4)
    resizing = TrainOnlyAffine.like(Zoom(max_zoom=1.1, size=(40, 30)))  # one with an output size still resizes
    assert resizing(x, split_idx=1).shape[-2:] == (40, 30)
