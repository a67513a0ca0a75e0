"""Benchmark: how the all-classes model's head should start (`--all-head imprint|new`), a setting to choose on the
holdout.

Takes a finished `train` run, rebuilds its data and its stage-two learner (config.json, stage2.pth), and trains the
all-classes model from that body once per head, with `train`'s own building blocks and schedule (one head-only epoch,
then `--epochs` of the whole network at the run's `lr_all`).  Each is scored on the run's validation split: its holdout
when it was trained with `--holdout` (where settings are chosen), else the odd-year test split (to report the chosen
setting on a run trained before the all-classes model existed).  Stage training is shared, so a comparison costs only
the all-classes fits.

It measures whatever recipe the run was trained with (arch, size, weights, epochs), the documented one included, except
`--attributes`: the stage-two learner is rebuilt without the other attributes' heads, so a run trained with them (the
documented command's `masterCategory,subCategory`) does not load.  Train the run to compare on without them, e.g.
`python -m fashion_fastai.train --data DATA --arch tf_efficientnet_lite0 --epochs-all 0 --holdout 0.1` (the `--all-head`
decision in BENCHMARKS.md was measured so, at 80x60: bench/results/all-classes-lite0-holdout.json).

    .venv/bin/python bench/all_classes.py runs/NAME --inits imprint,new --epochs 2
Writes bench/results/all-classes-<run name>.json and prints a markdown table.
"""
from __future__ import annotations

import json, sys, tempfile, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import torch
from fastai.vision.all import set_seed
from fastcore.script import call_parse

from fashion_fastai.training.config import TrainConfig
from fashion_fastai.data.styles import ALL, load_data, part_dataloaders
from fashion_fastai.evaluation.scores import by_part
from fashion_fastai.evaluation.evaluate import evaluate_learner
from fashion_fastai.core.models import spec
from fashion_fastai.training.stages import build_model, build_learner, train_stage
from accuracy import eval_split_rows  # the validation rows exactly as the accuracy benchmark scores them


def pct(x): return '-' if x is None else f"{100 * x:.2f}%"


@call_parse
def main(run: Path,                # a finished `train` run folder (with stage2.pth)
         inits: str = 'imprint,new', # the heads to compare
         epochs: int = None,       # whole-network epochs after the head epoch (default: the run's --epochs-all)
         out: Path = Path(__file__).parent / 'results'):
    recorded = json.loads((run / 'config.json').read_text())
    # arch, size, precision as this machine runs them
    cfg = TrainConfig.of_run(run).resolve(recorded.get('resolved'))[0]
    epochs = cfg.epochs_all if epochs is None else epochs
    meta = json.loads((run / 'stage2.json').read_text())
    data = load_data(cfg.data or recorded['data_dir'], **{**cfg.data_options(), 'attributes': ()})
    kw = dict(size=cfg.size, bs=cfg.bs, num_workers=cfg.workers, seed=cfg.seed, stats=(meta['mean'], meta['std']))
    work = Path(tempfile.mkdtemp(prefix='all-classes-'))
    stage2 = build_learner(part_dataloaders(data, 'rare', **kw), cfg.arch, path=work, stage='stage2')
    stage2.model.load_state_dict(torch.load(run / 'stage2.pth', map_location='cpu', weights_only=True))
    dls = part_dataloaders(data, ALL, **kw)
    rows, counts = eval_split_rows(data, ALL, cfg.holdout), data.train_counts(ALL)
    split = 'holdout' if cfg.holdout else 'test'
    record = dict(command=' '.join(['python', *sys.argv]), run=str(run), arch=cfg.arch, size=cfg.size, epochs=epochs,
                  lr=cfg.lr_all, split=split, images=len(rows), results={})
    for init in inits.split(','):
        set_seed(cfg.seed, reproducible=True)
        t0 = time.time()
        learn = build_model(spec(ALL), dls, cfg.arch, 'stage2', init, source=stage2, path=work, precision=cfg.precision,
                            label_smoothing=cfg.label_smoothing)
        start = evaluate_learner(learn, rows, counts)[1]  # before any fine-tuning: what the head knows from the start
        train_stage(learn, epochs, cfg.lr_all, freeze_epochs=1)
        table, summary, _, _ = evaluate_learner(learn, rows, counts)
        parts = by_part(table, {p: data.vocabs[p] for p in ('top', 'rare')})
        record['results'][init] = dict(before_top1=start['all']['micro_top1'], top1=summary['all']['micro_top1'],
                                       top5=summary['all']['micro_top5'], macro_top1=summary['all']['macro_top1'],
                                       seen_top1=summary['seen']['micro_top1'], ceiling=summary['ceiling_top1'],
                                       top_part_top1=parts['top']['micro_top1'],
                                       rare_part_top1=parts['rare']['micro_top1'], seconds=round(time.time() - t0, 1))
        print(f"{init}: {json.dumps(record['results'][init])}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f'all-classes-{run.name}.json').write_text(json.dumps(record, indent=1))
    print(f"\n{split} split, {len(rows)} images, {cfg.arch} at {cfg.size[0]}x{cfg.size[1]}, 1 head + {epochs} epochs\n"
          "| head | top-1 before fine-tuning | top-1 | top-5 | macro top-1 | seen top-1 | top part | rare part "
          "| minutes |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for init, r in record['results'].items():
        print(f"| {init} | {pct(r['before_top1'])} | {pct(r['top1'])} | {pct(r['top5'])} | {pct(r['macro_top1'])} | "
              f"{pct(r['seen_top1'])} | {pct(r['top_part_top1'])} | {pct(r['rare_part_top1'])} | "
              f"{r['seconds'] / 60:.1f} |")
