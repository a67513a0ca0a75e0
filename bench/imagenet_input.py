"""Benchmark: at which input size the starting network's own ImageNet classifier sees fashion photos best, measured on
even-year photos only (the zero-shot path's frozen network, zero_shot.py).

The probe: trained article types whose names match an ImageNet class (the table below, from names alone, like the
package's zero-shot table), up to `per_class` even-year photos each.  For each input size, the share of photos whose
matching ImageNet classes are among the network's top 5, and the mean probability on them; and the photos per second
of the forward pass.  The model's own input (128x96) costs a quarter of the network's pretrained 224x224.

    .venv/bin/python bench/imagenet_input.py path/to/fashion-product-images-small   # results/imagenet_input.json
"""
from __future__ import annotations

import json, platform, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import numpy as np
import pandas as pd
import timm
import torch
from fastcore.script import call_parse

from fashion_fastai.networks.lite_weights import timm_weights_file
from fashion_fastai.data.pixels import image_batch
from fashion_fastai.networks.weights import normalization
from fashion_fastai.answering.zero_shot import imagenet_index

ARCH = 'tf_efficientnet_lite0'
PROBE = {'Sunglasses': ['sunglasses', 'sunglass'], 'Backpacks': ['backpack'], 'Wallets': ['wallet'], 'Jeans': ['jean'],
         'Sweatshirts': ['sweatshirt'], 'Sandals': ['sandal'], 'Bra': ['brassiere'], 'Handbags': ['purse'],
         'Ties': ['Windsor tie', 'bow tie'], 'Sports Shoes': ['running shoe'], 'Tshirts': ['jersey'],
         'Watches': ['digital watch', 'analog clock'], 'Socks': ['sock'],
         'Swimwear': ['n03710637', 'n03710721', 'bikini']}
SIZES = ((128, 96), (224, 168), (224, 224))


@call_parse
def main(data: Path,                 # the Kaggle small data set's folder (styles.csv, images/)
         per_class: int = 60,        # even-year photos per probe class at most
         out: Path = Path(__file__).parent / 'results' / 'imagenet_input.json'):
    df = pd.read_csv(Path(data) / 'styles.csv', on_bad_lines='skip')
    df = df[(df.year % 2 == 0) & df.articleType.isin(PROBE)]
    df = df[[(Path(data) / 'images' / f'{i}.jpg').is_file() for i in df.id]]
    df = df.groupby('articleType').sample(frac=1, random_state=0).groupby('articleType').head(per_class)
    files = [Path(data) / 'images' / f'{i}.jpg' for i in df.id]
    wanted = [[imagenet_index(l) for l in PROBE[a]] for a in df.articleType]
    net = timm.create_model(ARCH, pretrained=False)
    net.load_state_dict(torch.load(timm_weights_file(ARCH), map_location='cpu', weights_only=True))
    net.eval()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in normalization(ARCH))
    result = dict(photos=len(files), classes=sorted(PROBE), per_class=per_class)
    for size in SIZES:
        x = (torch.from_numpy(image_batch(files, size)).float().div_(255) - mean) / std
        t0 = time.time()
        with torch.inference_mode(): p = torch.cat([net(x[i:i + 64]).softmax(1) for i in range(0, len(x), 64)]).numpy()
        speed = len(files) / (time.time() - t0)
        top5 = np.argsort(-p, 1)[:, :5]
        hit = np.array([bool(set(w) & set(t)) for w, t in zip(wanted, top5)])
        mass = np.array([p[i, w].sum() for i, w in enumerate(wanted)])
        per = pd.DataFrame(dict(a=df.articleType.values, hit=hit)).groupby('a').hit.mean().round(3).to_dict()
        result[f'{size[0]}x{size[1]}'] = dict(top5=round(100 * float(hit.mean()), 2),
                                              mean_prob=round(float(mass.mean()), 4),
                                              forward_photos_per_s=round(speed, 1), top5_per_class=per)
        print(size, result[f'{size[0]}x{size[1]}'], flush=True)
    result |= dict(machine=platform.processor() or platform.machine(), date=time.strftime('%Y-%m-%d'))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
