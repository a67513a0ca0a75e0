"""The steps of one training run, in the order `train` calls them: set up the run, fit a stage, evaluate and export it,
write the report.

Several processes may run these together (see distributed.py): they all train, while only the main one writes the run
folder, evaluates and exports, through `on_main`; the others wait for it there.
"""
from __future__ import annotations

import json, platform, sys, time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch
import torchvision
import fastai
from fastai.vision.all import set_seed, Learner

from . import __version__
from .atomic import atomic_write_text
from .artifacts import export_stage
from .checkpoint import read_state, write_state
from .config import TrainConfig
from .attributes import article_vocab, head_vocabs
from .data import load_data, part_dataloaders, eval_rows, as_items, FashionData, ALL, LABEL, MISSING_CODE
from .demo import demo_dir
from .distributed import init_distributed, from_main, per_process_bs, num_distrib, alone, say, on_main
from .errors import OptionError
from .evaluate import (class_table, summarize, by_part, write_report, plot_losses, plot_confusion, plot_per_class,
                       plot_top_losses)
from .stages import train_stage, KeepValidPreds
from .tta import predict_with_tta, FLIP
from .weights import resolve_weights, WeightsInfo

PARTS = {'stage1': 'top', 'stage2': 'rare', 'all': ALL}  # what each learner is trained and evaluated on


@dataclass
class Run:
    "What a run knows once it is set up; `record` is its config.json."
    cfg: TrainConfig
    dir: Path
    data: FashionData
    imagenet: dict | None  # the starting ImageNet state_dict (None: scratch)
    weights: WeightsInfo
    resumed: dict          # {stage: its checkpoint state, or None}
    record: dict
    started: float

    def dataloaders(self, part: str):
        c = self.cfg
        return part_dataloaders(self.data, part, size=c.size, bs=self.record['distributed']['bs_per_process'],
                                num_workers=c.workers, seed=c.seed, stats=self.weights.stats)


def make_run_dir(run_dir: Path) -> Path:
    "Create the run folder and prove it is writable now, not after an hour of training."
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / '.write-test'
        probe.write_text('ok'); probe.unlink()
    except OSError as e:
        raise OptionError(f"Cannot write the run folder {run_dir} ({e.strerror}): choose another --out.") from e
    return run_dir


def versions() -> dict:
    return dict(fashion_fastai=__version__, python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__, fastai=fastai.__version__,
                device=str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else f'cpu ({torch.get_num_threads()} threads)')


def _write_json(path: Path, obj) -> None: atomic_write_text(path, json.dumps(obj, indent=1))


def set_up_run(cfg: TrainConfig, resume: Path = None) -> Run:
    "The run folder, the data, the starting weights and config.json; with `resume`, the checkpoints to continue from."
    started = time.time()
    backend = init_distributed()  # None unless launched on several processes
    run_dir = Path(resume) if resume else cfg.out / from_main(cfg.name or datetime.now().strftime('%Y%m%d-%H%M%S'))
    on_main(make_run_dir, run_dir)
    data_dir = cfg.data if cfg.data is not None else demo_dir(scale=cfg.demo_scale)
    if cfg.data is None: say(f"No --data: using the built-in demo data set at {data_dir}")
    set_seed(cfg.seed, reproducible=True)
    data = load_data(data_dir, k=cfg.topk, rank_on=cfg.rank_on, holdout=cfg.holdout, seed=cfg.seed,
                     attributes=cfg.attributes)
    say('Loaded: ' + data.report.summary())
    imagenet, winfo = resolve_weights(cfg.arch, cfg.pretrained, cfg.weights)
    say(f"Starting weights: {'ImageNet ' + winfo.source if winfo.pretrained else 'scratch'} ({winfo.note})")
    processes = dict(processes=max(num_distrib(), 1), backend=backend, bs_per_process=per_process_bs(cfg.bs))
    if backend: say(f"Distributed: {processes['processes']} processes ({backend}), {processes['bs_per_process']} images "
                    f"each per step (--bs {cfg.bs} in all); the main one writes {run_dir}")
    record = {**cfg.to_dict(), 'command': 'python -m fashion_fastai.train ' + ' '.join(sys.argv[1:]),
              'data_dir': str(data_dir), 'distributed': processes, 'weights_info': winfo.to_dict(),
              'versions': versions(), 'top_classes': data.top}
    if resume:
        old = json.loads((run_dir / 'config.json').read_text())
        record['command'], record['resumed_by'] = old['command'], old.get('resumed_by', []) + [record['command']]
    on_main(lambda: (_write_json(run_dir / 'load_report.json', data.report.to_dict()),
                     _write_json(run_dir / 'config.json', record)))
    resumed = {s: read_state(run_dir, s) if resume else None for s in PARTS}
    return Run(cfg, run_dir, data, imagenet, winfo, resumed, record, started)


