"""The steps of one training run, in the order `train` calls them: set up the run, then for each model of the run's
table (models.py) build it, fit it, evaluate and export it; then write the report.

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

from fashion_fastai import __version__
from fashion_fastai.core.atomic import atomic_write_text
from fashion_fastai.training.artifacts import export_stage, record_answering
from fashion_fastai.networks import imagenet_classifier
from fashion_fastai.evaluation.calibrate import calibrate
from fashion_fastai.evaluation.join import join_stages
from fashion_fastai.answering.parts import FILE as JOINED_FILE
from fashion_fastai.training.checkpoint import read_state, write_state
from fashion_fastai.training.config import TrainConfig, read_run_record, rate_words
from fashion_fastai.networks.attributes import article_vocab
from fashion_fastai.core.schema import LABEL
from fashion_fastai.data.styles import load_data, part_dataloaders, eval_rows, FashionData
from fashion_fastai.data.demo import demo_dir
from fashion_fastai.training.distributed import init_distributed, from_main, per_process_bs, num_distrib, say, on_main
from fashion_fastai.core.errors import OptionError
from fashion_fastai.data.holdout import AUTO, describe as describe_holdout
from fashion_fastai.core.models import MODELS, ALL, PARTS, ModelSpec, trained, body_source, heads_seen_part
from fashion_fastai.evaluation.evaluate import evaluate_heads
from fashion_fastai.reporting.plots import plot_losses
from fashion_fastai.reporting.report import headline
from fashion_fastai.evaluation.scores import by_part
from fashion_fastai.training.stages import train_stage, KeepValidPreds, EPOCH_SECONDS_DIGITS
from fashion_fastai.evaluation.tta import FLIP
from fashion_fastai.networks.weights import resolve_weights, check_weights_file, WeightsInfo
from fashion_fastai.answering.zero_shot import load_map, load_categories, read_categories
from fashion_fastai.answering.categories import category_table, check_values


@dataclass
class Run:
    "What a run knows once it is set up; `record` is its config.json."
    cfg: TrainConfig
    dir: Path
    data: FashionData
    imagenet: dict | None  # the starting ImageNet state_dict (None: scratch)
    weights: WeightsInfo
    resumed: dict          # {model name: its checkpoint state, or None}
    record: dict
    started: float
    zmap: dict             # the zero-shot map: the package's table and --zero-shot-map's rows
    scorer: imagenet_classifier.Scorer | None = None  # the frozen ImageNet network's probabilities (None: `no_scorer`)
    no_scorer: str = ''
    network: dict = None   # the frozen network's record in each model's JSON
    categories: dict = None  # {attribute: {article type: value}}: what each article type decides (categories.py)

    @property
    def models(self) -> tuple: return trained(self.cfg)

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
                device=(str(torch.cuda.get_device_name(0)) if torch.cuda.is_available()
                        else f'cpu ({torch.get_num_threads()} threads)'))


def _write_json(path: Path, obj) -> None: atomic_write_text(path, json.dumps(obj, indent=1))


def set_up_run(options: TrainConfig, resume: Path = None) -> Run:
    """The run folder, the data, the starting weights and config.json (the options as given, and apart, what this
    machine resolved them to); with `resume`, the checkpoints to continue from.  Every input is checked before the data
    is read."""
    started = time.time()
    backend = init_distributed()  # None unless launched on several processes
    previous = read_run_record(resume) if resume else None
    resumed = {m.name: read_state(resume, m.name) for m in MODELS} if resume else {m.name: None for m in MODELS}
    cfg, resolved = options.resolve(previous and previous.get('resolved'))
    say(f"Arch: {cfg.arch} ({resolved['why']['arch']})")
    if cfg.weights is not None: check_weights_file(cfg.arch, cfg.weights)
    zmap = load_map(cfg.zero_shot_map)  # a bad row fails now, not after an hour
    run_dir = Path(resume) if resume else cfg.out / from_main(cfg.name or datetime.now().strftime('%Y%m%d-%H%M%S'))
    on_main(make_run_dir, run_dir)
    data_dir = cfg.data if cfg.data is not None else demo_dir(scale=cfg.demo_scale)
    if cfg.data is None: say(f"No --data: using the built-in demo data set at {data_dir}")
    set_seed(cfg.seed, reproducible=True)
    data = load_data(data_dir, **cfg.data_options())
    say('Loaded: ' + data.report.summary())
    held = describe_holdout(data.frame, cfg.holdout_by if cfg.holdout else ())
    if held: say(f"Holdout{f' (--holdout-by {AUTO})' if cfg.holdout_by == (AUTO,) else ''}: "
                 + '; '.join(f"{rule} {h['photos']} photos" + holdout_words(h) for rule, h in held.items()))
    if cfg.zero_shot_map: zmap = load_map(cfg.zero_shot_map, set(data.vocabs[ALL]))  # its rows name this data's classes
    imagenet, winfo = resolve_weights(cfg.arch, cfg.pretrained, cfg.weights)
    say(f"Starting weights: {'ImageNet ' + winfo.source if winfo.pretrained else 'scratch'} ({winfo.note})")
    for m in trained(cfg):
        if m.body_option and body_source(m, cfg) == 'imagenet' and imagenet is None:
            raise OptionError(f"--{m.body_option.replace('_', '-')} imagenet needs ImageNet weights, and this run has "
                              f"none ({winfo.note}): pass --weights FILE, or choose another "
                              f"--{m.body_option.replace('_', '-')}.")
    processes = dict(processes=max(num_distrib(), 1), backend=backend, bs_per_process=per_process_bs(cfg.bs))
    if backend: say(f"Distributed: {processes['processes']} processes ({backend}), {processes['bs_per_process']} "
                    f"images each per step (--bs {cfg.bs} in all); the main one writes {run_dir}")
    record = {**options.to_dict(), 'resolved': resolved,
              'command': 'python -m fashion_fastai.train ' + ' '.join(sys.argv[1:]),
              'data_dir': str(data_dir), 'distributed': processes, 'weights_info': winfo.to_dict(),
              'versions': versions(), 'top_classes': data.top, 'holdout_rows': held}
    if resume:
        record['command'], record['resumed_by'] = (previous['command'],
                                                   previous.get('resumed_by', []) + [record['command']])
    on_main(lambda: (_write_json(run_dir / 'load_report.json', data.report.to_dict()),
                     _write_json(run_dir / 'config.json', record)))
    if cfg.zero_shot_map:  # the user's rows name this data's categories (the package's name Kaggle's)
        check_values(read_categories(cfg.zero_shot_map), {a: set(v) for a, v in data.attributes.items()},
                     cfg.zero_shot_map)
    zmap_categories = load_categories(cfg.zero_shot_map)
    even_years = data.frame[data.frame['split'].isin(['train', 'valid'])]  # labels the test split never gives
    return Run(cfg, run_dir, data, imagenet, winfo, resumed, record, started, zmap,
               *frozen_imagenet(cfg, imagenet, winfo, run_dir), categories=category_table(even_years, zmap_categories))


def holdout_words(h: dict) -> str:
    "What the log adds to a rule's photo count: its years or products, or why whole years held none."
    if 'even_years' in h:
        return (f" (no whole even year is nearer --holdout's share than none: "
                f"{', '.join(f'{y} {n} photos' for y, n in h['even_years'].items())}; use another rule)")
    if 'years' in h: return f" (years {', '.join(map(str, h['years']))})"
    return f" ({h['products']} products)" if 'products' in h else ''


def frozen_imagenet(cfg: TrainConfig, imagenet: dict | None, winfo: WeightsInfo, run_dir: Path) -> tuple:
    """(the frozen ImageNet network's `Scorer`, why there is none, its record for the models' JSON), the network saved
    once in the run folder; with no holdout to fit the gate on, none (the models then have no zero-shot path)."""
    if not cfg.holdout: return None, 'trained without a holdout (--holdout 0)', None
    if not cfg.zero_shot: return None, 'turned off with --zero-shot no', None
    net, why = imagenet_classifier.network(cfg.arch, imagenet)
    if net is None: return None, why, None
    on_main(imagenet_classifier.save, net, run_dir)
    size = imagenet_classifier.input_size(cfg.arch, cfg.size)
    record = dict(file=imagenet_classifier.FILE, arch=cfg.arch, size=list(size), mean=list(winfo.mean),
                  std=list(winfo.std))
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    return (imagenet_classifier.Scorer(net, size, winfo.mean, winfo.std, device, remember=True,
                                       channels_last=cfg.channels_last), '', record)


def fit_model(run: Run, m: ModelSpec, learn: Learner) -> dict:
    """Train the model, or, when resuming, finish it (or reload it when it was done); checkpoints every epoch.  Returns
    how it was trained."""
    epochs, fe, state = m.epochs(run.cfg), run.cfg.head_epochs(m.name), run.resumed[m.name]
    say(f"== {m.name}: {m.part} part, {len(article_vocab(learn.dls))} classes, {len(learn.dls.train_ds)} train / "
        f"{len(learn.dls.valid_ds)} validation images, {epochs} epochs (+{fe} frozen)")
    if state and state['done']:
        say(f"{m.name}: already trained, reloading {m.name}.pth")
        learn.model.load_state_dict(torch.load(run.dir / f'{m.name}.pth', map_location='cpu', weights_only=True))
        learn.epoch_log.rows = state['rows']
        return dict(lr=state['lr'], train_seconds=state['train_seconds'], epochs=epochs, freeze_epochs=fe,
                    exported=True, train_images=len(learn.dls.train_ds))
    if state: say(f"{m.name}: resuming after {state['phase']} epoch {state['epoch']}")
    if not run.cfg.holdout and run.cfg.tta in (0, FLIP) and num_distrib() <= 1:
        # validating on the test split: its last pass is the evaluation (or flip's plain half)
        learn.add_cb(KeepValidPreds())
    t0 = time.time()
    used_lr = train_stage(learn, epochs, m.lr(run.cfg), fe, run_dir=run.dir, resume=state)
    train_s = round(time.time() - t0 + (state['train_seconds'] if state else 0.), 1)
    say(f"{m.name}: trained in {train_s / 60:.1f} min (lr {rate_words(used_lr)})")
    return dict(lr=used_lr, train_seconds=train_s, epochs=epochs, freeze_epochs=fe, exported=False,
                train_images=len(learn.dls.train_ds))


def epoch_seconds(rows: list) -> dict:
    """Seconds of a model's epochs by phase, from its history rows (`stages.EpochLog`): head-only epochs, whole-network
    epochs, and the validation pass that ends each epoch; none from the rows of a run trained before they were kept.
    Each total is rounded to the rows' own hundredths, so it is exactly the sum of history_<model>.csv's column: a
    coarser rounding of a sum of rounded parts would turn on float noise where the sum ends in 5."""
    if not any('train_seconds' in r for r in rows): return {}
    def total(key, phase=None): return round(sum(r.get(key, 0) for r in rows if phase in (None, r['phase'])),
                                            EPOCH_SECONDS_DIGITS)
    return dict(head_epochs=total('train_seconds', 'head'), whole_network_epochs=total('train_seconds', 'all'),
                validation_passes=total('valid_seconds'))


def attribute_counts(run: Run, m: ModelSpec) -> dict:
    "{attribute: training images per value} that the model's other heads have seen (`models.heads_seen_part`)."
    seen = heads_seen_part(m, run.cfg)
    return {a: run.data.train_counts(seen, a) for a in run.data.attributes}


def evaluate_and_export(run: Run, m: ModelSpec, learn: Learner, fit: dict) -> dict:
    "Evaluate the model on its test rows, export it (once) and plot its history; returns what the report needs."
    history = pd.DataFrame(learn.epoch_log.rows)
    atomic_write_text(run.dir / f'history_{m.name}.csv', history.to_csv(index=False))
    kept = getattr(learn, 'keep_valid_preds', None)
    predicted = kept.result if kept is not None else None  # None: reloaded, or validated elsewhere than the test split
    rows = pd.DataFrame(learn.dls.valid_ds.items) if predicted is not None else eval_rows(run.data, m.part)
    counts = {LABEL: run.data.train_counts(m.part), **attribute_counts(run, m)}
    t0 = time.time()
    heads = evaluate_heads(learn, rows, counts, run.cfg.tta, predicted)
    phases = dict(epoch_seconds(learn.epoch_log.rows), evaluation=round(time.time() - t0, 1))
    t0 = time.time()
    answering, answer_numbers = calibrate(learn, eval_rows(run.data, m.part, 'valid') if run.cfg.holdout else None,
                                          heads, rows, counts, run.zmap, run.scorer, run.no_scorer,
                                          run.network, run.cfg.tta, categories=run.categories)
    phases['calibration'] = round(time.time() - t0, 1)
    table, summary, probs, targs = heads.pop(LABEL)
    if m.part == ALL: summary['parts'] = by_part(table, {p: run.data.vocabs[p] for p in PARTS})
    say(f"{m.name}: {headline(summary)}")
    if 'zero_shot' in answer_numbers:
        say(f"{m.name} with zero-shot answers: {headline(answer_numbers['zero_shot']['summary'])}")
    else: say(f"{m.name}: no zero-shot answers ({answering.why_not})")
    for a, (_, s, _, _) in heads.items(): say(f"{m.name} {a}: {headline(s)}")
    t0 = time.time()
    if not fit['exported']:
        export_stage(learn, run.dir, m.name, run.cfg.arch, run.cfg.size)
        write_state(run.dir, m.name, dict(done=True, lr=fit['lr'], train_seconds=fit['train_seconds'],
                                          rows=learn.epoch_log.rows, vocab=article_vocab(learn.dls)))
    record_answering(run.dir, m.name, answering)
    phases['export'] = round(time.time() - t0, 1)
    say(f"{m.name}: time, minutes: " + ', '.join(f"{k.replace('_', ' ')} {v / 60:.1f}" for k, v in phases.items()))
    plot_losses(history, run.dir / f'losses_{m.name}.png', f'{m.name}: losses and metrics per epoch')
    return dict(fit, table=table, summary=summary, probs=probs, targs=targs, files=list(rows['file']),
                answering=answer_numbers,
                phase_seconds=phases,
                vocab=article_vocab(learn.dls),
                attributes={a: dict(table=t, summary=s, probs=p, targs=y, vocab=list(t.index))
                            for a, (t, s, p, y) in heads.items()})


def join_models(run: Run) -> dict:
    """The run's answer for any photo (evaluation/join.py): chosen and fitted on every part's holdout from the exported
    models, scored on the test split; `joined.json` is written when a part gate beat the all-classes model alone (and
    one left from before is removed when it did not)."""
    t0 = time.time()
    holdout = eval_rows(run.data, ALL, 'valid') if run.cfg.holdout else eval_rows(run.data, ALL).iloc[:0]
    answer, numbers = join_stages(run.dir, run.data.vocabs[ALL], holdout, eval_rows(run.data, ALL),
                                  run.data.train_counts(ALL), run.scorer, run.cfg.answer, categories=run.categories)
    if answer is not None: answer.save(run.dir)
    else: (run.dir / JOINED_FILE).unlink(missing_ok=True)
    numbers['seconds'] = round(time.time() - t0, 1)
    pct = lambda v: '–' if v is None else f'{100 * v:.2f}%'
    if 'candidates' in numbers:
        say('Answer for any photo, holdout top-1 with zero-shot / closed-set: ' + '; '.join(
            f"{c} {pct(v['zero_shot'])} / {pct(v['closed_set'])}" for c, v in numbers['candidates'].items())
            + f"; kept: {numbers['kept']}")
    if answer is not None:
        say(f"{JOINED_FILE.split('.')[0]} (gate {answer.gate}): {headline(numbers['zero_shot']['summary'])}; "
            f"closed-set {headline(numbers['closed_summary'])}")
    else: say(f"No joined answer: {numbers['why_not']}")
    return numbers
