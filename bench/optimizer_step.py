"""Benchmark: the time of one optimiser step on a resnet's parameters, fastai's `Adam` against `torch.optim.AdamW`.

fastai's default optimiser against torch's AdamW with the same settings (betas 0.9/0.99, eps 1e-5, decoupled weight
decay 0.01) in its for-loop, foreach and fused implementations, fused AdamW inside fastai's `OptimWrapper`, and our
`FusedAdam` (what our learners step since it was added), on the model `vision_learner` builds, in its parameter groups
and with norm and bias parameters exempt from weight decay, as a `Learner` sets them. Gradients are random and fixed;
each step is timed alone, the optimisers alternating, median of `--repeats`.

torchvision ResNets only (`--arch resnet18`, `resnet50`: it builds with fastai's `create_vision_model` and its ResNet
parameter groups): it reproduces the measurement of 2026-11-30 that led to `FusedAdam` (BENCHMARKS.md, "Optimiser step";
bench/HISTORY.md).  The documented command's `tf_efficientnet_lite0` steps with the same `FusedAdam`; `bench/speed.py`
times its whole training loop against a bare loop with the fused kernel.

    .venv/bin/python bench/optimizer_step.py --arch resnet18
"""
from __future__ import annotations

import statistics, time
from functools import partial

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import torch
from fastai.optimizer import Adam, OptimWrapper
from fastai.vision.all import create_vision_model, norm_bias_params
from fashion_fastai.core.compat import resnet_splitter
from fastcore.script import call_parse

from fashion_fastai.networks.optimizer import FusedAdam
from fashion_fastai.networks.weights import get_arch


@call_parse
def main(arch: str = 'resnet18', repeats: int = 9):
    model = create_vision_model(get_arch(arch), 20, pretrained=False)
    groups = resnet_splitter(get_arch(arch))(model)  # vision_learner's splitter
    for p in model.parameters(): p.grad = torch.randn_like(p) * 1e-3
    kw = dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    fastai, ours = Adam(groups, lr=1e-3), FusedAdam(groups, lr=1e-3)
    for p in norm_bias_params(model, True):  # as Learner(wd_bn_bias=False) marks them
        fastai.state[p]['do_wd'] = ours.state[p]['do_wd'] = False
    opts = {'fastai Adam': fastai,
            'AdamW for-loop': torch.optim.AdamW(model.parameters(), foreach=False, **kw),
            'AdamW foreach': torch.optim.AdamW(model.parameters(), foreach=True, **kw),
            'AdamW fused': torch.optim.AdamW(model.parameters(), fused=True, **kw),
            'OptimWrapper(AdamW fused)': OptimWrapper(model.parameters(), partial(torch.optim.AdamW, fused=True, **kw)),
            'FusedAdam': ours}
    for o in opts.values(): o.step()  # state allocated before timing
    times = {k: [] for k in opts}
    for _ in range(repeats):
        for k, o in opts.items():
            t0 = time.perf_counter(); o.step(); times[k].append((time.perf_counter() - t0) * 1000)
    print(f"{arch}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, ms per step (median of "
          f"{repeats}): "
          + ', '.join(f"{k} {statistics.median(v):.1f}" for k, v in times.items()))