def fit_stage(run: Run, stage: str, learn: Learner, epochs: int, lr) -> dict:
    """Train the stage, or, when resuming, finish it (or reload it when it was done); checkpoints every epoch.  Returns
    how it was trained."""
    fe, state = run.cfg.head_epochs(stage), run.resumed[stage]
    say(f"== {stage}: {PARTS[stage]} part, {len(article_vocab(learn.dls))} classes, {len(learn.dls.train_ds)} train / "
        f"{len(learn.dls.valid_ds)} validation images, {epochs} epochs (+{fe} frozen)")
    if state and state['done']:
        say(f"{stage}: already trained, reloading {stage}.pth")
        learn.model.load_state_dict(torch.load(run.dir / f'{stage}.pth', map_location='cpu', weights_only=True))
        learn.epoch_log.rows = state['rows']
        return dict(lr=state['lr'], train_seconds=state['train_seconds'], epochs=epochs, freeze_epochs=fe, exported=True)
    if state: say(f"{stage}: resuming after {state['phase']} epoch {state['epoch']}")
    if not run.cfg.holdout and run.cfg.tta in (0, FLIP) and num_distrib() <= 1:
        learn.add_cb(KeepValidPreds())  # validating on the test split: its last pass is the evaluation (or flip's plain half)
    t0 = time.time()
    used_lr = train_stage(learn, epochs, lr, fe, run_dir=run.dir, resume=state)
    train_s = round(time.time() - t0 + (state['train_seconds'] if state else 0.), 1)
    say(f"{stage}: trained in {train_s / 60:.1f} min (lr {used_lr:.3g})")
    return dict(lr=used_lr, train_seconds=train_s, epochs=epochs, freeze_epochs=fe, exported=False)


def evaluate_heads(learn, rows: pd.DataFrame,
                   train_counts: dict, # {head: {class: training images}} for the heads to tabulate (LABEL: the article type)
                   tta=0,                   # test-time augmentation: 0, 'flip' or fastai tta passes (see tta.py)
                   predicted: tuple = None, # (outputs, targets) of `rows` already predicted (`KeepValidPreds`): no new pass
                   ):
    """Predict the part's test rows once, in a fixed order (with `tta`: flip's one extra pass, or fastai's `tta` passes),
    and tabulate each head asked for: per-class top-1/top-5 for the article type, top-1 for another attribute, over the
    rows that have it.  Returns {head: (table, summary, probs, targets)}."""
    heads = head_vocabs(learn.model, article_vocab(learn.dls))
    if predicted is not None and not tta: probs, targs = predicted
    else:
        dl = learn.dls.test_dl(as_items(rows, [h for h in heads if h != LABEL]), with_labels=True, shuffle=False)
        with alone():  # only the main process evaluates
            probs, targs = predict_with_tta(learn, dl, tta, predicted)
    if not isinstance(probs, tuple): probs, targs = (probs,), (targs,)
    out = {}
    for (head, vocab), p, t in zip(heads.items(), probs, targs):
        if head not in train_counts: continue
        keep = t != MISSING_CODE  # rows without the attribute are left out of its numbers (counted in the load report)
        p, t = p[keep], t[keep]
        table = class_table(p, t, vocab, train_counts[head], ks=(1, 5) if head == LABEL else (1,))
        out[head] = table, summarize(table, ks=(1, 5) if head == LABEL else (1,)), p, t
    return out


def evaluate_learner(learn, rows: pd.DataFrame, train_counts: dict, tta=0):
    "The article type's (table, summary, probs, targets) on the part's test rows (see `evaluate_heads`)."
    return evaluate_heads(learn, rows, {LABEL: train_counts}, tta)[LABEL]


