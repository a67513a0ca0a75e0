"""Benchmark: our recipe against the published recipe, side by side, on the same split, arch, size and epochs.

It reproduces the measurements of 2026-11-30 (BENCHMARKS.md, "Accuracy against the published recipe" and the resnet18
rows of "Holdout decisions"): ResNets from scratch, resnet18 at 80x60 in bf16 by default, the recipe of that day.  It is
not a measurement of the documented command (`tf_efficientnet_lite0` from ImageNet weights at 128x96, with auxiliary
heads): `baseline` builds torchvision ResNets from scratch only and `ours` trains with `--pretrained no`.  That command
is measured by `bench/versus_stock.py`; settings for it are chosen with `train --holdout` runs (bench/HISTORY.md).

- `baseline`: the recipe the published ResNet50 results used, re-implemented here in plain PyTorch/torchvision from its
  description: SGD lr 1e-3 momentum 0.9, StepLR (step 5 epochs, gamma 0.1), cross-entropy weighted by inverse train
  class frequency, RandomResizedCrop (scale 0.5-1) + horizontal flip for training, resize + centre crop for testing,
  ImageNet normalisation; stage two a new head on its own stage-one body, same recipe, whole network trained.
- `ours`: the project's default recipe, through the same `train` function as `python -m fashion_fastai.train`.
- `ours-stage2-scratch`: ours with `--stage2-body scratch`, the transfer ablation: stage two alone, through the same
  `build_model`/`train_stage`/evaluation as the CLI (its stage one would be trained only to be thrown away).
Both start from scratch (no ImageNet weights on this machine). Both read the data through the project's loader (the same
rows, splits, union vocabs and greyscale handling) and are scored by the project's evaluation
(`class_table`/`summarize`), on the test split, or on the holdout carved from the even years with `--holdout F` (the set
to tune on).

    .venv/bin/python bench/accuracy.py --arch resnet18 --size 80x60 --epochs 1 --epochs2 1 --tag bs32
        # accuracy-bs32.json
    ... --reuse-ours runs/RUN
        # take `ours` from a finished CLI run with exactly these settings instead of training it again
Writes bench/results/accuracy[-<tag>].json and prints the markdown table for BENCHMARKS.md. Its "minutes"
(`train_seconds`) are training plus one pass over the evaluated split: the baseline's evaluation, our per-epoch
validation.
"""
from __future__ import annotations

import copy, dataclasses, json, os, platform, sys, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import torch, torchvision
from torch import nn
from torchvision import transforms as T
from fastcore.script import call_parse

from fashion_fastai.core.schema import LABEL
from fashion_fastai.data.styles import load_data, part_dataloaders, eval_rows, default_workers
from fashion_fastai.evaluation.scores import class_table, summarize
from fashion_fastai.data.pixels import open_rgb
from fashion_fastai.core.models import spec
from fashion_fastai.training.stages import build_model, train_stage
from fashion_fastai.training.config import TrainConfig, parse_size, parse_lr
from fashion_fastai.evaluation.evaluate import evaluate_learner
from fashion_fastai.train import train
from fastai.vision.all import set_seed

