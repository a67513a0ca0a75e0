"""Product photo files to the model's input pixels with Pillow and numpy alone, so that a shipped model
(shipped/runtime.py, ONNX Runtime) decodes exactly as training does without PyTorch or fastai installed.

fastai's `PILImage.create` is `Image.convert('RGB')`, which is right for JPEG but wrong for two kinds of files found in
scraped catalogues: 16-bit greyscale PNGs (PIL clips them, so they come out almost white) and images with transparency
(the transparent background turns black, while product shots are photographed on white).  `to_rgb` handles both.
`pad_resize` is the evaluation path of the resize every model is trained with (`compat.PadResize`, fastai's padding
`Resize`): the same crop, edge padding and bilinear resize, so both engines see the same bytes.
"""
from __future__ import annotations

import concurrent.futures as cf, io

import numpy as np
from PIL import Image

_WIDE_GREY = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F')


def to_rgb(im: Image.Image) -> Image.Image:
    "8-bit RGB: wide greyscale scaled down, not clipped; transparency composited onto white."
    if im.mode in _WIDE_GREY:
        a = np.asarray(im, dtype=np.float64)
        top = 1. if im.mode == 'F' and a.max() <= 1 else 65535. if im.mode.startswith('I;16') or a.max() > 255 else 255.
        im = Image.fromarray(np.clip(a * (255. / top), 0, 255).round().astype(np.uint8), 'L')
    if im.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or 'transparency' in im.info:
        rgba = im.convert('RGBA')
        return Image.alpha_composite(Image.new('RGBA', rgba.size, (255, 255, 255, 255)), rgba).convert('RGB')
    return im.convert('RGB')


def open_rgb(fn) -> Image.Image:
    "Decode a path or bytes fully (the file is closed afterwards) and return `to_rgb` of it."
    with Image.open(io.BytesIO(fn) if isinstance(fn, bytes) else fn) as im:
        im.load()
        return to_rgb(im)


def pad_resize(im: Image.Image, size) -> Image.Image:
    """fastai's `Resize(size, ResizeMethod.Pad, PadMode.Border)` on a validation item, `size` (height, width): the
    centred box of the target's aspect ratio that holds the whole image, its outside filled by repeating the edge
    pixels, resized bilinearly; an image already of that size passes through (`compat.PadResize`)."""
    th, tw = size
    w, h = im.size
    if (w, h) == (tw, th): return im
    m = w / tw if w / tw > h / th else h / th
    cw, ch = int(m * tw), int(m * th)
    left, top = int(0.5 * (w - cw)), int(0.5 * (h - ch))
    if left >= 0 or top >= 0 or left + cw <= w or top + ch <= h:  # some side inside the image: crop it
        im = im.crop((max(left, 0), max(top, 0), min(left + cw, w), min(top + ch, h)))
    if left < 0 or top < 0 or left + cw >= w or top + ch >= h:  # some side outside: pad by repeating the edge
        pl, pt = max(-left, 0), max(-top, 0)
        pr, pb = max(cw - w + left, 0), max(ch - h + top, 0)
        if pl or pt or pr or pb:
            im = Image.fromarray(np.pad(np.asarray(im), ((pt, pb), (pl, pr), (0, 0)), mode='edge'))
    return im.resize((tw, th), Image.BILINEAR)


def image_batch(paths, size) -> np.ndarray:
    "The files as one uint8 batch [N, 3, height, width] of RGB pixels, decoded and resized as in training."
    return np.stack([np.asarray(pad_resize(open_rgb(p), size)).transpose(2, 0, 1) for p in paths]) if len(paths) else \
        np.zeros((0, 3, *size), np.uint8)


def decoded_ahead(decode, chunks: list):
    "`decode` of each chunk, in order, the next one decoded in a thread while the caller works on this one (one ahead)."
    with cf.ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(decode, chunks[0])
        for nxt in chunks[1:]:
            done, ahead = ahead.result(), pool.submit(decode, nxt)
            yield done
        yield ahead.result()
