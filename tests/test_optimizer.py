"""FusedAdam must be fastai's Adam, step for step: same update, same groups, freezing, hyper-parameters and weight-decay
exemptions, only a faster kernel."""
from __future__ import annotations

import pytest
import torch
from torch import nn
import torch.nn.functional as F
from fastai.vision.all import Adam, DataLoader, DataLoaders, Learner, params

from fashion_fastai.networks.optimizer import FusedAdam
from fashion_fastai.training.stages import build_learner


def small_learner(opt_func, wd_bn_bias: bool) -> Learner:
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    # float64: the optimisers round differently, which Adam amplifies (test_fused_adam_steps_as_fastai_adam: how much)
    batch = (torch.randn(8, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (8,)))
    dls = DataLoaders(DataLoader([batch], bs=None), DataLoader([batch], bs=None))
    learn = Learner(dls, nn.Sequential(body, head).double(), loss_func=F.cross_entropy, opt_func=opt_func,
                    splitter=lambda m: [params(m[0]), params(m[1])], wd_bn_bias=wd_bn_bias)
    learn.create_opt()
    return learn


def train_steps(learn: Learner) -> list:
    "Head-only steps with discriminative rates and a momentum schedule, then whole-network steps, as fine_tune does."
    x, y = learn.dls.train.one_batch()
    learn.opt.set_hyper('wd', 0.1)  # large enough that decaying a parameter that should not be decayed shows
    def step():
        F.cross_entropy(learn.model(x), y).backward()
        learn.opt.step(); learn.opt.zero_grad()
    learn.freeze()
    for i in range(2):
        learn.opt.set_hyper('lr', [1e-2 * (i + 1), 2e-2]); learn.opt.set_hyper('mom', 0.9 - 0.05 * i); step()
    learn.unfreeze()
    for _ in range(3):
        learn.opt.set_hyper('lr', [1e-2, 3e-2]); step()
    return [p.detach().clone() for p in learn.model.parameters()]


@pytest.mark.parametrize('wd_bn_bias', [False, True])
def test_fused_adam_steps_as_fastai_adam(wd_bn_bias, monkeypatch):
    kernel, dtypes = torch._fused_adamw_, set()
    def spy(ps, *args, **kwargs): dtypes.update(p.dtype for p in ps); return kernel(ps, *args, **kwargs)
    monkeypatch.setattr(torch, '_fused_adamw_', spy)
    ours, fastai = (train_steps(small_learner(f, wd_bn_bias)) for f in (FusedAdam, Adam))
    assert dtypes == {torch.float64}  # our steps went through torch's fused kernel, in double
    # The conv bias before BatchNorm has a true gradient of 0: its steps are gradient rounding amplified by Adam's
    # lr/eps (1e3): 3 steps x 1e3 x (288 terms x 1.1e-16 x sum|term| 0.2) = 2e-11 in float64 (other parameters: a few
    # ulps), up to 1e-3 in float32.  A wrong lr (even x1.001), eps, betas or weight decay moves a parameter by >= 5e-5.
    for a, b in zip(ours, fastai): torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_norm_and_bias_parameters_are_not_decayed():
    "fastai's default (`wd_bn_bias=False`) against decaying everything: the two must differ, or the exemption is lost."
    exempt, decayed = (train_steps(small_learner(FusedAdam, w)) for w in (False, True))
    assert any(not torch.allclose(a, b, atol=1e-5) for a, b in zip(exempt, decayed))


def test_frozen_body_moves_only_its_norm_layers():
    "fastai's `train_bn`: a frozen body's BatchNorm still trains, its convolutions do not."
    learn = small_learner(FusedAdam, False)
    conv, bn = learn.model[0][0], learn.model[0][1]
    before = [p.detach().clone() for p in (conv.weight, conv.bias, bn.weight, bn.bias)]
    learn.freeze()
    x, y = learn.dls.train.one_batch()
    F.cross_entropy(learn.model(x), y).backward()
    learn.opt.step()
    assert torch.equal(before[0], conv.weight) and torch.equal(before[1], conv.bias)
    assert not torch.equal(before[2], bn.weight) and not torch.equal(before[3], bn.bias)


def test_hypers_read_and_set_under_fastai_names():
    learn = small_learner(FusedAdam, False)
    hypers = learn.opt.hypers
    assert len(hypers) == 2  # the splitter's groups, not torch's default single group
    assert {k: hypers[0][k] for k in ('lr', 'mom', 'sqr_mom', 'eps', 'wd')} == dict(lr=1e-3, mom=0.9, sqr_mom=0.99,
                                                                                    eps=1e-5, wd=0.01)
    learn.opt.set_hypers(wd=0.)
    assert [h['wd'] for h in learn.opt.hypers] == [0., 0.]
    assert all(pg['weight_decay'] == 0 for pg in learn.opt.opt.param_groups)  # torch never decays on its own


def test_learners_train_with_the_fused_kernel(tiny_dls, tmp_path):
    learn = build_learner(tiny_dls, 'resnet18', path=tmp_path)
    learn.fit(1, 1e-3, wd=0.05)
    assert isinstance(learn.opt, FusedAdam)
    assert all(pg['fused'] for pg in learn.opt.opt.param_groups)
    assert all(h['wd'] == 0.05 for h in learn.opt.hypers)  # fastai's `fit(wd=)` reaches our decay
    assert learn.opt.opt.state  # torch's Adam moments exist: the steps went through it
