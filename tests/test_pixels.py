"""pixels.py: decoding and resizing without PyTorch, to the very bytes the training pipeline gives."""
import subprocess, sys

import numpy as np
import pytest
from PIL import Image

from fashion_fastai.core.compat import PadResize
from fashion_fastai.data.images import ProductImage
from fashion_fastai.data.pixels import image_batch, pad_resize


def _photo(w, h, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), 'RGB')


@pytest.mark.parametrize('wh', [(60, 80), (96, 128), (100, 50), (50, 100), (200, 200), (61, 79), (97, 127), (31, 300)])
@pytest.mark.parametrize('size', [(128, 96), (80, 60), (64, 64)])
def test_pad_resize_is_fastais_validation_resize(wh, size):
    "Same crop, edge padding and bilinear resize as the `PadResize` every model is trained and evaluated with."
    im = _photo(*wh, seed=wh[0] * 1000 + wh[1])
    ours = np.asarray(pad_resize(im, size))
    fastais = np.asarray(PadResize(size)(ProductImage(im), split_idx=1))
    assert ours.shape == (*size, 3) and np.array_equal(ours, fastais)


def test_image_batch_is_uint8_nchw(tmp_path):
    paths = []
    for i, wh in enumerate([(60, 80), (100, 50)]):
        paths.append(tmp_path / f'{i}.png'); _photo(*wh, seed=i).save(paths[-1])
    rgba = tmp_path / 'rgba.png'
    Image.new('RGBA', (60, 80), (0, 0, 0, 0)).save(rgba)  # transparent: white, as training sees it
    batch = image_batch([*paths, rgba], (80, 60))
    assert batch.dtype == np.uint8 and batch.shape == (3, 3, 80, 60) and (batch[2] == 255).all()
    assert image_batch([], (80, 60)).shape == (0, 3, 80, 60)


def test_needs_neither_torch_nor_fastai():
    "A shipped model decodes where PyTorch is not installed."
    code = ("import sys; import fashion_fastai.data.pixels; "
            "print(sorted(m for m in ('torch', 'fastai', 'torchvision') if m in sys.modules))")
    assert subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True).stdout.strip() == '[]'


def test_decoded_ahead_keeps_order_and_decodes_one_batch_ahead():
    "The next batch decodes while this one is used, and never more than one ahead: memory stays flat in the file count."
    from fashion_fastai.data.pixels import decoded_ahead
    started, consumed = [], []
    def decode(chunk): started.append(chunk); return chunk * 10
    for out in decoded_ahead(decode, [1, 2, 3, 4]):
        consumed.append(out)
        assert len(started) <= len(consumed) + 1  # at most the one being used and the next
    assert consumed == [10, 20, 30, 40] and started == [1, 2, 3, 4]
