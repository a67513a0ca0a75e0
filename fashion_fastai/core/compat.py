"""Every place that overrides or reaches into a fastai or torch internal, each with why, and what would make it
unnecessary.

Checked with fastai 2.8.12 and torch 2.14.1. When upgrading either, read this file first: each entry names the behaviour
it depends on, and the tests named beside it fail when that behaviour changes.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from PIL import Image
from fastai.vision.all import Resize, ResizeMethod, PadMode, AffineCoordTfm, model_meta
from fastai.vision.learner import _default_meta
from torch.optim.optimizer import _get_fused_kernels_supported_devices


def fused_adamw_supported(params) -> bool:
    """Whether torch's fused AdamW kernel runs on every one of `params`' devices.  Why: torch exposes that list only
    privately.  Remove when torch picks `fused` by itself (today its default is the foreach kernel)."""
    return all(p.device.type in _get_fused_kernels_supported_devices() for p in params)


def resnet_cut(arch_fn) -> int:
    """Where fastai cuts a torchvision model into body and head (`vision_learner`'s own rule, with its private default).
    Remove when fastai exposes the cut of a torchvision arch publicly."""
    return model_meta.get(arch_fn, _default_meta)['cut']


def resnet_splitter(arch_fn):
    """fastai's body/head parameter groups for a torchvision arch (the same lookup as `resnet_cut`, same removal
    condition)."""
    return model_meta.get(arch_fn, _default_meta)['split']


def fine_tune_phases(epochs: int, lr, freeze_epochs: int) -> list:
    """`[(phase, n_epoch, fit_one_cycle kwargs)]`: fastai's `fine_tune` written out (its constants: head at `lr` with
    pct_start 0.99, then everything at lr/2 with discriminative rates lr/200..lr/2, pct_start 0.3, div 5), because a
    resumed run must re-enter it at any epoch and `fine_tune` has no `start_epoch`. Remove when `fine_tune` can start
    mid-way; `tests/test_checkpoint.py` checks the rates equal `fine_tune`'s batch by batch. Without a head phase (a
    random body is not worth protecting): one one-cycle fit of the whole network. `lr` may be a (body, head) pair: the
    whole network's `slice(body, head)` without a head phase; with one, `fine_tune(head, lr_mult=head / body)`."""
    lo, hi = lr if isinstance(lr, (tuple, list)) else (None, lr)
    if not freeze_epochs: return [('all', epochs, dict(lr_max=hi if lo is None else slice(lo, hi)))]
    mult = 100 if lo is None else hi / lo
    return [('head', freeze_epochs, dict(lr_max=slice(hi), pct_start=0.99)),
            ('all', epochs, dict(lr_max=slice(hi / 2 / mult, hi / 2), pct_start=0.3, div=5.))]


def patch_distributed_broadcast() -> None:
    """fastai's `DistributedDL._broadcast` sends the shuffled indices through `.cuda()`, which nccl needs but gloo on a
    CPU cannot do. Applied when a run starts on several processes, not at import. Remove when fastai moves the tensor to
    the backend's device only for nccl."""
    import torch.distributed as dist
    from fastai.distributed import DistributedDL

    def _broadcast(self, t, rank):
        t = torch.tensor(t, dtype=torch.long)
        if dist.get_backend() == 'nccl': t = t.cuda()
        dist.broadcast(t, rank)
        return t.cpu().tolist()
    DistributedDL._broadcast = _broadcast


@contextmanager
def single_process_gather():
    """fastai gathers every batch's predictions across processes whenever the environment's `WORLD_SIZE` says there are
    several, so one process predicting by itself (the main one, evaluating) would wait forever for the others. Pretend
    to be alone for a while (no collective call may run inside). Remove when `get_preds` takes a no-gather flag."""
    world = os.environ.get('WORLD_SIZE')
    os.environ['WORLD_SIZE'] = '1'
    try: yield
    finally:
        if world is None: del os.environ['WORLD_SIZE']
        else: os.environ['WORLD_SIZE'] = world


class PadResize(Resize):
    """fastai's padding `Resize`, which passes an image that already has the target size through untouched: fastai would
    still crop it, pad it by zero pixels (a round trip through numpy) and resize it to its own size, which every 60x80
    Kaggle image paid for nothing (BENCHMARKS.md has the pipeline before and after).  Other sizes take fastai's path.
    Remove when fastai's `Resize` skips same-size images; `tests/test_data.py` checks both give the same pixels."""
    def __init__(self, size, **kwargs):
        super().__init__(size, method=ResizeMethod.Pad, pad_mode=PadMode.Border, **kwargs)
    def encodes(self, x: Image.Image): return x if tuple(x.size) == tuple(self.size) else Resize.encodes(self, x)


class TrainOnlyAffine(AffineCoordTfm):
    """fastai's flip/rotate/zoom transform, which leaves validation and test batches alone: fastai would resample each
    of them through an identity grid (`grid_sample`) into the same pixels, the largest single cost of the test pipeline
    in a profile of `get_preds` (BENCHMARKS.md). Only without an output size of its own: one that resizes must resize
    every batch. Remove when fastai skips the identity resampling; `tests/test_data.py` checks training batches are
    fastai's."""
    def before_call(self, b, split_idx):
        super().before_call(b, split_idx)
        if split_idx and self.size is None: self.do = False

    @classmethod
    def like(cls, tfm: AffineCoordTfm):
        "The same affine and coordinate functions and settings as `tfm` (what `aug_transforms` composed)."
        return cls(aff_fs=tfm.aff_fs, coord_fs=tfm.coord_fs, size=tfm.size, mode=tfm.mode, pad_mode=tfm.pad_mode,
                   mode_mask=tfm.mode_mask, align_corners=tfm.align_corners, p=tfm.p)
