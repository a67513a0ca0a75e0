"""`python -m fashion_fastai.train`: the whole protocol into one run folder.

load -> stage one (top-k part) -> evaluate + export -> stage two (rare part, body from stage one) -> evaluate + export ->
results.md / metrics.json / plots.  Every option is recorded in config.json so a run can be understood (and repeated) later.
"""
from __future__ import annotations

import json, platform, sys, time
from datetime import datetime
from pathlib import Path

import pandas as pd
import torch
import torchvision
import fastai
from fastcore.script import call_parse
from fastai.vision.all import set_seed

from . import __version__
from .atomic import atomic_write_text
from .errors import FashionError, OptionError, DataError
from .data import load_data, part_dataloaders, eval_rows, as_items, FashionData
from .demo import demo_dir
from .evaluate import (class_table, summarize, write_report, plot_losses, plot_confusion, plot_per_class,
                       plot_top_losses)
from .artifacts import export_stage
from .checkpoint import read_state, write_state
from .distributed import init_distributed, is_main, from_main, barrier, per_process_bs, num_distrib, alone
from .stages import stage_one, stage_two, train_stage, resolve_precision, STAGE2_INITS
from .weights import resolve_weights, WeightsInfo, ARCHS


def parse_size(size: str) -> tuple[int, int]:
    "'80x60' -> (80, 60) as (height, width); '224' -> (224, 224)."
    try:
        hw = tuple(int(s) for s in str(size).lower().replace(',', 'x').split('x'))
        if len(hw) == 1: hw = hw * 2
        if len(hw) != 2 or min(hw) < 8: raise ValueError
    except ValueError:
        raise OptionError(f"--size must be HEIGHTxWIDTH (e.g. 80x60) or one number for a square, each >= 8; got {size!r}.")
    return hw


def parse_lr(lr) -> float | str:
    if str(lr) == 'auto': return 'auto'
    try: v = float(lr)
    except ValueError: v = -1.
    if not v > 0: raise OptionError(f"--lr must be a positive number or 'auto', got {lr!r}.")
    return v


def check_options(o: dict) -> dict:
    "Fail before any data is read or anything trained, with the option's name and what would be valid."
    if o['arch'] not in ARCHS: raise OptionError(f"Unknown --arch {o['arch']!r}: choose one of {', '.join(ARCHS)}.")
    for k in ('epochs', 'bs', 'topk'):
        if o[k] is None or o[k] < 1: raise OptionError(f"--{k} must be a positive integer, got {o[k]}.")
    if o['epochs2'] is None or o['epochs2'] < 0:
        raise OptionError(f"--epochs2 must be a positive integer, or 0 to skip stage two; got {o['epochs2']}.")
    if o['freeze_epochs'] is not None and o['freeze_epochs'] < 0:
        raise OptionError(f"--freeze-epochs must be >= 0 (0: train the whole network from the first epoch), got {o['freeze_epochs']}.")
    if o.get('workers') is not None and o['workers'] < 0:
        raise OptionError(f"--workers must be >= 0 (0: decode images in the main process), got {o['workers']}.")
    if o['data'] is None and o.get('demo_scale') is not None and not o['demo_scale'] > 0:
        raise OptionError(f"--demo-scale must be > 0 (1.0 = about 2,600 images), got {o['demo_scale']}.")
    if not (o['holdout'] == 0 or 0 < o['holdout'] < 1):
        raise OptionError(f"--holdout must be 0 (no holdout: validate on the test split) or a fraction in (0, 1) of the "
                          f"even-year images, e.g. 0.1; got {o['holdout']}.")
    if not 0 <= o.get('label_smoothing', 0.) < 1:
        raise OptionError(f"--label-smoothing must be in [0, 1) (0: plain cross-entropy; 0.1 is usual), got {o['label_smoothing']}.")
    if not o.get('tta', 0) >= 0:
        raise OptionError(f"--tta must be >= 0 (0: no test-time augmentation; 4 is fastai's usual), got {o['tta']}.")
    if o['pretrained'] not in ('auto', 'yes', 'no'): raise OptionError("--pretrained must be auto, yes or no.")
    if o['stage2_init'] not in STAGE2_INITS: raise OptionError(f"--stage2-init must be one of {', '.join(STAGE2_INITS)}.")
    if o['rank_on'] not in ('all', 'train'): raise OptionError("--rank-on must be all or train.")
    o['precision'] = resolve_precision(o['precision'])
    o['size'], o['lr'], o['lr2'] = parse_size(o['size']), parse_lr(o['lr']), parse_lr(o['lr2'])
    if o.get('weights') is not None and not Path(o['weights']).is_file():
        raise OptionError(f"--weights {o['weights']} is not a file: give a torchvision ImageNet state_dict (.pth), "
                          f"or leave --weights out to use torchvision's cache.")
    if o['data'] is not None and not (Path(o['data']) / 'styles.csv').is_file():
        d = Path(o['data'])
        hint = ('it is a file: give the folder holding it' if d.is_file() else 'that folder does not exist' if not d.is_dir()
                else next((f'it has one in {c.parent}: try --data {c.parent}' for c in sorted(d.glob('*/styles.csv'))), ''))
        raise DataError(f"--data {o['data']} has no styles.csv{' (' + hint + ')' if hint else ''}: it must be the Kaggle "
                        f"folder holding styles.csv and images/ (e.g. fashion-product-images-small/); omit --data for the "
                        f"built-in demo data.")
    return o


