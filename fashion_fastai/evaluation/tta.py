"""Test-time augmentation for the final evaluation: `flip`, the plain pass averaged with a mirrored one, or fastai's
`tta`.

Product shots are centred and as likely to face either way (training flips them too), so a mirrored copy of each test
image is a second opinion at the cost of one more pass.  Unlike fastai's `Learner.tta` (random crops, rotations and
lighting, blended with the plain pass) it works for several heads at once and reuses a plain pass the run already has
(`stages.KeepValidPreds`).
"""
from __future__ import annotations

from fastai.vision.all import Callback, Learner

from fashion_fastai.training.config import FLIP


class MirrorInput(Callback):
    "Mirrors each batch's images left to right before the model sees them."
    def before_batch(self): self.learn.xb = tuple(x.flip(-1) for x in self.xb)


def mean_outputs(a, b):
    "The average of two activated outputs: one tensor, or one per head."
    if isinstance(a, (tuple, list)): return tuple(mean_outputs(x, y) for x, y in zip(a, b))
    return (a + b) / 2


def predict_with_tta(learn: Learner, dl, tta, plain=None):
    """(activated outputs, targets) of `dl` under `tta` (see `config.parse_tta`). `plain`: `dl`'s plain (outputs,
    targets) when already predicted; used as they are without `tta`, and as flip's unmirrored half."""
    if tta and tta != FLIP:  # fastai's tta makes its own plain pass
        return learn.tta(dl=dl, n=tta)
    probs, targs = plain if plain is not None else learn.get_preds(dl=dl)
    if tta == FLIP: probs = mean_outputs(probs, learn.get_preds(dl=dl, cbs=[MirrorInput()])[0])
    return probs, targs