REAL = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fashion-product-images-small'
RUNS = Path(__file__).parent / 'runs'  # our runs' folders (git-ignored: models are large)
IMAGENET = dict(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


class Rows(torch.utils.data.Dataset):
    "A part's rows as (image tensor, class index): the project's RGB loading, torchvision's transforms."
    def __init__(self, rows, vocab: list, tfm):
        self.files, self.tfm = list(rows['file']), tfm
        self.y = [vocab.index(c) for c in rows[LABEL]]
    def __len__(self): return len(self.files)
    def __getitem__(self, i): return self.tfm(open_rgb(self.files[i])), self.y[i]


def transforms(size):
    """Published recipe: random resized crop (scale 0.5-1) and flip to train; resize the shorter side and centre-crop to
    test."""
    norm = [T.ToTensor(), T.Normalize(**IMAGENET)]
    return (T.Compose([T.RandomResizedCrop(size, scale=(0.5, 1.0)), T.RandomHorizontalFlip(), *norm]),
            T.Compose([T.Resize(min(size)), T.CenterCrop(size), *norm]))


def class_weights(counts: dict, vocab: list) -> torch.Tensor:
    "Inverse train frequency, scaled to mean 1 over the classes with train images (0 for the others: never a target)."
    w = torch.tensor([1 / counts[c] if counts.get(c) else 0. for c in vocab])
    return w * (w > 0).sum() / w.sum()


def fit_baseline(model, rows, vocab, counts, size, epochs, bs, workers, precision, log):
    train_tfm, _ = transforms(size)
    ds = Rows(rows[rows['split'] == 'train'], vocab, train_tfm)
    dl = torch.utils.data.DataLoader(ds, batch_size=min(bs, len(ds)), shuffle=True, num_workers=workers,
                                     # a lone last image would break BatchNorm; a tiny part still trains
                                     drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.1)
    loss_func = nn.CrossEntropyLoss(weight=class_weights(counts, vocab))
    for epoch in range(epochs):
        model.train()
        t0, total, n = time.time(), 0., 0
        for x, y in dl:
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision == 'bf16'):
                loss = loss_func(model(x).float(), y)
            opt.zero_grad(); loss.backward(); opt.step()
            total, n = total + loss.item() * len(y), n + len(y)
        sched.step()
        log(f"epoch {epoch}  train_loss {total / n:.4f}  time {time.time() - t0:.0f} s")
    return model


def predict(model, rows, vocab, size, bs, workers, precision):
    _, test_tfm = transforms(size)
    dl = torch.utils.data.DataLoader(Rows(rows, vocab, test_tfm), batch_size=bs, num_workers=workers)
    model.eval()
    probs, targs = [], []
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision == 'bf16'):
        for x, y in dl:
            probs.append(model(x).float().softmax(1)); targs.append(y)
    return torch.cat(probs), torch.cat(targs)


def eval_split_rows(data, part: str, holdout: float):
    rows = data.part(part)
    return rows[rows['split'] == ('valid' if holdout else 'test')].sort_values('id').reset_index(drop=True)


def new_head(model, n_out: int):
    model.fc = nn.Linear(model.fc.in_features, n_out)
    return model


def baseline(data, arch, size, epochs, epochs2, bs, workers, holdout, precision, seed) -> dict:
    torch.manual_seed(seed)
    out, model = {}, None
    for stage, part, n_epochs in (('stage1', 'top', epochs), ('stage2', 'rare', epochs2)):
        vocab, counts, rows = data.vocabs[part], data.train_counts(part), data.part(part)
        model = (new_head(getattr(torchvision.models, arch)(weights=None), len(vocab)) if model is None
                 else new_head(copy.deepcopy(model), len(vocab)))  # stage two: a new head on the stage-one body
        t0 = time.time()
        fit_baseline(model, rows, vocab, counts, size, n_epochs, bs, workers, precision,
                     lambda m: print(f"[baseline {stage}] {m}", flush=True))
        probs, targs = predict(model, eval_split_rows(data, part, holdout), vocab, size, bs, workers, precision)
        out[stage] = dict(summarize(class_table(probs, targs, vocab, counts)), train_seconds=round(time.time() - t0, 1))
    return out