def make_run_dir(out: Path, name: str | None) -> Path:
    "Create the run folder and prove it is writable now, not after an hour of training."
    run_dir = Path(out) / (name or datetime.now().strftime('%Y%m%d-%H%M%S'))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / '.write-test'
        probe.write_text('ok'); probe.unlink()
    except OSError as e:
        raise OptionError(f"Cannot write the run folder {run_dir} ({e.strerror}): choose another --out.") from e
    return run_dir


def say(*args) -> None:
    "Print from the main process only (several processes train one run together under `torchrun`/`accelerate launch`)."
    if is_main(): print(*args, flush=True)


def versions() -> dict:
    return dict(fashion_fastai=__version__, python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__, fastai=fastai.__version__,
                device=str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else f'cpu ({torch.get_num_threads()} threads)')


def evaluate_learner(learn, rows: pd.DataFrame, train_counts: dict, tta: int = 0):
    """Predict the part's test rows in a fixed order and tabulate per-class top-1/top-5.  `tta` > 0: fastai's `tta`, that
    many passes with the training augmentation averaged and blended with the plain pass (about `tta` + 1 times the time)."""
    dl = learn.dls.test_dl(as_items(rows), with_labels=True, shuffle=False)
    with alone():  # only the main process evaluates
        probs, targs = learn.tta(dl=dl, n=tta) if tta else learn.get_preds(dl=dl)
    table = class_table(probs, targs, list(learn.dls.vocab), train_counts)
    return table, summarize(table), probs, targs


def headline(summary: dict) -> str:
    pct = lambda v: '–' if v is None else f'{100 * v:.2f}%'
    return (f"test micro top-1 {pct(summary['all']['micro_top1'])}, top-5 {pct(summary['all']['micro_top5'])}; "
            f"seen-class top-1 {pct(summary['seen']['micro_top1'])} (ceiling {pct(summary['ceiling_top1'])})")


def run_stage(stage: str, learn, epochs: int, lr, freeze_epochs: int, data: FashionData, part: str, run_dir: Path,
              opts: dict, resume: dict = None) -> dict:
    """Train (or, when resuming, finish or reload), evaluate and export one stage; returns what the report needs (None on
    processes other than the main one, which only train).  Checkpoints go to run_dir/checkpoints after every epoch; the
    final state is marked done once the stage is exported."""
    say(f"== {stage}: {part} part, {len(learn.dls.vocab)} classes, {len(learn.dls.train_ds)} train / "
        f"{len(learn.dls.valid_ds)} validation images, {epochs} epochs (+{freeze_epochs} frozen)")
    if resume and resume['done']:
        say(f"{stage}: already trained, reloading {stage}.pth")
        learn.model.load_state_dict(torch.load(run_dir / f'{stage}.pth', map_location='cpu', weights_only=True))
        learn.epoch_log.rows, used_lr, train_s = resume['rows'], resume['lr'], resume['train_seconds']
    else:
        if resume: say(f"{stage}: resuming after {resume['phase']} epoch {resume['epoch']}")
        t0 = time.time()
        used_lr = train_stage(learn, epochs, lr, freeze_epochs, run_dir=run_dir, resume=resume)
        train_s = time.time() - t0 + (resume['train_seconds'] if resume else 0.)
        say(f"{stage}: trained in {train_s / 60:.1f} min (lr {used_lr:.3g})")
    if not is_main():
        barrier()  # the main process evaluates and exports; the others wait, then train the next stage with it
        return None
    history = pd.DataFrame(learn.epoch_log.rows)
    atomic_write_text(run_dir / f'history_{stage}.csv', history.to_csv(index=False))
    rows = eval_rows(data, part)
    table, summary, probs, targs = evaluate_learner(learn, rows, data.train_counts(part), opts.get('tta') or 0)
    say(f"{stage}: {headline(summary)}")
    if not (resume and resume['done']):
        export_stage(learn, run_dir, stage, opts['arch'], opts['size'])
        write_state(run_dir, stage, dict(done=True, lr=used_lr, train_seconds=round(train_s, 1),
                                         rows=learn.epoch_log.rows, vocab=list(learn.dls.vocab)))
    plot_losses(history, run_dir / f'losses_{stage}.png', f'{stage}: losses and metrics per epoch')
    barrier()
    return dict(table=table, summary=summary, probs=probs, targs=targs, files=list(rows['file']), lr=used_lr,
                train_seconds=round(train_s, 1), epochs=epochs, freeze_epochs=freeze_epochs, vocab=list(learn.dls.vocab))


