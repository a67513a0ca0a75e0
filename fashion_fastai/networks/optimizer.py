"""fastai's default optimiser (Adam, decoupled weight decay, no decay on norm and bias parameters), stepped by torch's
fused AdamW kernel.

fastai's `Adam` steps every parameter tensor with several Python-level tensor operations; torch's fused AdamW does the
same arithmetic in one kernel over all of them, which saves a large share of a small model's step on a CPU
(`bench/optimizer_step.py`, BENCHMARKS.md).

Why not plain `OptimWrapper(opt=torch.optim.AdamW)`: torch applies one weight decay to a whole parameter group, but
fastai's groups are the splitter's (body, head: what `freeze` and discriminative learning rates index), and fastai
exempts the norm and bias parameters inside them (`Learner(wd_bn_bias=False)` marks them `do_wd=False` in `opt.state`).
So torch steps with `weight_decay=0` and this wrapper applies the decoupled decay itself, first, to the parameters
marked for it: `p *= 1 - lr * wd`, as AdamW and fastai's `weight_decay` step both do.
"""
from __future__ import annotations

import torch
from fastai.optimizer import OptimWrapper, pytorch_hp_map

from fashion_fastai.core.compat import fused_adamw_supported

WD_KEY = 'decoupled_wd'  # our own key in torch's param groups; fastai sees it as `wd`
HP_MAP = {**{k: v for k, v in pytorch_hp_map.items() if k != 'weight_decay'}, WD_KEY: 'wd'}


class FusedAdam(OptimWrapper):
    """fastai's `Adam` (same defaults, hyper-parameter names, groups, freezing and `do_wd`) on torch's fused AdamW
    kernel."""
    def __init__(self, params, lr=1e-3, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01):
        params = list(params)
        groups = [list(g) for g in params] if params and not isinstance(params[0], torch.Tensor) else [params]
        fused = fused_adamw_supported(p for g in groups for p in g)
        # fused=None lets torch pick its default (foreach or for-loop) on devices without the fused kernel
        opt = torch.optim.AdamW([{'params': g, WD_KEY: wd} for g in groups], lr=lr, betas=(mom, sqr_mom), eps=eps,
                                weight_decay=0., fused=fused or None)
        super().__init__(opt=opt, hp_map=HP_MAP)

    @torch.no_grad()
    def step(self, closure=None):
        for pg in self.opt.param_groups:
            wd = pg[WD_KEY]
            if not wd: continue
            decayed = [p for p in pg['params'] if p.grad is not None and self.state[p].get('do_wd', True)]
            if decayed: torch._foreach_mul_(decayed, 1 - pg['lr'] * wd)
        return self.opt.step(closure)