CLI_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def ours(data_dir, out, tag, reuse: Path = None, **settings) -> dict:
    """Our CLI's run with its defaults for every setting not given. With a holdout the run validates on it and its
    history's last epoch is the holdout score (its own evaluation stays on the test split, which tuning must not read).
    `reuse`: a finished run folder whose recorded arguments equal these settings; its results are read, not
    retrained."""
    args = {**CLI_DEFAULTS, 'data': data_dir, 'pretrained': 'no', **settings}
    run = (train(TrainConfig(**{**args, 'out': out, 'name': f'bench-{tag}'})) if reuse is None else
           check_reuse(Path(reuse), TrainConfig(**args)))
    holdout = settings.get('holdout')
    stages = json.loads((run / 'metrics.json').read_text())['stages']
    cfg = json.loads((run / 'config.json').read_text())
    if holdout:
        import pandas as pd
        last = {s: pd.read_csv(run / f'history_{s}.csv').iloc[-1] for s in stages}
        return {s: dict(holdout_last_epoch=last[s][['accuracy', 'top5']].to_dict(),
                        train_seconds=cfg['timings_seconds'][s]) for s in stages}
    return {s: {**m, 'train_seconds': cfg['timings_seconds'][s]} for s, m in stages.items()}


def check_reuse(run: Path, wanted: TrainConfig) -> Path:
    """The run folder, once its config.json shows the same settings (data compared as resolved paths) and a finished
    report."""
    if not ((run / 'config.json').is_file() and (run / 'metrics.json').is_file()):
        raise SystemExit(f"accuracy: error: --reuse-ours {run} has no config.json and metrics.json: not a finished "
                         "run.")
    recorded = TrainConfig.of_run(run)  # an option newer than the run: its default
    same = lambda k, a, b: Path(a).resolve() == Path(b).resolve() if k == 'data' else a == b
    diff = {f.name: (getattr(recorded, f.name), getattr(wanted, f.name)) for f in dataclasses.fields(TrainConfig)
            if f.name not in ('out', 'name') and not same(f.name, getattr(recorded, f.name), getattr(wanted, f.name))}
    if diff: raise SystemExit(f"accuracy: error: --reuse-ours {run} was run with other settings (recorded, wanted): "
                              f"{diff}")
    return run


def stage2_alone(data, arch, size, epochs2, bs, workers, holdout, precision, seed, freeze_epochs, init, out,
                 lr2=CLI_DEFAULTS['lr2'], label_smoothing=CLI_DEFAULTS['label_smoothing']) -> dict:
    """Stage two of our recipe with a body from `init` (not stage one), through the CLI's own building blocks and
    `ours`' stage-two settings; scored like `ours` (holdout: last epoch's validation; else the test split)."""
    set_seed(seed, reproducible=True)
    dls = part_dataloaders(data, 'rare', size=size, bs=bs, num_workers=workers, seed=seed)
    learn = build_model(spec('stage2'), dls, arch, init, path=out, precision=precision, label_smoothing=label_smoothing)
    t0 = time.time()
    train_stage(learn, epochs2, parse_lr(lr2), freeze_epochs or 0)
    seconds = round(time.time() - t0, 1)
    if holdout:
        last = learn.epoch_log.rows[-1]
        return dict(holdout_last_epoch=dict(accuracy=last['accuracy'], top5=last['top5']), train_seconds=seconds)
    _, summary, _, _ = evaluate_learner(learn, eval_rows(data, 'rare'), data.train_counts('rare'))
    return dict(summary, train_seconds=seconds)


def pct(x): return '-' if x is None else f"{100 * x:.2f}%"


