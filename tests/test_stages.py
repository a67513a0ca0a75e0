"""The two learners: how the body travels from stage one to stage two, the training loop's log, top-5 on small vocabs,
and precision on the CPU.  resnet18 at 32x24 on a few dozen images: every fit is a handful of batches."""
import math
from functools import partialmethod

import pytest
import torch
from fastai.vision.all import Callback, Learner, accuracy
from torch import nn

from fashion_fastai.training.stages import CPUAutocast, build_learner, build_model, top5, train_stage
from fashion_fastai.networks.weights import body_state_from_imagenet

from helpers import distinctive_resnet_state
from fashion_fastai.core.models import MODELS

STAGE1, STAGE2, ALL_CLASSES = MODELS  # the run's models, in training order


@pytest.fixture(scope="module")
def stage1(demo_dls, tmp_path_factory):
    "A stage-one learner on the demo top part whose every body tensor is unlike a fresh init (as after training)."
    learn = build_model(STAGE1, demo_dls["top"], "resnet18", "imagenet", path=tmp_path_factory.mktemp("stage1"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for k, v in learn.model[0].state_dict().items():  # tensors share storage with the model
            if v.is_floating_point(): v.add_(torch.rand(v.shape, generator=g))
            else: v.fill_(11)
    return learn


def body(learn):
    return {k: v.clone() for k, v in learn.model[0].state_dict().items()}


def test_stage_two_starts_from_stage_one(stage1, demo_dls, demo_loaded, tmp_path):
    before = body(stage1)
    learn2 = build_model(STAGE2, demo_dls["rare"], "resnet18", "stage1", source=stage1, path=tmp_path)
    b1, b2 = stage1.model[0].state_dict(), learn2.model[0].state_dict()
    assert b1.keys() == b2.keys() and len(b1) > 100
    assert all(torch.equal(b1[k], b2[k]) for k in b1)  # weights, BN running stats and counters
    head1, head2 = stage1.model[1][-1], learn2.model[1][-1]
    assert isinstance(head2, nn.Linear)
    assert head2.out_features == len(demo_loaded.vocabs["rare"]) == 7
    assert head1.out_features == len(demo_loaded.vocabs["top"]) == 20
    assert learn2.dls is demo_dls["rare"] and learn2.epoch_log.stage == "stage2"
    # cloned, not shared: changing stage two's body leaves stage one's alone
    assert all(p1.data_ptr() != p2.data_ptr()
               for p1, p2 in zip(stage1.model[0].parameters(), learn2.model[0].parameters()))
    with torch.no_grad():
        for p in learn2.model[0].parameters(): p.add_(1.0)
        learn2.model[0][1].running_mean.add_(1.0)
    after = stage1.model[0].state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not torch.equal(learn2.model[0][0].weight, after["0.weight"])


def test_stage_two_scratch_and_imagenet(stage1, demo_dls, tmp_path):
    scratch = build_model(STAGE2, demo_dls["rare"], "resnet18", "scratch", source=stage1, path=tmp_path)
    assert not torch.equal(scratch.model[0][0].weight, stage1.model[0][0].weight)
    assert not torch.equal(scratch.model[0][7][1].conv2.weight, stage1.model[0][7][1].conv2.weight)
    with pytest.raises(ValueError, match="imagenet"):
        build_model(STAGE2, demo_dls["rare"], "resnet18", "imagenet", source=stage1, path=tmp_path)
    saved = distinctive_resnet_state()
    inet = build_model(STAGE2, demo_dls["rare"], "resnet18", "imagenet", imagenet_state=saved, path=tmp_path)
    mapped, got = body_state_from_imagenet("resnet18", saved), inet.model[0].state_dict()
    assert all(torch.equal(got[k], mapped[k]) for k in mapped)
    with pytest.raises(ValueError, match="body comes from stage1: pass that learner"):
        build_model(STAGE2, demo_dls["rare"], "resnet18", "stage1", path=tmp_path)
    with pytest.raises(ValueError, match="stage0"):
        build_model(STAGE2, demo_dls["rare"], "resnet18", "stage0", source=stage1, path=tmp_path)


LOG_KEYS = {"stage", "phase", "epoch", "train_loss", "valid_loss", "accuracy", "top5", "time", "train_seconds",
            "valid_seconds"}


TICK = 1.0  # seconds `clock` advances per reading: every timed pass reads it twice, so it lasts exactly one tick


@pytest.fixture
def clock(monkeypatch):
    "EpochLog's clock, one tick per reading: pass times that no machine's speed can round to zero or move."
    from types import SimpleNamespace
    from fashion_fastai.training import stages
    readings = iter(range(10**6))
    monkeypatch.setattr(stages, "time", SimpleNamespace(perf_counter=lambda: next(readings) * TICK))


def check_rows(rows, phases):
    assert [r["phase"] for r in rows] == phases
    assert [r["epoch"] for r in rows] == list(range(len(phases)))
    for r in rows:
        assert set(r) == LOG_KEYS and r["stage"] == "stage1"
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["valid_loss"])
        assert 0 <= r["accuracy"] <= r["top5"] <= 1
        assert r["train_seconds"] == r["valid_seconds"] == TICK  # each epoch's two passes timed apart (`clock`)


def test_train_stage_with_head_phase(tiny_dls, tmp_path, clock):
    learn = build_model(STAGE1, tiny_dls, "resnet18", "imagenet", path=tmp_path)
    assert train_stage(learn, 1, 2e-3, freeze_epochs=1) == 2e-3
    check_rows(learn.epoch_log.rows, ["head", "all"])
    assert learn.opt.frozen_idx == 0  # ends unfrozen


def test_train_stage_without_head_phase(tiny_dls, tmp_path, capsys, clock):
    learn = build_model(STAGE1, tiny_dls, "resnet18", "imagenet", path=tmp_path)
    learn.freeze()  # whatever state it comes in, freeze_epochs=0 trains everything
    w0 = learn.model[0][0].weight.detach().clone()
    lr = train_stage(learn, 1, "1e-3", freeze_epochs=0)
    assert lr == 1e-3 and isinstance(lr, float)
    check_rows(learn.epoch_log.rows, ["all"])
    assert not torch.equal(learn.model[0][0].weight, w0)  # the body was trained
    # stdout is not a terminal under pytest: one plain line per epoch instead of progress bars
    assert learn.epoch_log.plain and not hasattr(learn, "progress")
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[stage1 all]")]
    assert len(lines) == 1 and "valid_loss" in lines[0] and "top5" in lines[0]


def test_train_stage_auto_lr(tiny_dls, tmp_path, monkeypatch, clock):
    # fastai's lr_find runs 100 iterations and train_stage cannot pass num_it: shorten it here, the code path is as ever
    monkeypatch.setattr(Learner, "lr_find", partialmethod(Learner.lr_find, num_it=16))
    learn = build_model(STAGE1, tiny_dls, "resnet18", "imagenet", path=tmp_path)
    lr = train_stage(learn, 1, "auto", freeze_epochs=0)
    assert isinstance(lr, float) and 1e-7 < lr < 10 and math.isfinite(lr)
    assert len(learn.recorder.losses) == 2  # the recorder was reset by the real fit after lr_find (2 batches)
    check_rows(learn.epoch_log.rows, ["all"])  # lr_find's iterations are not logged as epochs
    assert not list((tmp_path / "models").glob("**/_tmp.pth"))  # lr_find's temporary save was cleaned up


def test_phase_seconds_are_the_history_rows_summed_in_any_order():
    "0.01 + 0.02 + 0.32 is 0.35 one way and 0.35000000000000003 the other: rounded to tenths, 0.3 or 0.4 by chance."
    from fashion_fastai.training.run import epoch_seconds
    rows = [dict(phase="all", train_seconds=t, valid_seconds=t) for t in (0.01, 0.02, 0.32)]
    want = dict(head_epochs=0, whole_network_epochs=0.35, validation_passes=0.35)
    assert epoch_seconds(rows) == epoch_seconds(rows[::-1]) == want


def _scores(ranks, n_classes):
    "Scores where sample i's target (class 0) sits at rank ranks[i] (0 = best)."
    inp = torch.zeros(len(ranks), n_classes)
    for i, r in enumerate(ranks):
        others = list(range(1, n_classes))
        order = others[:r] + [0] + others[r:]
        inp[i, torch.tensor(order)] = torch.linspace(1, 0, n_classes)
    return inp, torch.zeros(len(ranks), dtype=torch.long)


def test_top5():
    inp, targ = _scores([0, 4, 5, 6], 7)
    assert float(top5(inp, targ)) == pytest.approx(0.5)
    assert float(accuracy(inp, targ)) == pytest.approx(0.25)
    # fewer than 5 classes: k clamped to the number of classes (axis -1, not the batch size), so everything is a hit
    inp, targ = _scores([2, 0], 3)
    assert float(top5(inp, targ)) == 1.0
    inp, targ = _scores([0, 1, 1, 0], 2)
    assert float(top5(inp, targ)) == 1.0 and float(accuracy(inp, targ)) == 0.5
    inp, targ = _scores([4, 3, 0, 2, 1], 5)
    assert float(top5(inp, targ)) == 1.0


class _PredDtype(Callback):
    "Records the model output's dtype before CPUAutocast (order 10) casts it back to float32."
    order = 9
    def before_fit(self): self.dtypes, self.leaked = [], []
    def after_pred(self): self.dtypes.append(self.pred.dtype)
    def after_batch(self): self.leaked.append(torch.is_autocast_enabled("cpu"))


def test_bf16_on_cpu(tiny_dls, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    learn = build_learner(tiny_dls, "resnet18", path=tmp_path, precision="bf16")
    assert sum(isinstance(cb, CPUAutocast) for cb in learn.cbs) == 1
    assert not hasattr(learn, "mixed_precision")
    probe = _PredDtype()
    learn.fit(1, 1e-3, cbs=probe)
    assert len(probe.dtypes) == 3  # 2 training + 1 validation batch
    assert set(probe.dtypes) == {torch.bfloat16}
    assert not any(probe.leaked) and not torch.is_autocast_enabled("cpu")  # context exited after each batch
    assert all(math.isfinite(float(l)) for l in learn.recorder.losses)
    assert learn.recorder.losses[0].dtype == torch.float32
    conv = learn.model[0][0].weight  # mixed precision trains in channels_last, the layout its fast kernels want
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    fp32 = build_learner(tiny_dls, "resnet18", path=tmp_path, precision="fp32")
    assert not any(isinstance(cb, CPUAutocast) for cb in fp32.cbs)
    assert not hasattr(fp32, "channels_last")
    layout = build_learner(tiny_dls, "resnet18", path=tmp_path, precision="fp32", channels_last=True)  # --channels-last
    assert hasattr(layout, "channels_last") and not any(isinstance(cb, CPUAutocast) for cb in layout.cbs)
    layout.fit(1, 1e-3)
    assert layout.model[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_gpu_precisions_use_fastai_mixed_precision(tiny_dls, tmp_path, monkeypatch):
    "On CUDA, bf16/fp16 are fastai's `to_bf16`/`to_fp16` (PyTorch AMP) plus channels_last; fp32 adds neither."
    from fastai.callback.fp16 import AMPMode
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # building a learner moves nothing to the GPU
    for precision, mode in (("bf16", AMPMode.BF16), ("fp16", AMPMode.FP16)):
        learn = build_learner(tiny_dls, "resnet18", path=tmp_path, precision=precision)
        assert learn.mixed_precision.amp_mode == mode and hasattr(learn, "channels_last"), precision
        assert not any(isinstance(cb, CPUAutocast) for cb in learn.cbs)
    fp32 = build_learner(tiny_dls, "resnet18", path=tmp_path, precision="fp32")
    assert not hasattr(fp32, "mixed_precision") and not hasattr(fp32, "channels_last")


def test_label_smoothing_reaches_both_stages_loss(stage1, demo_dls, tmp_path):
    from fastai.vision.all import LabelSmoothingCrossEntropyFlat, CrossEntropyLossFlat
    plain = build_model(STAGE1, demo_dls["top"], "resnet18", "imagenet", path=tmp_path)
    assert isinstance(plain.loss_func, CrossEntropyLossFlat)  # 0: fastai's default loss
    smooth1 = build_model(STAGE1, demo_dls["top"], "resnet18", "imagenet", path=tmp_path, label_smoothing=0.1)
    smooth2 = build_model(STAGE2, demo_dls["rare"], "resnet18", "stage1", source=stage1, path=tmp_path,
                          label_smoothing=0.2)
    assert isinstance(smooth1.loss_func, LabelSmoothingCrossEntropyFlat) and smooth1.loss_func.func.eps == 0.1
    assert isinstance(smooth2.loss_func, LabelSmoothingCrossEntropyFlat) and smooth2.loss_func.func.eps == 0.2
    x, y = demo_dls["top"].one_batch()
    logits = torch.randn(len(y), demo_dls["top"].c, generator=torch.Generator().manual_seed(0))
    logits[range(len(y)), y] += 5  # confident and right: the plain loss is then strictly below the smoothed one
    log_p = logits.log_softmax(-1)  # eps spread over all classes, 1 - eps on the target
    expected = 0.9 * nn.functional.nll_loss(log_p, y) - 0.1 * log_p.mean(-1).mean()
    assert torch.isclose(smooth1.loss_func(logits, y), expected)
    assert not torch.isclose(plain.loss_func(logits, y), expected)


def test_all_classes_model_carries_the_body_and_imprints_its_head(demo_loaded, demo_dls, tmp_path):
    """Every class of both parts, the body of the last stage, and a head whose last layer points at each class's
    features."""
    from fashion_fastai.data.styles import ALL, part_dataloaders
    from fashion_fastai.training.stages import build_model
    dls = part_dataloaders(demo_loaded, ALL, size=(32, 24), bs=8, num_workers=0, augment=False, seed=0)
    assert list(dls.vocab) == sorted(set(demo_dls["top"].vocab) | set(demo_dls["rare"].vocab))
    # finite features (the fixture's are not)
    fresh = build_model(STAGE1, demo_dls["top"], "resnet18", "imagenet", path=tmp_path)
    source = build_model(STAGE2, demo_dls["rare"], "resnet18", "stage1", source=fresh, path=tmp_path)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a head unlike a fresh one, as after training
        for v in source.model[1].state_dict().values():
            if v.is_floating_point(): v.add_(torch.rand(v.shape, generator=g))
    new = build_model(ALL_CLASSES, dls, "resnet18", "stage2", "new", source=source, path=tmp_path)
    learn = build_model(ALL_CLASSES, dls, "resnet18", "stage2", "imprint", source=source, path=tmp_path)
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(body(a).values(), body(b).values()))
    assert same(learn, source) and same(new, source)
    assert_imprinted(learn, source, dls)
    # `new`: fastai's own
    assert not torch.equal(new.model[1].state_dict()["2.running_mean"], source.model[1].state_dict()["2.running_mean"])
    unseen = [i for i, c in enumerate(dls.vocab) if c not in set(demo_loaded.train_counts(ALL))]
    w, feats = learn.model[1][-1].weight, class_features(learn, dls)[0]
    assert unseen and all((feats.mean(0) @ w[i]) < 0 for i in unseen)  # test-only classes start unpredicted


def test_stage_two_head_can_start_imprinted_from_stage_one(demo_dls, tmp_path):
    "--stage2-head imprint: stage one's head but its last layer, whose rows point at each rare class's mean features."
    fresh = build_model(STAGE1, demo_dls["top"], "resnet18", "imagenet", path=tmp_path)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a head unlike a fresh one, as after training
        for v in fresh.model[1].state_dict().values():
            if v.is_floating_point(): v.add_(torch.rand(v.shape, generator=g))
    learn = build_model(STAGE2, demo_dls["rare"], "resnet18", "stage1", source=fresh, path=tmp_path, head="imprint")
    assert_imprinted(learn, fresh, demo_dls["rare"])
    # the protocol's fresh head
    new = build_model(STAGE2, demo_dls["rare"], "resnet18", "stage1", source=fresh, path=tmp_path)
    assert not torch.equal(new.model[1][-1].weight[:, :8], learn.model[1][-1].weight[:, :8])
    with pytest.raises(ValueError, match="imprinted head starts from a trained model"):
        build_model(STAGE2, demo_dls["rare"], "resnet18", "scratch", path=tmp_path, head="imprint")


def class_features(learn, dls):
    "The last layer's inputs and the article types of `dls`'s training images, unaugmented, in eval mode."
    feats, targets = [], []
    hook = learn.model[1][-1].register_forward_hook(lambda m, i, o: feats.append(i[0]))
    learn.model.eval()
    with torch.no_grad():
        for xb, yb in dls.test_dl(dls.train_ds.items, with_labels=True): learn.model(xb); targets.append(yb)
    hook.remove()
    plain = lambda ts: torch.cat(ts).as_subclass(torch.Tensor)
    return plain(feats), plain(targets)


def assert_imprinted(learn, source, dls):
    """`learn`'s head is `source`'s but for its last layer, whose row for each class is the class's mean feature
    direction."""
    head, src = learn.model[1].state_dict(), source.model[1].state_dict()
    last = f"{len(learn.model[1]) - 1}.weight"
    assert all(torch.equal(head[k], v) for k, v in src.items() if k != last)  # the source's head but its last layer
    feats, targets = class_features(learn, dls)
    w = learn.model[1][-1].weight
    for c in targets.unique():  # each row is its class's mean feature direction, at the source's row length
        mean = feats[targets == c].mean(0)
        assert torch.allclose(w[c] / w[c].norm(), mean / mean.norm(), atol=1e-5)
    assert torch.allclose(w.norm(dim=1), source.model[1][-1].weight.norm(dim=1).mean(), rtol=1e-4)


def test_the_last_validation_pass_is_kept_for_the_evaluation(tiny_dls, tmp_path):
    """Validating on the test split, the last epoch's pass is the evaluation: the run does not predict those images
    again."""
    from fashion_fastai.training.stages import KeepValidPreds
    learn = build_learner(tiny_dls, "resnet18", path=tmp_path)
    learn.add_cb(KeepValidPreds())
    learn.lr_find(num_it=3, show_plot=False, suggest_funcs=())  # a cancelled validation keeps nothing
    assert learn.keep_valid_preds.result is None
    learn.fit(2, 1e-3)
    probs, targs = learn.keep_valid_preds.result
    again, targs_again = learn.get_preds(dl=learn.dls.valid)
    assert torch.equal(targs, targs_again) and torch.allclose(probs, again, atol=1e-6)  # softmaxed, as get_preds
    assert len(targs) == len(tiny_dls.valid_ds) and torch.allclose(probs.sum(1), torch.ones(len(targs)))
