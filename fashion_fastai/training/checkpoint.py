"""Checkpoints after every epoch, and resuming a killed run from the last finished one.

A 44k-image run on a CPU takes an hour; losing it to a reboot or an out-of-memory kill at minute 50 should cost one
epoch, not the run. After each epoch `EpochCheckpoint` writes, atomically, `checkpoints/<stage>-<phase>-<epoch>.pth`
(model and optimiser state, fastai's `save_model`), then `checkpoints/<stage>.json` (where in the schedule it is, the
learning rate, the history so far), and only then removes the previous `.pth`: a kill at any moment leaves a JSON and
the weights it describes. `fit_schedule` replays fastai's `fine_tune` schedule phase by phase, so that it can re-enter
it after any finished epoch with `fit_one_cycle(start_epoch=...)`.
"""
from __future__ import annotations

import json, time, zipfile
from pathlib import Path

from fastai.vision.all import Callback, Learner
from fastai.learner import save_model, load_model

from fashion_fastai.networks.attributes import article_vocab
from fashion_fastai.core.atomic import atomic_path, atomic_write_text
from fashion_fastai.core.compat import fine_tune_phases
from fashion_fastai.training.distributed import is_main
from fashion_fastai.core.errors import OptionError


def state_path(run_dir: Path, stage: str) -> Path: return Path(run_dir) / 'checkpoints' / f'{stage}.json'


def read_state(run_dir: Path, stage: str) -> dict | None:
    """The model's last checkpoint state (None if it never finished an epoch), checked before a resumed run reads any
    data: a state cut short, or one whose weights file is missing or cut short, is named with what to do."""
    p = state_path(run_dir, stage)
    if not p.is_file(): return None
    try: state = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise OptionError(f"--resume {run_dir}: the checkpoint state {p} is damaged ({e}); delete it to retrain "
                          f"{stage} from its start, or start a new run.") from e
    weights = p.parent / state['file'] if not state.get('done') else Path(run_dir) / f'{stage}.pth'
    if not zipfile.is_zipfile(weights):
        raise OptionError(f"--resume {run_dir}: {stage}'s weights {weights} are "
                          f"{'missing' if not weights.exists() else 'cut short or damaged'}; delete {p} to retrain "
                          f"{stage} from its start, or start a new run.")
    return state


def started_models(run_dir: Path) -> set:
    """The names of the models of a run folder that have finished at least one epoch (their options can no longer
    change)."""
    folder = Path(run_dir) / 'checkpoints'
    return {p.stem for p in folder.glob('*.json')} if folder.is_dir() else set()


def write_state(run_dir: Path, stage: str, state: dict) -> None:
    atomic_write_text(state_path(run_dir, stage), json.dumps(state, indent=1))


def skipped_epoch(learn: Learner) -> bool:
    "fastai's `SkipToEpoch` cancels resumed-over epochs, but `after_epoch` still runs for them, with no losses logged."
    rec = learn.recorder
    return len(rec.log) < len(rec.metric_names)


class EpochCheckpoint(Callback):
    """After every trained epoch: model + optimiser state, then the JSON saying which epoch of which phase it is (by the
    main process only, when several train together: their weights are the same)."""
    order = 62  # after EpochLog (61), whose rows go into the state
    def __init__(self, run_dir: Path, stage: str, lr: float, seconds: float = 0.):
        self.run_dir, self.stage, self.lr, self.seconds = Path(run_dir), stage, lr, seconds
    def before_fit(self): self.t0 = time.time()
    def after_epoch(self):
        if getattr(self.learn, 'lr_finder', None) or skipped_epoch(self.learn) or not is_main(): return
        phase = self.learn.epoch_log.phase
        folder = state_path(self.run_dir, self.stage).parent
        pth = folder / f'{self.stage}-{phase}-{self.epoch:03d}.pth'  # a new name each epoch: the JSON never points at a
        with atomic_path(pth) as tmp: save_model(tmp, self.learn.model, self.learn.opt, with_opt=True)  # newer file
        now = time.time()
        self.seconds, self.t0 = self.seconds + now - self.t0, now
        write_state(self.run_dir, self.stage, dict(
            phase=phase, epoch=self.epoch, n_epoch=self.n_epoch, file=pth.name, lr=self.lr, done=False,
            train_seconds=round(self.seconds, 1), rows=self.learn.epoch_log.rows, vocab=article_vocab(self.dls)))
        for old in folder.glob(f'{self.stage}-*.pth'):
            if old != pth: old.unlink()


def fit_schedule(learn: Learner,
                 lr: float,
                 epochs: int,                 # epochs of the whole network
                 freeze_epochs: int = 0,      # head-only epochs first
                 run_dir: Path = None,        # where checkpoints/ goes (None: no checkpoints, e.g. in a notebook)
                 resume: dict | None = None,  # a checkpoint state (`read_state`) to continue from
                 ) -> None:
    "Run the stage's schedule from the start or from the epoch after `resume`'s, checkpointing every epoch."
    stage = learn.epoch_log.stage
    if resume is not None and resume['vocab'] != article_vocab(learn.dls):
        raise OptionError(f"Cannot resume {stage}: its classes changed since the checkpoint in {run_dir} was written "
                          f"(was the data folder modified?). Start a new run instead.")
    cbs = [] if run_dir is None else [EpochCheckpoint(run_dir, stage, lr, resume['train_seconds'] if resume else 0.)]
    if resume: learn.epoch_log.rows = list(resume['rows'])
    phases = fine_tune_phases(epochs, lr, freeze_epochs)
    order = [p for p, *_ in phases]
    for phase, n, kw in phases:
        learn.freeze() if phase == 'head' else learn.unfreeze()  # either creates the optimiser if there is none yet
        start = 0
        if resume is not None:
            if order.index(phase) < order.index(resume['phase']): continue
            if phase == resume['phase']:
                load_model(state_path(run_dir, stage).parent / resume['file'], learn.model, learn.opt, with_opt=True,
                           device=learn.dls.device)
                start = resume['epoch'] + 1
                if start >= n: continue
        learn.fit_one_cycle(n, start_epoch=start, cbs=cbs, **kw)