def attribute_counts(run: Run, stage: str) -> dict:
    """{attribute: training images per value} that the stage's other heads have seen: the top part's in stage one; every
    part's after it, since those heads carry on from stage one (unless stage two starts elsewhere)."""
    seen = PARTS[stage] if stage == 'stage1' or (stage == 'stage2' and run.cfg.stage2_init != 'stage1') else ALL
    return {a: run.data.train_counts(seen, a) for a in run.data.attributes}


def headline(summary: dict) -> str:
    pct = lambda v: '–' if v is None else f'{100 * v:.2f}%'
    parts = ''.join(f"; {p} part top-1 {pct(s['micro_top1'])}" for p, s in summary.get('parts', {}).items())
    top5 = f", top-5 {pct(summary['all']['micro_top5'])}" if 'micro_top5' in summary['all'] else ''
    return (f"test micro top-1 {pct(summary['all']['micro_top1'])}{top5}; "
            f"seen-class top-1 {pct(summary['seen']['micro_top1'])} (ceiling {pct(summary['ceiling_top1'])}){parts}")


def evaluate_and_export(run: Run, stage: str, learn: Learner, fit: dict) -> dict:
    "Evaluate the stage on its test rows, export it (once) and plot its history; returns what the report needs."
    history = pd.DataFrame(learn.epoch_log.rows)
    atomic_write_text(run.dir / f'history_{stage}.csv', history.to_csv(index=False))
    part = PARTS[stage]
    kept = getattr(learn, 'keep_valid_preds', None)
    predicted = kept.result if kept is not None else None  # None: reloaded, or validated elsewhere than the test split
    rows = pd.DataFrame(learn.dls.valid_ds.items) if predicted is not None else eval_rows(run.data, part)
    heads = evaluate_heads(learn, rows, {LABEL: run.data.train_counts(part), **attribute_counts(run, stage)}, run.cfg.tta,
                           predicted)
    table, summary, probs, targs = heads.pop(LABEL)
    if part == ALL: summary['parts'] = by_part(table, {p: run.data.vocabs[p] for p in ('top', 'rare')})
    say(f"{stage}: {headline(summary)}")
    for a, (_, s, _, _) in heads.items(): say(f"{stage} {a}: {headline(s)}")
    if not fit['exported']:
        export_stage(learn, run.dir, stage, run.cfg.arch, run.cfg.size)
        write_state(run.dir, stage, dict(done=True, lr=fit['lr'], train_seconds=fit['train_seconds'],
                                         rows=learn.epoch_log.rows, vocab=article_vocab(learn.dls)))
    plot_losses(history, run.dir / f'losses_{stage}.png', f'{stage}: losses and metrics per epoch')
    return dict(fit, table=table, summary=summary, probs=probs, targs=targs, files=list(rows['file']),
                vocab=article_vocab(learn.dls),
                attributes={a: dict(table=t, summary=s, probs=p, targs=y, vocab=list(t.index)) for a, (t, s, p, y) in heads.items()})


