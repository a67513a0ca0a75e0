"""`python -m fashion_fastai.train`: the whole protocol into one run folder.

set up (data, weights, config.json) -> stage one on the top-k part -> evaluate + export -> stage two on the rare part,
body from stage one -> evaluate + export -> the all-classes model over every article type, body from the last stage ->
evaluate + export -> results.md / metrics.json / plots.  The steps are in run.py; every option is
a field of `TrainConfig` (config.py), recorded in config.json so that a run can be understood, repeated and resumed.
"""
from __future__ import annotations

from pathlib import Path

from fastcore.script import anno_parser

from .cli import fail
from .config import TrainConfig
from .distributed import on_main
from .errors import FashionError
from .run import set_up_run, fit_stage, evaluate_and_export, write_results
from .data import ALL
from .stages import stage_one, stage_two, all_classes


def train(cfg: TrainConfig, resume: Path = None) -> Path:
    """Both stages of the protocol and the all-classes model, evaluated and exported, and the report; returns the run folder.  With `resume` (a run
    folder), `cfg` should be `TrainConfig.of_run(resume)`: finished epochs and stages are not trained again."""
    run = set_up_run(cfg, resume)
    dls_top = run.dataloaders('top')
    dls_rare = run.dataloaders('rare') if cfg.epochs2 else None  # an empty rare part fails now, not after stage one
    dls_all = run.dataloaders(ALL) if cfg.epochs_all else None
    kw = dict(path=run.dir, attributes=run.data.attributes, **cfg.learner_options())

    learn1 = stage_one(dls_top, cfg.arch, run.imagenet, **kw)
    fit1 = fit_stage(run, 'stage1', learn1, cfg.epochs, cfg.lr)
    results = {'stage1': on_main(evaluate_and_export, run, 'stage1', learn1, fit1)}
    if cfg.epochs2:
        learn2 = stage_two(dls_rare, cfg.arch, cfg.stage2_init, learn1, run.imagenet, cfg.stage2_head, **kw)
        fit2 = fit_stage(run, 'stage2', learn2, cfg.epochs2, cfg.lr2)
        results['stage2'] = on_main(evaluate_and_export, run, 'stage2', learn2, fit2)
    if cfg.epochs_all:
        learn_all = all_classes(dls_all, cfg.arch, learn2 if cfg.epochs2 else learn1, cfg.all_init, **kw)
        fit_all = fit_stage(run, ALL, learn_all, cfg.epochs_all, cfg.lr_all)
        results[ALL] = on_main(evaluate_and_export, run, ALL, learn_all, fit_all)
    on_main(write_results, run, results)
    return run.dir


def parser():
    "The CLI: one option per `TrainConfig` field (help and defaults from there), and `--resume`."
    p = anno_parser(TrainConfig, prog='python -m fashion_fastai.train')
    p.add_argument('--resume', type=Path, metavar='(path)',
                   help="continue a killed run from its last finished epoch: its run folder (its options are reused)")
    return p


def main(argv: list = None) -> Path:
    args = vars(parser().parse_args(argv))
    resume = args.pop('resume')
    args = {k: v for k, v in args.items() if k not in ('pdb', 'xtra')}  # fastcore's own hidden flags
    try:
        if resume is None: return train(TrainConfig(**args))
        print(f"Resuming {resume} with its original options (other options given now are ignored)", flush=True)
        return train(TrainConfig.of_run(resume), resume)
    except FashionError as e: fail('train', e)


if __name__ == '__main__': main()
