"""Saving a trained model of the run in two forms (the inference package loads either).

`<name>.pkl` is fastai's `learn.export`: the whole Learner, convenient, but unpickling runs code and ties the file to
fastai's version.  `<name>.pth` + `<name>.json` is the weights-only form (a plain state_dict, loaded with
`torch.load(weights_only=True)`, plus what is needed to rebuild the model and its preprocessing), which is safe to load
from anyone. Every file is written to a temporary name and renamed, so an interrupted save never leaves a truncated
file. Callbacks that only make sense while training say so with a class attribute `training_only = True` and are left
out of the `.pkl`, so that this module needs no training code.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from fastai.vision.all import Learner, Normalize

from fashion_fastai.core.atomic import atomic_path
from fashion_fastai.networks.attributes import article_vocab, attribute_heads
from fashion_fastai.inference.locate import WEIGHTS_FORMAT
from fashion_fastai.networks.weights import is_timm


def export_stage(learn: Learner,
                 run_dir: Path,     # where `<name>.pkl/.pth/.json` go
                 name: str,         # the model's name in the run (models.py)
                 arch: str,         # torchvision ResNet or timm name, to rebuild the model from the weights-only form
                 size,              # (height, width) the model was trained at
                 ) -> dict:
    """Write both forms of a model; returns their paths.  The `.pkl` leaves out the callbacks marked `training_only`
    (logging, bf16 autocast, kept predictions): it then predicts in fp32 and needs fastai only."""
    run_dir = Path(run_dir)
    extra = [cb for cb in learn.cbs if getattr(cb, 'training_only', False)]
    learn.remove_cbs(extra)
    try:
        with atomic_path(run_dir / f'{name}.pkl') as tmp: learn.export(tmp.resolve())
    finally: learn.add_cbs(extra)
    vocab = article_vocab(learn.dls)
    heads = attribute_heads(learn.model)
    with atomic_path(run_dir / f'{name}.pth') as tmp: torch.save(learn.model.state_dict(), tmp)
    norm = next(t for t in learn.dls.after_batch.fs if isinstance(t, Normalize))
    # what rebuilds the model offline and without pickle: the arch's library (timm builds its models from code, with no
    # download when untrained), the head's size and the input's preprocessing
    library = dict(timm=__import__('timm').__version__) if is_timm(arch) else dict(torchvision=torchvision.__version__)
    meta = dict(format=WEIGHTS_FORMAT, arch=arch, **library, n_out=len(vocab), vocab=vocab, size=list(size),
                mean=norm.mean.flatten().tolist(), std=norm.std.flatten().tolist(), weights=f'{name}.pth',
                channels_last=hasattr(learn, 'channels_last'),  # the memory layout it trained in: inference feeds it so
                **(dict(attributes=heads.vocabs) if heads is not None else {}))
    with atomic_path(run_dir / f'{name}.json') as tmp: tmp.write_text(json.dumps(meta, indent=1))
    return {k: str(run_dir / f'{name}.{k}') for k in ('pkl', 'pth', 'json')}


def record_answering(run_dir: Path, name: str, answering) -> None:
    """Write a model's `Answering` (answering.py: temperatures, zero-shot path) into its weights-only JSON, where every
    form of the model reads it; fitted after evaluation, so also into a model exported before (a resumed run)."""
    path = Path(run_dir) / f'{name}.json'
    meta = json.loads(path.read_text())
    meta['answering'] = answering.to_dict()
    with atomic_path(path) as tmp: tmp.write_text(json.dumps(meta, indent=1))
