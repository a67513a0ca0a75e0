"""Saving a trained stage in two forms, and loading either for inference.

`<stage>.pkl` is fastai's `learn.export`: the whole Learner, convenient, but unpickling runs code and ties the file to
fastai's version.  `<stage>.pth` + `<stage>.json` is the weights-only form (a plain state_dict, loaded with
`torch.load(weights_only=True)`, plus what is needed to rebuild the model and its preprocessing), which is safe to load
from anyone.  Every file is written to a temporary name and renamed, so an interrupted save never leaves a truncated file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from fastai.vision.all import Learner, load_learner, Datasets, TfmdDL, ToTensor, IntToFloatTensor, Normalize

from .atomic import atomic_path
from .attributes import add_attribute_heads, article_head, article_vocab, attribute_heads, head_vocabs
from .data import item_tfms, default_workers, LABEL
from .images import ReadProductImage
from .stages import TRAINING_ONLY_CBS
from .weights import create_model, is_timm


def export_stage(learn: Learner,
                 run_dir: Path,     # where `<name>.pkl/.pth/.json` go
                 name: str,         # `stage1` or `stage2`
                 arch: str,         # torchvision ResNet or timm name, to rebuild the model from the weights-only form
                 size,              # (height, width) the model was trained at
                 ) -> dict:
    "Write both forms of a stage; returns their paths."
    run_dir = Path(run_dir)
    extra = [cb for cb in learn.cbs if isinstance(cb, TRAINING_ONLY_CBS)]
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
    meta = dict(format='fashion_fastai.weights/1', arch=arch, **library, n_out=len(vocab), vocab=vocab, size=list(size),
                mean=norm.mean.flatten().tolist(), std=norm.std.flatten().tolist(), weights=f'{name}.pth',
                **(dict(attributes=heads.vocabs) if heads is not None else {}))
    with atomic_path(run_dir / f'{name}.json') as tmp: tmp.write_text(json.dumps(meta, indent=1))
    return {k: str(run_dir / f'{name}.{k}') for k in ('pkl', 'pth', 'json')}


class Predictor:
    """What `predict` and the web page use: `vocab` (the article types), `vocabs` (every head's, in output order, the
    article type last) and `head_probs(paths)`, one probability tensor per head; `probs` is the article type's."""
    vocabs: dict

    @property
    def vocab(self) -> list: return self.vocabs[LABEL]

    def probs(self, paths, bs=64, num_workers: int = None) -> torch.Tensor:
        return self.head_probs(paths, bs, num_workers)[LABEL]


class WeightsOnlyModel(Predictor):
    "A stage rebuilt from `<stage>.json` + `<stage>.pth`, with the same resize and normalisation as in training."
    def __init__(self, json_path: Path):
        json_path = Path(json_path)
        self.meta = json.loads(json_path.read_text())
        self.size = tuple(self.meta['size'])
        self.model = add_attribute_heads(create_model(self.meta['arch'], len(self.meta['vocab'])),
                                         self.meta.get('attributes', {}))
        self.vocabs = head_vocabs(self.model, self.meta['vocab'])
        weights = json_path.parent / self.meta['weights']
        state = torch.load(weights, map_location='cpu', weights_only=True)
        self._check_heads(json_path, weights, state)
        self.model.load_state_dict(state)
        self.model.eval()
        self.norm = Normalize.from_stats(self.meta['mean'], self.meta['std'], cuda=False)

    def dataloader(self, paths, bs=64, num_workers: int = None):
        "`num_workers` None: as training decides (`default_workers`); fastai's `TfmdDL` would start one per core."
        ds = Datasets(list(paths), [[ReadProductImage()]])
        return TfmdDL(ds, bs=bs, after_item=[*item_tfms(self.size), ToTensor()],
                      after_batch=[IntToFloatTensor(), self.norm], shuffle=False, drop_last=False,
                      num_workers=default_workers() if num_workers is None else num_workers)

    def _check_heads(self, json_path: Path, weights: Path, state: dict) -> None:
        "Each head's outputs in the state_dict against the vocab the JSON gives it: files from two runs do not mix."
        others = lambda keys: sorted({k.split('.')[2] for k in keys if k.startswith('1.others.')})
        expected, got = others(self.model.state_dict()), others(state)
        if expected != got:
            raise ValueError(f"{json_path.name} lists other attributes {expected or 'none'} but {weights.name} has heads "
                             f"for {got or 'none'}: the two files come from different runs or models")
        names = {m: n for n, m in self.model.named_modules()}
        heads = attribute_heads(self.model)
        layers = {**({a: h[-1] for a, h in heads.others.items()} if heads is not None else {}),
                  LABEL: article_head(self.model)[-1]}
        for head, layer in layers.items():
            weight = state.get(f'{names[layer]}.weight')  # absent: another model altogether, which load_state_dict names
            n_out = None if weight is None else weight.shape[0]
            if n_out is not None and n_out != len(self.vocabs[head]):
                what = 'classes' if head == LABEL else f'{head} values'
                raise ValueError(f"{json_path.name} lists {len(self.vocabs[head])} {what} but {weights.name} has {n_out} "
                                 f"outputs for them: the two files come from different runs or models")

    def head_probs(self, paths, bs=64, num_workers: int = None) -> dict:
        with torch.inference_mode():
            # a plain tensor, as fastai's Learner feeds its model (its CastToTensor callback): fastai's TensorImage runs
            # Python around every layer, 8-9% of a resnet forward at batch 32 here
            outs = [self.model(xb.as_subclass(torch.Tensor)) for (xb,) in self.dataloader(paths, bs, num_workers)]
        outs = [o if isinstance(o, tuple) else (o,) for o in outs]
        return {head: torch.cat([o[i] for o in outs]).softmax(1) if outs else torch.empty(0, len(vocab))
                for i, (head, vocab) in enumerate(self.vocabs.items())}


class PickledLearner(Predictor):
    "An exported `.pkl` learner behind the same interface as `WeightsOnlyModel`."
    def __init__(self, pkl_path: Path):
        self.learn = load_learner(pkl_path, cpu=not torch.cuda.is_available())
        self.vocabs = head_vocabs(self.learn.model, article_vocab(self.learn.dls))

    def head_probs(self, paths, bs=64, num_workers: int = None) -> dict:
        "`num_workers` None: the exported DataLoaders' own."
        kw = {} if num_workers is None else dict(num_workers=num_workers)
        dl = self.learn.dls.test_dl(list(paths), bs=bs, **kw)
        with self.learn.no_bar(): probs, _ = self.learn.get_preds(dl=dl)
        return dict(zip(self.vocabs, probs if isinstance(probs, tuple) else (probs,)))
