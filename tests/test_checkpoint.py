"""Per-epoch checkpoints and resuming from them, in process on the tiny data (resnet18 at 32x24, a few batches each)."""
from __future__ import annotations


import pytest
import torch
from fastai.vision.all import Callback

from fashion_fastai.training.checkpoint import read_state, skipped_epoch, started_models
from fashion_fastai.core.compat import fine_tune_phases
from fashion_fastai.core.errors import OptionError
from fashion_fastai.training.stages import build_learner, train_stage


class _Kill(Callback):
    "Stops the process's training like a SIGKILL would, right after the checkpoint of the `at`-th trained epoch."
    order = 99
    def __init__(self, at): self.at, self.seen = at, 0
    def after_epoch(self):
        if getattr(self.learn, 'lr_finder', None) or skipped_epoch(self.learn): return
        self.seen += 1
        if self.seen == self.at: raise KeyboardInterrupt


class _LRs(Callback):
    "Every batch's learning rate per parameter group, and the weights at the start of each fit."
    order = 99
    def __init__(self): self.lrs, self.start = [], []
    def before_fit(self): self.start.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})
    def before_batch(self):
        if self.training: self.lrs.append([round(h['lr'], 12) for h in self.opt.hypers])


def _learner(dls, path):
    torch.manual_seed(0)
    return build_learner(dls, "resnet18", path=path, stage="stage1")


def test_schedule_is_fastais_fine_tune(tiny_dls, tmp_path):
    "The replayed schedule (needed to re-enter it) sets exactly the rates `fine_tune` sets, batch by batch."
    a, b = _learner(tiny_dls, tmp_path), _learner(tiny_dls, tmp_path)
    ra, rb = _LRs(), _LRs()
    a.add_cb(ra); b.add_cb(rb)
    a.fine_tune(2, base_lr=1e-3, freeze_epochs=1)
    train_stage(b, 2, 1e-3, freeze_epochs=1)
    assert len(ra.lrs) == 6 and ra.lrs == rb.lrs
    assert [p for p, *_ in fine_tune_phases(3, 1e-3, 0)] == ["all"]
    assert [p for p, *_ in fine_tune_phases(3, 1e-3, 2)] == ["head", "all"]


def test_discriminative_rates_are_fastais(tiny_dls, tmp_path):
    """A (body, head) pair is fastai's own: `fit_one_cycle(slice(body, head))` without a head phase, and
    `fine_tune(lr_mult=head / body)` with one, batch by batch; the body's group gets the lower rate."""
    a, b = _learner(tiny_dls, tmp_path), _learner(tiny_dls, tmp_path)
    ra, rb = _LRs(), _LRs()
    a.add_cb(ra); b.add_cb(rb)
    a.unfreeze(); a.fit_one_cycle(2, slice(1e-4, 1e-3))
    train_stage(b, 2, (1e-4, 1e-3), freeze_epochs=0)
    assert len(rb.lrs) == 4 and ra.lrs == rb.lrs
    # the body's groups below the head, by 10x at the ends
    assert all(r == sorted(r) and r[0] * 9 < r[-1] for r in rb.lrs)
    c, d = _learner(tiny_dls, tmp_path), _learner(tiny_dls, tmp_path)
    rc, rd = _LRs(), _LRs()
    c.add_cb(rc); d.add_cb(rd)
    c.fine_tune(1, base_lr=1e-3, freeze_epochs=1, lr_mult=10)
    train_stage(d, 1, (1e-4, 1e-3), freeze_epochs=1)
    assert len(rc.lrs) == 4 and rc.lrs == rd.lrs