def header_markdown(opts: dict, weights: WeightsInfo, data: FashionData, data_dir: Path, timings: dict) -> str:
    r = data.report
    scratch = '' if weights.pretrained else (
        "\n> **Trained from scratch: no ImageNet weights were used** "
        f"({weights.note}). Published numbers for this protocol use ImageNet-pretrained ResNet50 on a GPU.\n")
    validated = ('a holdout of %.0f%% of the even years' % (100 * opts['holdout']) if opts['holdout'] else
                 'the odd-year test split itself, with a fixed schedule and no model selection (as the published runs did)')
    return f"""# fashion_fastai results

Command: `{opts['command']}`
{scratch}
| | |
|---|---|
| data | `{data_dir}` |
| arch | {opts['arch']} at {opts['size'][0]}x{opts['size'][1]} (height x width), batch size {opts['bs']}, {opts['precision']}{f", label smoothing {opts['label_smoothing']}" if opts.get('label_smoothing') else ''} |
| starting weights | {'ImageNet: ' + weights.source if weights.pretrained else 'scratch'} ({weights.note}) |
| stage one | top-{opts['topk']} classes (ranked over {opts['rank_on']} rows), {opts['epochs']} epochs |
| stage two | rare classes, body from {opts['stage2_init']}, {opts['epochs2']} epochs |
| validation during training | {validated} |{distributed_row(opts)}
| evaluation | odd-year test split, every image with a known class, fixed order{f"; test-time augmentation, {opts['tta']} passes" if opts.get('tta') else ''} |
| time | stage one {timings.get('stage1', 0) / 60:.1f} min, stage two {timings.get('stage2', 0) / 60:.1f} min, total {timings['total'] / 60:.1f} min{' (since the last --resume; stage times include the epochs before it)' if timings.get('resumed') else ''} |
| versions | {', '.join(f'{k} {v}' for k, v in versions().items())} |

Loading: {r.summary()}. Skipped ids are listed in `load_report.json`.

"Seen" classes have at least one training image. A class with test images but no training image can never be predicted
correctly, so the ceiling is the share of test images whose class is seen.
"""


def distributed_row(opts: dict) -> str:
    d = opts.get('distributed') or {}
    if d.get('processes', 1) <= 1: return ''
    return (f"\n| processes | {d['processes']} ({d['backend']}), {d['bs_per_process']} images each per step; epoch lines show "
            f"the main process's share of the validation images, the evaluation below all of them |")


def resume_arguments(run_dir: Path) -> dict:
    "The arguments a run was started with, from its config.json, so that `--resume` continues the same run."
    cfg = Path(run_dir) / 'config.json'
    if not cfg.is_file():
        raise OptionError(f"--resume {run_dir}: no config.json there; pass the folder of a run started by this program.")
    try: return json.loads(cfg.read_text())['arguments']
    except (ValueError, KeyError) as e:
        raise OptionError(f"--resume {run_dir}: {cfg} is not a run configuration written by this program ({e}).") from e