def header_markdown(run: Run, timings: dict) -> str:
    c, w = run.cfg, run.weights
    scratch = '' if w.pretrained else (
        "\n> **Trained from scratch: no ImageNet weights were used** "
        f"({w.note}). Published numbers for this protocol use ImageNet-pretrained ResNet50 on a GPU.\n")
    validated = ('a holdout of %.0f%% of the even years' % (100 * c.holdout) if c.holdout else
                 'the odd-year test split itself, with a fixed schedule and no model selection (as the published runs did)')
    attributes = '' if not c.attributes else (
        f"\n| other attributes | a head each for {', '.join(c.attributes)} beside articleType's, in every model; loss "
        f"weights {', '.join(f'{n} {w:g}' for n, w in zip(('articleType', *c.attributes), c.attribute_weights))}; rows "
        f"without an attribute are left out of its head (counted under Loading) |")
    d = run.record['distributed']
    processes = '' if d['processes'] <= 1 else (
        f"\n| processes | {d['processes']} ({d['backend']}), {d['bs_per_process']} images each per step; epoch lines "
        f"show the main process's share of the validation images, the evaluation below all of them |")
    return f"""# fashion_fastai results

Command: `{run.record['command']}`
{scratch}
| | |
|---|---|
| data | `{run.record['data_dir']}` |
| arch | {c.arch} at {c.size[0]}x{c.size[1]} (height x width), batch size {c.bs}, {c.precision}{', channels_last' if c.channels_last else ''}{f", label smoothing {c.label_smoothing}" if c.label_smoothing else ''} |
| starting weights | {'ImageNet: ' + w.source if w.pretrained else 'scratch'} ({w.note}) |
| stage one | top-{c.topk} classes (ranked over {c.rank_on} rows), {c.epochs} epochs |
| stage two | rare classes, body from {c.stage2_init}, head {c.stage2_head}, {c.epochs2} epochs |
| all classes | every article type, body from the last stage, head {c.all_init}, {c.epochs_all} epochs |{attributes}
| validation during training | {validated} |{processes}
| evaluation | odd-year test split, every image with a known class, fixed order{'; test-time augmentation: ' + ('each image averaged with its mirror image' if c.tta == FLIP else f'fastai tta, {c.tta} passes') if c.tta else ''} |
| time | stage one {timings.get('stage1', 0) / 60:.1f} min, stage two {timings.get('stage2', 0) / 60:.1f} min, all classes {timings.get(ALL, 0) / 60:.1f} min, total {timings['total'] / 60:.1f} min{' (since the last --resume; stage times include the epochs before it)' if timings.get('resumed') else ''} |
| versions | {', '.join(f'{k} {v}' for k, v in run.record['versions'].items())} |

Loading: {run.data.report.summary()}. Skipped ids are listed in `load_report.json`.

"Seen" classes have at least one training image. A class with test images but no training image can be right only by
chance (nothing taught the model it), so the ceiling, the share of test images whose class is seen, is what a model
reaches that is right on every seen image and makes no lucky guess.
"""


def write_results(run: Run, results: dict) -> None:
    "Plots, the final config.json (learning rates used, timings), results.md and metrics.json, and a summary on stdout."
    timings = {s: r['train_seconds'] for s, r in results.items()}
    timings['total'], timings['resumed'] = round(time.time() - run.started, 1), any(run.resumed.values())
    r1, k = results['stage1'], run.cfg.topk
    plot_confusion(r1['probs'], r1['targs'], r1['vocab'], run.dir / f'confusion_top{k}.png',
                   f"stage one: top-{k} confusion on the test split")
    last = list(results)[-1]  # the other attributes' heads train on through the stages: the last has seen the most
    for a, h in results[last]['attributes'].items():
        plot_confusion(h['probs'], h['targs'], h['vocab'], run.dir / f'confusion_{a}_{last}.png',
                       f"{last}: {a} confusion on the test split")
    plot_per_class({s: r['table'] for s, r in results.items() if s != ALL},  # its classes are the stages': its table is in results.md
                   run.dir / 'per_class_accuracy.png')
    plot_top_losses({s: {k: r[k] for k in ('files', 'probs', 'targs', 'vocab')} for s, r in results.items()},
                    run.dir / 'top_losses.png')
    run.record.update(lr_used={s: r['lr'] for s, r in results.items()}, timings_seconds=timings)
    _write_json(run.dir / 'config.json', run.record)
    load_counts = {k: v if not isinstance(v, list) else len(v) for k, v in run.data.report.to_dict().items()}
    write_report(run.dir, {s: (r['table'], r['summary']) for s, r in results.items()}, header_markdown(run, timings),
                 extra=dict(config=run.record, load_report=load_counts),
                 attributes={s: {a: (h['table'], h['summary']) for a, h in r['attributes'].items()}
                             for s, r in results.items() if r['attributes']})
    print(f"\nDone in {timings['total'] / 60:.1f} min. Run folder: {run.dir}", flush=True)
    for s, r in results.items():
        print(f"  {s}: {headline(r['summary'])}")
        for a, h in r['attributes'].items(): print(f"  {s} {a}: {headline(h['summary'])}")
    print(f"  report: {run.dir / 'results.md'}\nNext: python -m fashion_fastai.predict {run.dir} IMAGE_OR_FOLDER",
          flush=True)