def test_checkpoint_every_epoch(tiny_dls, tmp_path):
    learn = _learner(tiny_dls, tmp_path)
    train_stage(learn, 2, 1e-3, freeze_epochs=1, run_dir=tmp_path)
    state = read_state(tmp_path, "stage1")
    assert (state["phase"], state["epoch"], state["n_epoch"], state["done"]) == ("all", 1, 2, False)
    assert [(r["phase"], r["epoch"]) for r in state["rows"]] == [("head", 0), ("all", 1), ("all", 2)]
    assert state["vocab"] == list(tiny_dls.vocab) and state["lr"] == 1e-3
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["stage1-all-001.pth", "stage1.json"]  # earlier epochs' weights removed once superseded
    saved = torch.load(tmp_path / "checkpoints" / state["file"], weights_only=False)
    assert set(saved) == {"model", "opt"}
    assert all(torch.equal(saved["model"][k], v) for k, v in learn.model.state_dict().items())


@pytest.mark.parametrize("kill_after", [1, 2])  # right after the head phase, and inside the second phase
def test_resume_continues_from_last_epoch(tiny_dls, tmp_path, kill_after):
    learn = _learner(tiny_dls, tmp_path)
    learn.add_cb(_Kill(kill_after))
    with pytest.raises(KeyboardInterrupt): train_stage(learn, 3, 1e-3, freeze_epochs=1, run_dir=tmp_path)
    state = read_state(tmp_path, "stage1")
    assert len(state["rows"]) == kill_after
    saved = torch.load(tmp_path / "checkpoints" / state["file"], weights_only=False)["model"]

    resumed = _learner(tiny_dls, tmp_path)
    probe = _LRs()
    resumed.add_cb(probe)
    train_stage(resumed, 3, "auto", freeze_epochs=1, run_dir=tmp_path, resume=state)  # 'auto' reuses the saved rate
    assert all(torch.equal(probe.start[0][k], v) for k, v in saved.items())  # training restarted from the checkpoint
    assert len(probe.lrs) == 2 * (4 - kill_after)  # only the epochs not yet trained, 2 batches each
    final = read_state(tmp_path, "stage1")
    assert [(r["phase"], r["epoch"]) for r in final["rows"]] == [("head", 0), ("all", 1), ("all", 2), ("all", 3)]
    assert (final["phase"], final["epoch"]) == ("all", 2) and final["lr"] == 1e-3
    assert len(list((tmp_path / "checkpoints").glob("*.pth"))) == 1


def test_resume_refuses_changed_classes(tiny_dls, tmp_path):
    learn = _learner(tiny_dls, tmp_path)
    learn.add_cb(_Kill(1))
    with pytest.raises(KeyboardInterrupt): train_stage(learn, 1, 1e-3, run_dir=tmp_path)
    state = read_state(tmp_path, "stage1")
    state["vocab"] = state["vocab"][:-1]
    with pytest.raises(OptionError, match="classes changed"):
        train_stage(_learner(tiny_dls, tmp_path), 1, 1e-3, run_dir=tmp_path, resume=state)


def test_a_damaged_checkpoint_is_named_before_resuming(tiny_dls, tmp_path):
    "A state JSON cut short, or the weights it points at missing or cut short: one error naming the file and the fix."
    learn = _learner(tiny_dls, tmp_path)
    learn.add_cb(_Kill(1))
    with pytest.raises(KeyboardInterrupt): train_stage(learn, 2, 1e-3, run_dir=tmp_path)
    assert started_models(tmp_path) == {"stage1"} and started_models(tmp_path / "nowhere") == set()
    state = read_state(tmp_path, "stage1")
    weights = tmp_path / "checkpoints" / state["file"]
    weights.write_bytes(weights.read_bytes()[:1000])  # cut short, as by a full disk
    with pytest.raises(OptionError, match=f"stage1's weights {weights} are cut short or damaged; delete"):
        read_state(tmp_path, "stage1")
    weights.unlink()
    with pytest.raises(OptionError, match="are missing"): read_state(tmp_path, "stage1")
    path = tmp_path / "checkpoints" / "stage1.json"
    path.write_text(path.read_text()[:20])
    with pytest.raises(OptionError, match=f"the checkpoint state {path} is damaged"): read_state(tmp_path, "stage1")
