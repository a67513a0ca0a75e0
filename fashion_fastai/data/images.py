"""One way to turn a product image file into 8-bit RGB (pixels.py's `to_rgb`), in fastai's image types for training
and the PyTorch inference path, and the up-front check of every file.

`image_problem` decodes a file completely (JPEGs at 1/8 scale, which still reads every byte) before a run starts, so a
truncated file, a text file named `.jpg` or a decompression bomb becomes a counted skip in the load report instead of a
crash in the middle of an epoch.
"""
from __future__ import annotations

import os, warnings
from pathlib import Path

from fastai.vision.all import PILImage, Transform, TransformBlock, IntToFloatTensor
from fastcore.parallel import parallel
from PIL import Image

from fashion_fastai.data.pixels import open_rgb, to_rgb


class ProductImage(PILImage):
    "fastai's `PILImage`, decoded with `to_rgb`; use as `ImageBlock(cls=ProductImage)`."
    @classmethod
    def create(cls, fn, **kwargs):
        if isinstance(fn, (str, Path, bytes)): return cls(open_rgb(fn))
        if isinstance(fn, Image.Image) and not isinstance(fn, PILImage): return cls(to_rgb(fn))
        return super().create(fn, **kwargs)


class ReadProductImage(Transform):
    """`ProductImage.create` as the block's type transform, declaring every kind of file reference it reads: fastai's
    `test_dl` matches new items against the type seen while setting up (a `str` here), so an exported learner would
    refuse the `Path`s that `get_image_files` returns."""
    input_types = (str, Path, bytes)
    def encodes(self, fn): return ProductImage.create(fn)


def ProductImageBlock():
    "fastai's `ImageBlock(cls=ProductImage)`, reading `str` and `Path` items alike."
    return TransformBlock(type_tfms=ReadProductImage(), batch_tfms=IntToFloatTensor)


def image_problem(path) -> str | None:
    "None when `path` decodes to RGB the way training will decode it, else why not (one line)."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)  # PIL only warns between 1x and 2x its limit
            with Image.open(path) as im:
                if im.format == 'JPEG': im.draft('RGB', (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
                to_rgb(im)
        return None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"too large to decode safely ({e}); shrink the image first"
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, struct.error... for broken files
        return f"{type(e).__name__}: {e}".strip()


def check_images(files: list,          # image paths
                 n_workers: int = None, # processes (None: one per core; small lists are checked in this process)
                 ) -> dict:
    "`{file: problem}` for the files that would fail to decode; the rest are fine."
    files = list(files)
    n_workers = (os.cpu_count() or 1) if n_workers is None else n_workers
    if len(files) < 2000: n_workers = 0  # starting processes costs more than checking a few files
    problems = parallel(image_problem, files, n_workers=n_workers, chunksize=256, progress=False)
    return {f: p for f, p in zip(files, problems) if p is not None}
