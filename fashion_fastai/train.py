"""`python -m fashion_fastai.train`: every model of the run into one run folder.

set up (options resolved on this machine, data, weights, config.json) -> for each model of the run's table (models.py:
stage one on the top-k part, stage two on the rare part with stage one's body, the all-classes model with the last
one's body): build, fit, evaluate + export -> the answer for any photo, joined from the stages by a part gate where the
holdout prefers it to the all-classes model -> results.md / metrics.json / plots.  The steps are in run.py; every option
is a field of `TrainConfig` (config.py), recorded in config.json so that a run can be understood, repeated and resumed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fastcore.script import anno_parser

from fashion_fastai.cli import fail
from fashion_fastai.training.config import TrainConfig
from fashion_fastai.training.distributed import on_main
from fashion_fastai.core.errors import FashionError
from fashion_fastai.core.models import body_source
from fashion_fastai.reporting.report import write_results
from fashion_fastai.training.run import set_up_run, fit_model, evaluate_and_export, join_models
from fashion_fastai.training.stages import build_model
from fashion_fastai.training.checkpoint import started_models

FASTCORE_FLAGS = ('pdb', 'xtra')  # fastcore's own hidden flags


def train(cfg: TrainConfig, resume: Path = None) -> Path:
    """Every model of the run, evaluated and exported, and the report; returns the run folder.  With `resume` (a run
    folder), `cfg` should be `TrainConfig.of_run(resume)` (or `resumed_with` it): finished epochs and models are not
    trained again."""
    run = set_up_run(cfg, resume)
    cfg = run.cfg  # resolved on this machine
    dls = {m.name: run.dataloaders(m.part) for m in run.models}  # a part that cannot train fails now, not after an hour
    learners, results = {}, {}
    for m in run.models:
        body = body_source(m, cfg)
        learn = build_model(m, dls[m.name], cfg.arch, body, m.head(cfg), learners.get(body), run.imagenet,
                            path=run.dir, attributes=run.data.attributes, **cfg.learner_options())
        fit = fit_model(run, m, learn)
        results[m.name] = on_main(evaluate_and_export, run, m, learn, fit)
        learners[m.name] = learn
    on_main(write_results, run, results, on_main(join_models, run))
    return run.dir


def parser():
    "The CLI: one option per `TrainConfig` field (help and defaults from there), and `--resume`."
    p = anno_parser(TrainConfig, prog='python -m fashion_fastai.train')
    p.add_argument('--resume', type=Path, metavar='(path)',
                   help="continue a killed run from its last finished epoch: its run folder (its options are reused; "
                        "those that leave what is trained as it was, such as --workers or a later model's epochs, can "
                        "be given again to change them)")
    return p


def given_options(argv: list = None) -> set:
    "The options typed on the command line (not those left at their defaults)."
    p = parser()
    for a in p._actions: a.default = argparse.SUPPRESS
    return set(vars(p.parse_args(argv))) - {'resume', *FASTCORE_FLAGS}


def main(argv: list = None) -> Path:
    args = vars(parser().parse_args(argv))
    resume = args.pop('resume')
    args = {k: v for k, v in args.items() if k not in FASTCORE_FLAGS}
    try:
        if resume is None: return train(TrainConfig(**args))
        saved = TrainConfig.of_run(resume)
        cfg = saved.resumed_with({k: args[k] for k in given_options(argv)}, started_models(resume))
        changed = [k for k in TrainConfig.__dataclass_fields__ if getattr(cfg, k) != getattr(saved, k)]
        print(f"Resuming {resume} with its saved options" + (f", changing {', '.join(changed)}" if changed else ''),
              flush=True)
        return train(cfg, resume)
    except FashionError as e: fail('train', e)


if __name__ == '__main__': main()
