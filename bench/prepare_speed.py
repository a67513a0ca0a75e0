"""Benchmark: building the pre-resized cache, and what training on it gains over training on full-size files.

There is no full-size data set on this machine, so the full-size folder is GENERATED here: N product-like 1800x2400
JPEGs (a light background, a few coloured shapes, sensor-like noise so that JPEG sizes are realistic), in the Kaggle
layout. Measured, each the median of `--repeats` runs:
  1. cache build (`prepare`) images/second, with 0 worker processes and with one per core;
  2. one training epoch (resnet18 at --size, fp32, from scratch) on the full-size folder vs on its cache: images/second;
  3. the data pipeline alone (decode + resize + batch transforms) on both, images/second.
Writes bench/results/prepare_speed.json and prints a markdown table for BENCHMARKS.md.

The epoch trains resnet18 from scratch at a square `--size`: the measurement of 2026-11-30 (BENCHMARKS.md, "Pre-resized
cache"; bench/HISTORY.md), not the documented command, which reads the small data set (no cache) with
`tf_efficientnet_lite0` at 128x96.  The pipeline's gain does not depend on the model; the epoch's does (on the cache
the model bounds the epoch).

    .venv/bin/python bench/prepare_speed.py --n 96 --size 224 --repeats 3
"""
from __future__ import annotations

import json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from fastcore.script import call_parse
from PIL import Image, ImageDraw

from fashion_fastai.core.schema import COLUMNS
from fashion_fastai.data.styles import load_data, part_dataloaders
from fashion_fastai.core.models import MODELS
from fashion_fastai.data.prepare import prepare
from fashion_fastai.training.stages import build_model

CLASSES = ['Tshirts', 'Shirts', 'Watches', 'Casual Shoes']
HEADER = ','.join(COLUMNS) + '\n'


def generate_full_size(root: Path, n: int, seed: int = 0) -> Path:
    "n 1800x2400 JPEGs in the Kaggle layout, half of them in even years (train), half in odd (test)."
    rng = np.random.default_rng(seed)
    (root / 'images').mkdir(parents=True)
    lines = [HEADER]
    for i in range(n):
        im = Image.new('RGB', (1800, 2400), tuple(int(v) for v in rng.integers(225, 256, 3)))
        d = ImageDraw.Draw(im)
        for _ in range(4):
            x, y = int(rng.integers(100, 1300)), int(rng.integers(100, 1800))
            d.rectangle((x, y, x + int(rng.integers(200, 500)), y + int(rng.integers(200, 600))),
                        fill=tuple(int(v) for v in rng.integers(0, 200, 3)))
        a = np.asarray(im, dtype=np.int16) + rng.normal(0, 6, (2400, 1800, 1)).astype(np.int16)
        Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(root / 'images' / f'{i}.jpg', quality=90)
        lines.append(f"{i},Men,Apparel,Topwear,{CLASSES[i % len(CLASSES)]},Blue,Summer,{2012 + i % 2},Casual,item "
                     f"{i}\n")
    (root / 'styles.csv').write_text(''.join(lines))
    return root


def epoch_rate(data_dir: Path, size, bs: int, train: bool) -> float:
    "Images/second of one pass over the training set: a training epoch, or only the data pipeline."
    data = load_data(data_dir, k=len(CLASSES))
    dls = part_dataloaders(data, 'top', size=size, bs=bs, num_workers=0, seed=0)
    n = len(dls.train) * dls.train.bs
    t0 = time.perf_counter()
    if train:
        learn = build_model(MODELS[0], dls, 'resnet18', 'scratch')
        learn.fit(1, 1e-3)  # includes validation on the odd half: the same images for both folders
        n += len(dls.valid_ds)
    else:
        for _ in dls.train: pass
    return n / (time.perf_counter() - t0)


@call_parse
def main(n: int = 96,          # generated full-size images
         size: int = 224,      # cache --size (longer side) and square model input
         bs: int = 16,         # batch size
         repeats: int = 3,     # runs of each measurement (median reported)
         out: Path = Path(__file__).parent / 'results' / 'prepare_speed.json'):
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        full = generate_full_size(tmp / 'full', n)
        mb = sum(f.stat().st_size for f in (full / 'images').iterdir()) / 2**20
        print(f"generated {n} full-size JPEGs ({mb:.0f} MB) in {time.perf_counter() - t0:.0f} s", flush=True)
        build = {}
        for workers in (0, os.cpu_count() or 1):
            rates = []
            for r in range(repeats):
                cache = tmp / f'cache-{workers}-{r}'
                t = time.perf_counter()
                prepare(full, cache, size=size, workers=workers, progress=False)
                rates.append(n / (time.perf_counter() - t))
            build[workers] = statistics.median(rates)
            print(f"cache build, {workers} workers: {build[workers]:.1f} img/s", flush=True)
        cache = tmp / 'cache-0-0'
        res = {}
        for what, train in (('pipeline', False), ('epoch', True)):
            full_r, cache_r = [], []
            for _ in range(repeats):  # alternate, so that a slow spell of the machine hits both
                full_r.append(epoch_rate(full, (size, size), bs, train))
                cache_r.append(epoch_rate(cache, (size, size), bs, train))
            res[what] = dict(full=statistics.median(full_r), cache=statistics.median(cache_r), full_all=full_r,
                             cache_all=cache_r)
            print(f"{what}: full-size {res[what]['full']:.1f} img/s, cache {res[what]['cache']:.1f} img/s "
                  f"(x{res[what]['cache'] / res[what]['full']:.2f})", flush=True)
    result = dict(command=' '.join([Path(sys.executable).name, *sys.argv]), n=n, size=size, bs=bs, repeats=repeats,
                  generated_mb=round(mb, 1), cache_build_img_s={str(k): v for k, v in build.items()}, **res,
                  machine=dict(cores=os.cpu_count(), torch=torch.__version__,
                               cpu=platform.processor() or platform.machine(),
                               gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n| measurement (generated 1800x2400 JPEGs, n={n}, size {size}) | full-size files | cache | gain "
          "|\n|---|---:|---:|---:|")
    for what in ('pipeline', 'epoch'):
        print(f"| {what} img/s | {res[what]['full']:.1f} | {res[what]['cache']:.1f} | "
              f"x{res[what]['cache'] / res[what]['full']:.2f} |")
    print("\ncache build: " + ', '.join(f"{v:.1f} img/s with {k} workers" for k, v in build.items()))
