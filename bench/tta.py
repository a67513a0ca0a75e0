"""Benchmark: does test-time augmentation help our models?  A setting (`train --tta`) to choose on the holdout.

Takes a finished `train` run that validated on a holdout (`--holdout F`), rebuilds the same holdout (same data, top-k,
ranking, fraction and seed, from the run's config.json), and scores each exported stage on it three ways, through the
run's own evaluation code (`tta.predict_with_tta`): plain `get_preds`; `flip`, each image averaged with its mirror
image; and fastai's `tta` (`n` passes with the training augmentation, averaged, blended with the plain pass at fastai's
beta 0.25; `--n 0` leaves it out).  A run without a holdout is refused: its validation split is the test split, which
settings must never be chosen on.

It measures whatever recipe the run was trained with, the documented one included (with `--attributes` it scores the
article type's head), e.g. on `python -m fashion_fastai.train --data DATA --arch tf_efficientnet_lite0 --holdout 0.1`:

    .venv/bin/python bench/tta.py runs/NAME --n 4
    .venv/bin/python bench/tta.py bench/runs/bench-ours-holdout-default   # resnet18, 2026-11-30 (bench/accuracy.py)
Writes bench/results/tta-<run name>.json and prints a markdown table.
"""
from __future__ import annotations

import json, sys, time, warnings
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
from fastai.vision.all import load_learner
from fastcore.script import call_parse

from fashion_fastai.networks.attributes import article_vocab
from fashion_fastai.training.config import TrainConfig, FLIP
from fashion_fastai.evaluation.tta import predict_with_tta
from fashion_fastai.data.styles import load_data, as_items
from fashion_fastai.evaluation.scores import class_table, summarize
from accuracy import eval_split_rows  # the holdout rows exactly as the accuracy benchmark scores them

PARTS = {'stage1': 'top', 'stage2': 'rare'}


def holdout_rows(run: Path):
    "The run's holdout rows per stage, from its recorded arguments and data folder."
    cfg = TrainConfig.of_run(run)
    data_dir = cfg.data or json.loads((run / 'config.json').read_text())['data_dir']
    if not cfg.holdout:
        raise SystemExit(f"tta: error: {run} validated on the test split (no --holdout): choose settings on a holdout "
                         "run.")
    data = load_data(data_dir, **cfg.data_options())
    return data, {s: eval_split_rows(data, p, cfg.holdout) for s, p in PARTS.items()}


def scores(probs, targs, vocab, counts) -> dict:
    # with --attributes: the article type's head is last
    if isinstance(probs, tuple): probs, targs = probs[-1], targs[-1]
    s = summarize(class_table(probs, targs, vocab, counts))
    return dict(top1=s['all']['micro_top1'], top5=s['all']['micro_top5'], seen_top1=s['seen']['micro_top1'])


def exported_stages(run: Path):
    "(stage, its part, its exported learner on the CPU) for each stage the run exported (--epochs2 0: stage one alone)."
    for stage, part in PARTS.items():
        if not (run / f'{stage}.pkl').is_file(): continue
        with warnings.catch_warnings():  # our own file: the pickle warning is noise here
            warnings.filterwarnings('ignore', message='load_learner` uses Python', category=UserWarning)
            yield stage, part, load_learner(run / f'{stage}.pkl', cpu=True)


@call_parse
def main(run: Path,            # a `train` run folder trained with --holdout
         n: int = 4,           # fastai tta's augmented passes (0: plain and flip only)
         out: Path = Path(__file__).parent / 'results'):
    data, rows = holdout_rows(run)
    cfg = TrainConfig.of_run(run)
    ways = {'plain': 0, 'flip': FLIP, **({f'tta{n}': n} if n else {})}
    record = dict(command=' '.join(['python', *sys.argv]), run=str(run), n=n, stages={})
    for stage, part, learn in exported_stages(run):
        vocab, counts = article_vocab(learn.dls), data.train_counts(part)
        dl = learn.dls.test_dl(as_items(rows[stage], cfg.attributes), with_labels=True, shuffle=False)
        r = record['stages'][stage] = dict(images=len(rows[stage]))
        for name, tta in ways.items():
            t0 = time.time()
            with learn.no_bar(): r[name] = scores(*predict_with_tta(learn, dl, tta), vocab, counts)
            r[name]['seconds'] = round(time.time() - t0, 1)
        print(f"{stage}: {json.dumps(r)}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f'tta-{run.name}.json').write_text(json.dumps(record, indent=1))
    print("\n| stage | holdout images | " + ' | '.join(f'{w} top-1 (seconds)' for w in ways) + " |\n|---|---:|"
          + "---:|" * len(ways))
    for stage, r in record['stages'].items():
        print(f"| {stage} | {r['images']} | "
              + ' | '.join(f"{100 * r[w]['top1']:.2f}% ({r[w]['seconds']:.0f})" for w in ways) + " |")