@call_parse
def main(data: Path = REAL,            # Kaggle folder (the real small data set)
         arch: str = 'resnet18',
         size: str = '80x60',          # (height)x(width) on both sides
         epochs: int = 1,              # stage-one epochs, both sides
         epochs2: int = 1,             # stage-two epochs, both sides
         bs: int = 32,                 # both sides (the CLI's default)
         workers: int = None,          # DataLoader workers, both sides (None: the CLI's default, 0 on <= 4 cores)
         # > 0: score on this fraction of the even years instead of the test split (for tuning)
         holdout: float = 0.,
         precision: str = 'bf16',      # fp32 | bf16, both sides
         freeze_epochs: int = 0,       # ours: head-only epochs before each stage (0: as many epochs as the baseline)
         lr: str = CLI_DEFAULTS['lr'], # ours: stage-one learning rate (a setting to tune on the holdout)
         lr2: str = CLI_DEFAULTS['lr2'], # ours: stage-two learning rate
         label_smoothing: float = CLI_DEFAULTS['label_smoothing'], # ours: label-smoothing epsilon, both stages
         which: str = 'baseline,ours,ours-stage2-scratch',
         seed: int = 42,               # as train's default
         tag: str = '',                # results file suffix
         reuse_ours: Path = None,      # a finished `train` run with exactly these settings: `ours` read from it
         out: Path = Path(__file__).parent / 'results'):
    torch.manual_seed(seed)
    size_t = parse_size(size)
    fd = load_data(data, holdout=holdout, seed=seed)  # as `train` loads it
    results, t_all = {}, time.time()
    base_workers = default_workers() if workers is None else workers
    for name in which.split(','):
        t0 = time.time()
        if name == 'baseline':
            results[name] = baseline(fd, arch, size_t, epochs, epochs2, bs, base_workers, holdout, precision, seed)
        elif name == 'ours':
            results[name] = ours(data, RUNS, f"{name}{'-' + tag if tag else ''}", reuse_ours, arch=arch, size=size,
                                 epochs=epochs, epochs2=epochs2, freeze_epochs=freeze_epochs, bs=bs, workers=workers,
                                 holdout=holdout, precision=precision, seed=seed, lr=lr, lr2=lr2,
                                 label_smoothing=label_smoothing)
        elif name == 'ours-stage2-scratch':
            results[name] = {'stage2': stage2_alone(fd, arch, size_t, epochs2, bs, base_workers, holdout, precision,
                                                    seed, freeze_epochs, 'scratch',
                                                    RUNS / f"bench-{name}{'-' + tag if tag else ''}",
                                                    lr2, label_smoothing)}
        else: raise SystemExit(f"accuracy: error: unknown --which entry {name!r}")
        results[name]['wall_seconds'] = round(time.time() - t0, 1)
        print(f"{name}: {json.dumps(results[name], default=str)[:600]}", flush=True)
    record = dict(command=' '.join(['python', *sys.argv]), data=str(data), arch=arch, size=size, epochs=epochs,
                  epochs2=epochs2, bs=bs, holdout=holdout, precision=precision, ours_settings=dict(
                      lr=lr, lr2=lr2, label_smoothing=label_smoothing, freeze_epochs=freeze_epochs),
                  wall_s=round(time.time() - t_all, 1),
                  results=results, machine=dict(cores=os.cpu_count(), torch=torch.__version__,
                                                cpu=platform.processor() or platform.machine(),
                                                gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available()
                                                else None))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"accuracy{'-' + tag if tag else ''}.json").write_text(json.dumps(record, indent=1, default=str))
    if holdout:
        for name, r in results.items():
            top1 = {s: (r[s]['holdout_last_epoch']['accuracy'] if 'holdout_last_epoch' in r[s]
                        else r[s]['all']['micro_top1']) for s in ('stage1', 'stage2') if s in r}
            print(f"{name}: holdout top-1 " + ', '.join(f"{s} {v:.4f}" for s, v in top1.items()))
        return
    print("\n| recipe | stage | micro top-1 | micro top-5 | macro top-1 | seen top-1 | seen top-5 | minutes |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        for s in ('stage1', 'stage2'):
            if s not in r: continue  # the ablation has stage two only
            m = r[s]
            print(f"| {name} | {s} | {pct(m['all']['micro_top1'])} | {pct(m['all']['micro_top5'])} | "
                  f"{pct(m['all']['macro_top1'])} | {pct(m['seen']['micro_top1'])} | {pct(m['seen']['micro_top5'])} | "
                  f"{m['train_seconds'] / 60:.1f} |")
