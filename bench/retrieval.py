"""Benchmark: similar products on the real small data set.  The even-year photos are indexed with a trained run's model
(`python -m fashion_fastai.index`'s `build`), each odd-year photo is a query, and a neighbour counts as right when
`styles.csv` gives it the query's article type: precision@K (the share of the K that are right, averaged over queries)
and Recall@K (the share of queries with at least one right neighbour among the K, as public work on this data set
reports it), over every query and over the queries whose article type the index holds at all.  Then the search's
latency, one query at a time, and how exact search scales with the catalogue's size (random unit vectors of the same
width: the matrix product does not care what they mean).

    .venv/bin/python bench/retrieval.py runs/NAME        # bench/results/retrieval.json
"""
from __future__ import annotations

import json, os, platform, statistics, sys, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import numpy as np
import torch
from fastcore.script import call_parse

from fashion_fastai.core.schema import LABEL
from fashion_fastai.data.styles import load_data
from fashion_fastai.catalogue.index import Index, build, weights_only
from fashion_fastai.inference.predictors import WeightsOnlyModel
from fashion_fastai.core.models import ALL

REAL = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fashion-product-images-small'


def ms(fn, n: int) -> dict:
    "p50/p95 milliseconds of `fn()` over `n` calls, after one warm-up."
    fn()
    t = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); t.append(1000 * (time.perf_counter() - t0))
    return dict(p50=statistics.median(t), p95=statistics.quantiles(t, n=20)[18])


@call_parse
def main(run: Path,                  # a trained run folder
         data: Path = REAL,          # the Kaggle folder the run was trained on
         stage: str = None,          # which model of the run (default: as predict)
         k: int = 10,
         scales: str = '100000,1000000',  # catalogue sizes for the scaling measurement
         out: Path = Path(__file__).parent / 'results' / 'retrieval.json'):
    json_path = weights_only(run, stage)
    loaded = load_data(data)
    rows = loaded.part(ALL)
    train, test = rows[rows['split'] == 'train'], rows[rows['split'] == 'test']
    t0 = time.perf_counter()
    index, skipped = build(json_path, list(train['file']))
    index_s = time.perf_counter() - t0
    model = WeightsOnlyModel(json_path)
    t0 = time.perf_counter()
    queries, _ = model.embed(list(test['file']))
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, near = index.search(queries.numpy(), k)
    search_s = time.perf_counter() - t0
    index_labels = np.array(index.labels)
    truth = test[LABEL].to_numpy()
    right = index_labels[near] == truth[:, None]
    held = np.isin(truth, index_labels)
    quality = lambda m: dict(queries=int(m.sum()), precision_at_k=float(right[m].mean()),
                             recall_at_k=float(right[m].any(1).mean()))
    one = queries[:1].numpy()
    record = dict(command=' '.join(['python', *sys.argv]), run=str(run), model=str(json_path), k=k,
                  catalogue=len(index.ids), skipped=len(skipped), dim=int(index.vectors.shape[1]),
                  all_queries=quality(np.ones(len(truth), bool)), queries_of_indexed_types=quality(held),
                  index_img_s=len(index.ids) / index_s, query_embed_img_s=len(truth) / embed_s,
                  search_all_queries_s=search_s, search_one_query_ms=ms(lambda: index.search(one, k), 200),
                  embed_and_search_one_photo_ms=ms(
                      lambda: index.search(model.embed(test['file'][:1].tolist())[0].numpy(), k), 100),
                  scaling={},
                  machine=dict(cores=os.cpu_count(), torch=torch.__version__, threads=torch.get_num_threads(),
                                           cpu=platform.processor() or platform.machine()))
    rng = np.random.default_rng(0)
    for n in map(int, scales.split(',')):
        v = rng.normal(size=(n, record['dim'])).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        big = Index(v.astype(np.float16), [''] * n, [''] * n, [''] * n, [''] * n, {})
        del v
        one_query = ms(lambda: big.search(one, k), 20)
        record['scaling'][n] = dict(memory_mb=(big.vectors.nbytes + big.float32().nbytes) / 2**20,  # on disk + searched
                                    file_mb=big.vectors.nbytes / 2**20, one_query_ms=one_query,
                                    batch_of_64_ms=ms(lambda: big.search(queries[:64].numpy(), k), 5))
        print(f"{n} products: {record['scaling'][n]}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str))
    print(json.dumps({k_: v for k_, v in record.items() if k_ not in ('scaling', 'machine')}, indent=1, default=str))
