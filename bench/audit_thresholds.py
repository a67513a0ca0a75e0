"""Benchmark: what the audit's near-duplicate thresholds (`--min-cosine`, `--max-bits`) let through, on the even years
of the real small data set only (the years a run trains on: the test years are not looked at to choose them).

Every pair of even-year photos that are among each other's 10 nearest by the run's embedding (cosine >= 0.80) is
measured by cosine, by the Hamming distance of their 64-bit perceptual hashes (grey structure) and of their 42-bit
colour hashes (hue and saturation histogram).  For a grid of the three thresholds: how
many pairs pass, and of those, how many share their `productDisplayName` (the same product listed twice keeps its
name; two colours of one model have different names) and how many share their article type and their colour.  A
threshold is good where the pairs that pass are mostly the same product.

    .venv/bin/python bench/audit_thresholds.py runs/NAME      # bench/results/audit_thresholds.json
"""
from __future__ import annotations

import json, platform, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import imagehash
import numpy as np
from fastcore.script import call_parse

from fashion_fastai.catalogue.audit import audited_rows, candidate_pairs
from fashion_fastai.catalogue.index import weights_only
from fashion_fastai.inference.predictors import WeightsOnlyModel
from fashion_fastai.data.pixels import open_rgb

REAL = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fashion-product-images-small'
COSINES = (0.85, 0.90, 0.95, 0.98)
BITS = (0, 2, 4, 6, 8, 12)
COLOUR_BITS = (0, 1, 2, 4, 42)  # of colorhash's 42: 42 lets every colour through


@call_parse
def main(run: Path,                  # a trained run folder (its all-classes model embeds)
         data: Path = REAL,          # the Kaggle folder
         out: Path = Path(__file__).parent / 'results' / 'audit_thresholds.json',
         ):
    t0 = time.time()
    rows, _, _ = audited_rows(Path(data), ['articleType', 'baseColour'])
    rows = rows[rows['year'].notna() & (rows['year'] % 2 == 0)].reset_index(drop=True)
    model = WeightsOnlyModel(weights_only(Path(run)), 'cpu')
    emb, _ = model.embed(list(rows['file']), 64)
    vectors = emb.numpy()
    pairs = candidate_pairs(vectors, min(COSINES) - .05)
    images = {i: open_rgb(rows['file'][i]) for i in np.unique(pairs)}
    grey = {i: imagehash.phash(im) for i, im in images.items()}
    colour = {i: imagehash.colorhash(im) for i, im in images.items()}
    cos = (vectors[pairs[:, 0]] * vectors[pairs[:, 1]]).sum(1)
    bits = np.array([grey[a] - grey[b] for a, b in pairs])
    colour_bits = np.array([colour[a] - colour[b] for a, b in pairs])
    same = {c: (rows[c].to_numpy()[pairs[:, 0]] == rows[c].to_numpy()[pairs[:, 1]])
            for c in ('productDisplayName', 'articleType', 'baseColour')}
    grid = []
    for c, b, cb in [(c, b, cb) for c in COSINES for b in BITS for cb in COLOUR_BITS]:
        keep = (cos >= c) & (bits <= b) & (colour_bits <= cb)
        n = int(keep.sum())
        grid.append(dict(min_cosine=c, max_bits=b, max_colour_bits=cb, pairs=n,
                         **{f'same_{k}': round(float(v[keep].mean()), 4) if n else None for k, v in same.items()}))
        print(json.dumps(grid[-1]))
    result = dict(run=str(run), photos=len(rows), candidate_pairs=len(pairs), grid=grid,
                  seconds=round(time.time() - t0, 1), machine=platform.processor() or platform.machine(),
                  date=time.strftime('%Y-%m-%d'))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