def train(data, out, name, arch, pretrained, weights, size, bs, epochs, epochs2, freeze_epochs, lr, lr2, topk, rank_on,
          holdout, stage2_init, precision, seed, workers, demo_scale, label_smoothing=0., tta=0, resume=None) -> Path:
    """The run behind the CLI (same arguments, see `main`); raises `FashionError`s instead of exiting.  With `resume`,
    every other argument is taken from that run's config.json and finished epochs are not trained again."""
    arguments = {k: str(v) if isinstance(v, Path) else v for k, v in locals().items() if k != 'resume'}
    if resume is not None:
        arguments = resume_arguments(resume)
        print(f"Resuming {resume} with its original options (other options given now are ignored)", flush=True)
        return _train(**arguments, run_dir=Path(resume))
    return _train(**arguments)


def _train(data, out, name, arch, pretrained, weights, size, bs, epochs, epochs2, freeze_epochs, lr, lr2, topk, rank_on,
           holdout, stage2_init, precision, seed, workers, demo_scale, label_smoothing=0., tta=0, run_dir=None) -> Path:
    arguments = {k: v for k, v in locals().items() if k != 'run_dir'}
    resuming = run_dir is not None
    backend = init_distributed()  # None unless launched on several processes
    arch = arch or ('resnet50' if data is not None else 'resnet18')  # the demo should finish in minutes on a laptop CPU
    opts = check_options({**arguments, 'arch': arch})
    processes = dict(processes=max(num_distrib(), 1), backend=backend, bs_per_process=per_process_bs(bs))
    opts['distributed'] = processes
    t_start = time.time()
    opts['command'] = 'python -m fashion_fastai.train ' + ' '.join(sys.argv[1:])
    if run_dir is None: run_dir = Path(out) / from_main(name or datetime.now().strftime('%Y%m%d-%H%M%S'))
    if is_main(): make_run_dir(run_dir.parent, run_dir.name)
    barrier()
    states = {s: read_state(run_dir, s) if resuming else None for s in ('stage1', 'stage2')}
    data_dir = Path(data) if data is not None else demo_dir(scale=demo_scale)
    if data is None: say(f"No --data: using the built-in demo data set at {data_dir}")
    set_seed(seed, reproducible=True)

    fd = load_data(data_dir, k=topk, rank_on=rank_on, holdout=holdout, seed=seed)
    say('Loaded: ' + fd.report.summary())
    if is_main(): atomic_write_text(run_dir / 'load_report.json', json.dumps(fd.report.to_dict(), indent=1))
    state, winfo = resolve_weights(arch, pretrained, weights)
    say(f"Starting weights: {'ImageNet ' + winfo.source if winfo.pretrained else 'scratch'} ({winfo.note})")
    if backend: say(f"Distributed: {processes['processes']} processes ({backend}), {processes['bs_per_process']} images "
                    f"each per step (--bs {bs} in all); the main one writes {run_dir}")
    config = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in opts.items()}, 'data_dir': str(data_dir),
              'weights_info': winfo.to_dict(), 'versions': versions(), 'top_classes': fd.top, 'arguments': arguments}
    if resuming:
        old = json.loads((run_dir / 'config.json').read_text())
        config['command'], config['resumed_by'] = old['command'], old.get('resumed_by', []) + [opts['command']]
    if is_main(): atomic_write_text(run_dir / 'config.json', json.dumps(config, indent=1))

    fe = freeze_epochs if freeze_epochs is not None else int(winfo.pretrained)
    dl_kw = dict(size=opts['size'], bs=processes['bs_per_process'], num_workers=workers, seed=seed)
    results = {}
    dls1 = part_dataloaders(fd, 'top', **dl_kw)
    dls2 = part_dataloaders(fd, 'rare', **dl_kw) if epochs2 else None  # an empty rare part fails now, not after stage one
    learn1 = stage_one(dls1, arch, state, path=run_dir, precision=opts['precision'], label_smoothing=label_smoothing)
    results['stage1'] = run_stage('stage1', learn1, epochs, opts['lr'], fe, fd, 'top', run_dir, opts, states['stage1'])
    if epochs2:
        fe2 = freeze_epochs if freeze_epochs is not None else int(stage2_init == 'stage1' or winfo.pretrained)
        learn2 = stage_two(dls2, arch, stage2_init, learn1, state, path=run_dir, precision=opts['precision'],
                           label_smoothing=label_smoothing)
        results['stage2'] = run_stage('stage2', learn2, epochs2, opts['lr2'], fe2, fd, 'rare', run_dir, opts,
                                      states['stage2'])
    if not is_main(): return run_dir  # the main process writes the report
    timings = {s: r['train_seconds'] for s, r in results.items()}
    timings['total'], timings['resumed'] = round(time.time() - t_start, 1), resuming

    r1 = results['stage1']
    plot_confusion(r1['probs'], r1['targs'], r1['vocab'], run_dir / f'confusion_top{topk}.png',
                   f"stage one: top-{topk} confusion on the test split")
    plot_per_class({s: r['table'] for s, r in results.items()}, run_dir / 'per_class_accuracy.png')
    plot_top_losses({s: {k: r[k] for k in ('files', 'probs', 'targs', 'vocab')} for s, r in results.items()},
                    run_dir / 'top_losses.png')
    config.update(lr_used={s: r['lr'] for s, r in results.items()}, timings_seconds=timings)
    atomic_write_text(run_dir / 'config.json', json.dumps(config, indent=1))
    write_report(run_dir, {s: (r['table'], r['summary']) for s, r in results.items()},
                 header_markdown(opts, winfo, fd, data_dir, timings),
                 extra=dict(config=config, load_report={k: v if not isinstance(v, list) else len(v)
                                                        for k, v in fd.report.to_dict().items()}))

    print(f"\nDone in {timings['total'] / 60:.1f} min. Run folder: {run_dir}", flush=True)
    for s, r in results.items(): print(f"  {s}: {headline(r['summary'])}")
    print(f"  report: {run_dir / 'results.md'}\nNext: python -m fashion_fastai.predict {run_dir / 'stage1.json'} IMAGE_OR_FOLDER")
    return run_dir


