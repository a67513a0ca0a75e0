"""Several product attributes from one photo: the protocol's `articleType` plus any of `ATTRIBUTES`, one head each on a
shared body (the published multitask variant adds `masterCategory` and `subCategory`; a catalogue wants them all).

The pieces are fastai's: one `DataBlock` with a category block per attribute (`n_inp=1`); a head module whose
`articleType` branch is exactly the head `vision_learner` builds (so the plain protocol and this one share it), beside
one `LinBnDrop` per other attribute on the same pooled features; a loss with `activation`/`decodes`, so that
`get_preds` and `learn.predict` return every attribute; and metrics per head.  Outputs, targets and blocks all come in
the order `(*other attributes, articleType)`: the article type last keeps `n_inp=1` DataLoaders' last vocab its own.

A row whose attribute is empty keeps its image: its target is `MISSING_CODE`, which the loss and metrics leave out.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from fastai.vision.all import LinBnDrop, Metric, CategoryMap, apply_init

from fashion_fastai.core.schema import LABEL, MISSING_CODE

__all__ = ['AttributeHeads', 'AttributeLoss', 'HeadAccuracy', 'add_attribute_heads', 'attribute_heads', 'article_head',
           'article_vocab', 'head_vocabs', 'head_metrics']


class AttributeHeads(nn.Module):
    """`article` is the head `vision_learner` built (pooling, then its hidden layer and the article-type layer); each
    other attribute gets one `LinBnDrop` on the pooled features.  Returns `(*others, articleType)`.  The vocabularies
    travel with the module, so an exported learner and a weights-only file both know what each output means."""
    def __init__(self, article: nn.Sequential, vocabs: dict, n_pool: int = 2):
        super().__init__()
        self.article, self.n_pool, self.vocabs = article, n_pool, {a: list(v) for a, v in vocabs.items()}
        n_features = next(m.num_features if isinstance(m, nn.BatchNorm1d) else m.in_features
                          for m in article[n_pool:].modules() if isinstance(m, (nn.BatchNorm1d, nn.Linear)))
        self.others = nn.ModuleDict({a: LinBnDrop(n_features, len(v), bn=True, p=0.25) for a, v in self.vocabs.items()})
        apply_init(self.others, nn.init.kaiming_normal_)  # as vision_learner initialises its head

    def forward(self, x):
        for m in self.article[:self.n_pool]: x = m(x)
        out = x
        for m in self.article[self.n_pool:]: out = m(out)
        return (*(head(x) for head in self.others.values()), out)


def add_attribute_heads(model: nn.Sequential, vocabs: dict) -> nn.Sequential:
    """Put the other attributes' heads beside the article-type head of a `vision_learner`/`create_model` network, in
    place."""
    if vocabs: model[1] = AttributeHeads(model[1], vocabs)
    return model


def attribute_heads(model: nn.Module) -> AttributeHeads | None:
    return model[1] if isinstance(model[1], AttributeHeads) else None


def article_head(model: nn.Module) -> nn.Sequential:
    "The head that ends in the article-type layer, with or without other attributes beside it."
    heads = attribute_heads(model)
    return heads.article if heads is not None else model[1]


def head_vocabs(model: nn.Module, article_vocab: list) -> dict:
    "{attribute: vocab} in output order (articleType last); the article type alone for a plain model."
    heads = attribute_heads(model)
    return {**(heads.vocabs if heads is not None else {}), LABEL: list(article_vocab)}


def article_vocab(dls) -> list:
    """The article types of DataLoaders with or without other attributes (with them, `dls.vocab` is one vocab per
    target)."""
    vocab = dls.vocab
    return list(vocab[-1] if len(vocab) and isinstance(vocab[-1], CategoryMap) else vocab)


class AttributeLoss:
    """Weighted sum of one cross-entropy per head, each over the rows that have the attribute (a batch where nobody has
    it adds 0, not NaN).  `activation` and `decodes` work per head, so fastai's `get_preds(with_decoded=True)` and
    `learn.predict` return every attribute."""
    def __init__(self, weights, label_smoothing: float = 0.):
        self.weights, self.label_smoothing = tuple(float(w) for w in weights), label_smoothing

    def __call__(self, preds, *targs):
        return sum(w * self.head_loss(p, t) for w, p, t in zip(self.weights, preds, targs))

    def head_loss(self, pred, targ):
        targ = targ.as_subclass(torch.Tensor).long()
        n = (targ != MISSING_CODE).sum()
        loss = F.cross_entropy(pred.as_subclass(torch.Tensor).float(), targ, ignore_index=MISSING_CODE,
                               label_smoothing=self.label_smoothing, reduction='sum')
        return loss / n.clamp_min(1)

    def activation(self, preds): return tuple(F.softmax(p, dim=-1) for p in preds)
    def decodes(self, preds): return tuple(p.argmax(dim=-1) for p in preds)


class HeadAccuracy(Metric):
    "Top-k accuracy of one head over the validation rows that have its attribute."
    def __init__(self, index: int, name: str, k: int = 1): self.index, self._name, self.k = index, name, k
    def reset(self): self.correct, self.count = 0, 0
    def accumulate(self, learn):
        pred = learn.pred[self.index].as_subclass(torch.Tensor)
        targ = learn.yb[self.index].as_subclass(torch.Tensor)
        keep = targ != MISSING_CODE
        top = pred[keep].topk(min(self.k, pred.shape[-1]), dim=-1).indices
        self.correct += int((top == targ[keep].unsqueeze(-1)).any(-1).sum())
        self.count += int(keep.sum())
    @property
    def value(self): return self.correct / self.count if self.count else float('nan')
    @property
    def name(self): return self._name


def head_metrics(attributes) -> list:
    """The article type's `accuracy` and `top5` (the plain protocol's names, so histories compare), then each other
    head's."""
    n = len(attributes)
    return [HeadAccuracy(n, 'accuracy'), HeadAccuracy(n, 'top5', k=5),
            *(HeadAccuracy(i, f'{a}_accuracy') for i, a in enumerate(attributes))]

