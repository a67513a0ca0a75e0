"""Decoding product images: odd modes become faithful RGB, and files that cannot be decoded are found before training
(counted skips in the load report) instead of crashing an epoch."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers import save_image, style_line
from fashion_fastai.data.styles import load_data, part_dataloaders
from fashion_fastai.data.images import ProductImage, check_images, image_problem
from fashion_fastai.data.pixels import open_rgb, to_rgb

GREY16 = (np.arange(80 * 60).reshape(80, 60) * 13 % 65536).astype(np.uint16)


def _grey16_png(path):
    Image.fromarray(GREY16).save(path, "PNG")  # PIL writes a uint16 array as a 16-bit greyscale PNG
    assert Image.open(path).mode.startswith("I")
    return path


def _transparent(mode):
    "A red square on a fully transparent background, in RGBA, LA or P (palette with a transparent index)."
    im = Image.new("RGBA", (60, 80), (0, 0, 0, 0))
    im.paste((200, 0, 0, 255), (20, 30, 40, 50))
    if mode == "LA": return im.convert("LA")
    if mode == "P":
        p = Image.new("P", (60, 80), 0)
        p.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
        p.paste(1, (20, 30, 40, 50))
        p.info["transparency"] = 0
        return p
    return im


def _truncated_jpeg(path):
    save_image(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    rgb = np.asarray(open_rgb(_grey16_png(tmp_path / "g16.png")))
    assert rgb.shape == (80, 60, 3) and rgb.dtype == np.uint8
    expected = np.round(GREY16 / 257.)
    assert np.abs(rgb[..., 0].astype(float) - expected).max() <= 1  # PIL's own convert('RGB') is ~255 everywhere
    assert abs(rgb.mean() - expected.mean()) < 1


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_becomes_white(mode):
    rgb = np.asarray(to_rgb(_transparent(mode)))
    assert rgb.shape == (80, 60, 3)
    assert (rgb[0, 0] == 255).all()  # background: white, as product shots are (convert('RGB') gives black)
    assert rgb[40, 30].tolist() != [255, 255, 255]  # the product itself is kept


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGB", "P"])
def test_ordinary_modes_become_rgb(tmp_path, mode):
    path = save_image(tmp_path / f"{mode}.jpg", mode)
    im = ProductImage.create(path)
    assert isinstance(im, ProductImage) and im.mode == "RGB" and im.size == (60, 80)
    assert ProductImage.create(path.read_bytes()).size == (60, 80)  # bytes, as fastai's `predict` may pass


def test_image_problem_accepts_good_files(tmp_path):
    assert image_problem(save_image(tmp_path / "ok.jpg")) is None
    assert image_problem(_grey16_png(tmp_path / "g16.png")) is None
    assert image_problem(save_image(tmp_path / "rgba.jpg", "RGBA")) is None  # a PNG named .jpg decodes by content


def test_image_problem_names_each_bad_file(tmp_path, monkeypatch):
    truncated = _truncated_jpeg(tmp_path / "trunc.jpg")
    assert "truncated" in image_problem(truncated).lower()
    text = tmp_path / "text.jpg"
    text.write_text("<html>404 not found</html>")
    assert "cannot identify" in image_problem(text)
    assert image_problem(tmp_path / "absent.jpg").startswith("FileNotFoundError")
    big = save_image(tmp_path / "big.jpg")  # 4,800 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # PIL warns above 1x its limit: still a skip here
    assert image_problem(big).startswith("too large to decode safely")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # and raises above 2x
    assert image_problem(big).startswith("too large to decode safely")


def test_check_images_in_worker_processes(tmp_path):
    good, bad = save_image(tmp_path / "ok.jpg"), _truncated_jpeg(tmp_path / "bad.jpg")
    files = [good] * 2100 + [bad]  # above the size where processes are used
    problems = check_images(files, n_workers=2)
    assert list(problems) == [bad] and "truncated" in problems[bad].lower()
    assert check_images([good, bad], n_workers=2) == problems  # small lists: same answer, in this process


def test_bad_images_are_counted_skips_and_odd_modes_kept(make_dataset, monkeypatch):
    lines = [style_line(i, "Tshirts" if i % 2 else "Watches", year=2012 + i % 2) for i in range(1, 13)]
    root = make_dataset(lines)
    _truncated_jpeg(root / "images" / "3.jpg")
    (root / "images" / "4.jpg").write_text("not an image")
    _grey16_png(root / "images" / "5.jpg")
    Image.new("RGB", (200, 200), "white").save(root / "images" / "6.jpg")  # 40,000 pixels: over the limit set below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20000)
    data = load_data(root, k=2)
    bad = {r["id"]: r["reason"] for r in data.report.unreadable_image}
    assert set(bad) == {3, 4, 6}
    assert "truncated" in bad[3].lower() and "cannot identify" in bad[4] and "too large" in bad[6]
    assert not set(bad) & set(data.frame["id"]) and 5 in set(data.frame["id"])
    assert data.report.usable == len(data.frame) == 9
    assert "3 unreadable image skipped" in data.report.summary()
    assert json.loads(json.dumps(data.report.to_dict()))["unreadable_image"][0]["id"] == 3
    dls = part_dataloaders(data, "top", size=(32, 24), bs=4, num_workers=0, augment=False)
    x, _ = dls.train_ds[0]
    assert isinstance(x, ProductImage)
    grey = next(i for i, item in enumerate(dls.valid_ds.items) if item["file"].endswith("/5.jpg"))  # 2013: test split
    assert np.asarray(dls.valid_ds[grey][0]).mean() < 200  # decoded through the DataBlock, not clipped to white