if __name__ == '__main__': sys.argv[0] = f'python -m {__spec__.name}'  # so that --help's usage line shows the command


@call_parse
def main(data: Path = None,          # Kaggle folder holding styles.csv and images/ (default: the built-in demo data)
         out: Path = Path('runs'),   # parent folder of the run folders
         name: str = None,           # run folder name (default: date and time)
         arch: str = None,           # torchvision ResNet: resnet18, resnet34, resnet50, resnet101, resnet152 (default: resnet50 with --data, resnet18 on the demo data)
         pretrained: str = 'auto',   # ImageNet weights: auto = use if cached or downloadable, else warn and train from scratch; yes = required; no = scratch
         weights: Path = None,       # a torchvision ImageNet state_dict file to start from (instead of the cache)
         size: str = '80x60',        # model input HEIGHTxWIDTH (the small data set is 80 high, 60 wide), or one number for a square
         bs: int = 32,               # batch size (32 was chosen on the real data's holdout: BENCHMARKS.md)
         epochs: int = 5,            # stage-one epochs with the whole network trained
         epochs2: int = 5,           # stage-two epochs (0 skips stage two)
         freeze_epochs: int = None,  # head-only epochs before each stage (default: 1 if the body starts from trained weights, else 0)
         lr: str = '2e-3',           # stage-one learning rate, or 'auto' for fastai lr_find's valley suggestion
         lr2: str = '2e-3',          # stage-two learning rate, or 'auto'
         topk: int = 20,             # number of most frequent classes in stage one
         rank_on: str = 'all',       # rank classes over 'all' rows of styles.csv (the protocol) or 'train' rows
         holdout: float = 0.,        # fraction of even-year images held out for validation; 0 validates on the test split
         stage2_init: str = 'stage1',# stage-two body: stage1 (the protocol), imagenet or scratch
         precision: str = 'auto',    # fp32, bf16 (CUDA AMP, or CPU autocast), fp16 (CUDA only); auto: bf16 on recent GPUs, else fp32
         seed: int = 42,             # random seed (weights init, shuffling, holdout)
         workers: int = None,        # DataLoader worker processes (default: 0 on a CPU with <= 4 cores, else fastai's)
         demo_scale: float = 0.5,    # size of the generated demo data set, 1.0 = about 2,600 images (only without --data)
         label_smoothing: float = 0.,# > 0: label-smoothing cross-entropy with this epsilon (e.g. 0.1), both stages
         tta: int = 0,               # test-time augmentation passes in the final evaluation (fastai's tta; 0: none)
         resume: Path = None,        # continue a killed run from its last finished epoch: its run folder (its options are reused)
         ):
    "Train and evaluate both stages of the Fashion Product Images protocol; writes a run folder."
    try: return train(**locals())
    except FashionError as e: print(f"train: error: {e}", file=sys.stderr); sys.exit(2)
