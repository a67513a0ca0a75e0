"""Benchmark: `python -m fashion_fastai.tag` over the real small data set's odd-year photos, images/second end to end
(listing, the up-front check of each file, decoding, the model, the CSV written and synced chunk by chunk).

The model is the documented command's network (`tf_efficientnet_lite0` at 128x96, in the layout it trains in) with
untrained weights unless `--run` names a trained run folder: speed does not depend on the weights.  Each engine tags
the same photos (links to the odd-year images in a temporary folder) into its own CSV, as a user's command would.

    .venv/bin/python bench/tag_speed.py                      # bench/results/tag-speed.json
"""
from __future__ import annotations

import json, os, platform, sys, tempfile, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import torch
from fastcore.script import call_parse

from fashion_fastai.training.artifacts import export_stage
from fashion_fastai.training.config import parse_size, resolve_channels_last
from fashion_fastai.data.styles import load_data, part_dataloaders
from fashion_fastai.shipped.onnx_export import export_onnx
from fashion_fastai.inference.load import load_model
from fashion_fastai.core.models import ALL
from fashion_fastai.training.stages import build_learner
from fashion_fastai.catalogue.tag import tag
from fashion_fastai.networks.weights import normalization

REAL = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fashion-product-images-small'


@call_parse
def main(data: Path = REAL,          # the Kaggle folder
         run: Path = None,           # a trained run folder to tag with (default: the documented network, untrained)
         arch: str = 'tf_efficientnet_lite0',
         size: str = '128x96',
         engines: str = 'torch,onnx',
         chunk: int = 256,           # tag's --chunk
         out: Path = Path(__file__).parent / 'results' / 'tag-speed.json'):
    record = dict(command=' '.join(['python', *sys.argv]), chunk=chunk, results={},
                  machine=dict(cores=os.cpu_count(), torch=torch.__version__, threads=torch.get_num_threads(),
                               cpu=platform.processor() or platform.machine()))
    loaded = load_data(data)
    odd = loaded.part(ALL).query("split == 'test'")['file'].tolist()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / 'photos').mkdir()
        for f in odd: (tmp / 'photos' / Path(f).name).symlink_to(f)
        if run is None:
            hw = parse_size(size)
            dls = part_dataloaders(loaded, ALL, size=hw, bs=32, num_workers=0, seed=0, stats=normalization(arch))
            learn = build_learner(dls, arch, path=tmp)
            if resolve_channels_last(None, 'fp32', arch): learn.to_channelslast(use_amp=False)
            export_stage(learn, tmp, 'all', arch, hw)
            run, record['model'] = tmp, f'{arch} {size}, untrained (the documented network)'
        else: record['model'] = str(run)
        if 'onnx' in engines and not any(Path(run).glob('*.onnx')):
            for j in Path(run).glob('*.json'):
                if j.name != 'config.json': export_onnx(j, odd[:64])
        for engine in engines.split(','):
            predictor = load_model(run, engine=engine)
            t0 = time.perf_counter()
            counts = tag(predictor, [tmp / 'photos'], tmp / f'tags-{engine}.csv', chunk=chunk, show=False)
            seconds = time.perf_counter() - t0
            record['results'][engine] = dict(counts, seconds=round(seconds, 1), images_per_s=counts['tagged'] / seconds)
            print(f"{engine}: {counts['tagged']} odd-year photos tagged in {seconds:.1f} s, "
                  f"{counts['tagged'] / seconds:.0f} img/s ({counts['skipped']} skipped)", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
