"""Benchmark: the time of one optimiser step on a resnet's parameters, fastai's `Adam` against `torch.optim.AdamW`.

fastai's default optimiser (what our training loop steps) against torch's AdamW with the same settings (betas 0.9/0.99,
eps 1e-5, decoupled weight decay 0.01) in its for-loop, foreach and fused implementations, and fused AdamW inside fastai's
`OptimWrapper`. Gradients are random and fixed; each step is timed alone, the optimisers alternating, median of `--repeats`.

    .venv/bin/python bench/optimizer_step.py --arch resnet18
"""
from __future__ import annotations

import statistics, time
from functools import partial

import torch, torchvision
from fastai.optimizer import Adam, OptimWrapper
from fastcore.script import call_parse


@call_parse
def main(arch: str = 'resnet18', repeats: int = 9):
    model = getattr(torchvision.models, arch)(num_classes=20)
    for p in model.parameters(): p.grad = torch.randn_like(p) * 1e-3
    kw = dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
    opts = {'fastai Adam': Adam(model.parameters(), lr=1e-3),
            'AdamW for-loop': torch.optim.AdamW(model.parameters(), foreach=False, **kw),
            'AdamW foreach': torch.optim.AdamW(model.parameters(), foreach=True, **kw),
            'AdamW fused': torch.optim.AdamW(model.parameters(), fused=True, **kw),
            'OptimWrapper(AdamW fused)': OptimWrapper(model.parameters(), partial(torch.optim.AdamW, fused=True, **kw))}
    for o in opts.values(): o.step()  # state allocated before timing
    times = {k: [] for k in opts}
    for _ in range(repeats):
        for k, o in opts.items():
            t0 = time.perf_counter(); o.step(); times[k].append((time.perf_counter() - t0) * 1000)
    print(f"{arch}, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, ms per step (median of {repeats}): "
          + ', '.join(f"{k} {statistics.median(v):.1f}" for k, v in times.items()))
