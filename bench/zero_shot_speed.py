"""Benchmark: what the zero-shot path costs at inference, photos per second of `answer_probs` (decoding, the model, the
frozen ImageNet network at its own scale, the join and the temperatures) against `--closed-set` (the trained model and
its temperatures alone), on the same odd-year photos, for each engine the run has.  Each is measured twice, the order
alternated, and the faster kept (the machine's speed swings).

    .venv/bin/python bench/zero_shot_speed.py runs/NAME --photos 2000      # bench/results/zero_shot_speed.json
"""
from __future__ import annotations

import json, platform, sys, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import torch
from fastcore.script import call_parse

from fashion_fastai.inference.load import load_model


@call_parse
def main(run: Path,                    # a run folder whose models have a zero-shot path
         photos: int = 2000,           # odd-year photos of the run's data folder, in id order
         engines: str = 'torch,onnx',  # onnx needs `python -m fashion_fastai.export RUN` first; skipped without it
         out: Path = Path(__file__).parent / 'results' / 'zero_shot_speed.json'):
    run = Path(run)
    data = Path(json.loads((run / 'config.json').read_text())['data_dir'])
    import pandas as pd
    styles = pd.read_csv(data / 'styles.csv', on_bad_lines='skip', usecols=['id', 'year'])
    ids = sorted(styles[styles.year % 2 == 1].id)
    files = [f for f in (data / 'images' / f'{i}.jpg' for i in ids) if f.is_file()][:photos]
    record = dict(command=' '.join(['python', *sys.argv]), photos=len(files), threads=torch.get_num_threads(),
                  machine=platform.processor() or platform.machine(), date=time.strftime('%Y-%m-%d'), results={})
    for engine in engines.split(','):
        if engine == 'onnx' and not (run / 'imagenet.onnx').is_file(): continue
        models = {way: load_model(run, device='cpu', engine=engine, closed_set=way == 'closed-set')
                  for way in ('closed-set', 'zero-shot')}
        best = {}
        for order in (('closed-set', 'zero-shot'), ('zero-shot', 'closed-set')):
            for way in order:
                t0 = time.time()
                models[way].answer_probs(files)
                best[way] = max(best.get(way, 0.), len(files) / (time.time() - t0))
        record['results'][engine] = {way: round(v, 1) for way, v in best.items()}
        cost = round(best['closed-set'] / best['zero-shot'], 2)
        record['results'][engine]['zero-shot cost (x closed-set time)'] = cost
        print(engine, record['results'][engine], flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
