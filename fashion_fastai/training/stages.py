"""The run's learners and how a body travels from one model to the next.

Every model of the run (models.py's table) is a fresh `vision_learner` on its part: stage one on the top part, stage two
a *second* learner on the rare part whose fresh head has `n_out` = the rare vocab size and whose body starts from stage
one's weights (or ImageNet's, or scratch, to measure the transfer gain), the all-classes model on every part.  Learners
are always built with `pretrained=False` and the body loaded afterwards, so that weights from the torchvision cache, a
`--weights` file, the Lite packages or a model trained before all take the same, recorded path.
"""
from __future__ import annotations

import sys, time

import torch
from fastcore.imports import in_notebook
from fastai.vision.all import (vision_learner, accuracy, top_k_accuracy, Callback, ProgressCallback, Learner, valley,
                               LabelSmoothingCrossEntropyFlat, to_float, to_detach, to_concat, noop)

from fashion_fastai.networks.attributes import (AttributeLoss, head_metrics, add_attribute_heads, attribute_heads,
                                                article_head,                          article_vocab)
from fashion_fastai.core.errors import OptionError
from fashion_fastai.training.checkpoint import fit_schedule, skipped_epoch
from fashion_fastai.training.distributed import from_main, training_ctx
from fashion_fastai.networks.optimizer import FusedAdam
from fashion_fastai.core.models import ModelSpec, MODELS, NAMES
from fashion_fastai.networks.weights import get_arch, body_state_from_imagenet

EPOCH_SECONDS_DIGITS = 2  # the history's seconds per pass, in hundredths; `run.epoch_seconds` totals them as kept


def top5(inp, targ, axis=-1):
    "Top-5 accuracy that still works for parts with fewer than 5 classes (fastai's raises when k > classes)."
    return top_k_accuracy(inp, targ, k=min(5, inp.shape[axis]), axis=axis)


class EpochLog(Callback):
    """Keeps every epoch's metrics across the two fits of `fine_tune` (for history_stage*.csv), with the seconds its
    training and its validation pass took apart (where a run's time goes: `run.phase_seconds`), and, when stdout is
    neither a terminal nor a notebook (CI, nohup, pipes), prints one flushed line per epoch instead of progress bars
    that would fill the log. A notebook's stdout is not a TTY either, but it draws fastprogress's HTML bars, so it keeps
    them."""
    order = 61  # after Recorder (50) has computed the epoch's values, after ProgressCallback (60)
    training_only = True  # left out of the exported learner (artifacts.export_stage)
    def __init__(self, stage: str, plain: bool | None = None):
        self.stage, self.rows = stage, []
        self.plain = not (sys.stdout.isatty() or in_notebook()) if plain is None else plain
    def before_fit(self):
        frozen = getattr(self.opt, 'frozen_idx', 0) if self.opt is not None else 0
        self.phase = 'head' if frozen else 'all'  # fine_tune's first fit trains the head only
        if self.plain and self.learn.logger is not None and getattr(self.learn.logger, '__name__', '') != 'noop':
            self.old_logger, self.learn.logger = self.learn.logger, self._line
    def after_fit(self):
        if hasattr(self, 'old_logger'): self.learn.logger = self.old_logger; del self.old_logger
    def before_train(self): self.seconds, self.t0 = {}, time.perf_counter()
    def after_train(self): self.seconds['train_seconds'] = self._since_t0()
    def before_validate(self): self.t0 = time.perf_counter()
    def after_validate(self):  # also the end of a `get_preds` outside training, which is no epoch's
        if hasattr(self, 'seconds'): self.seconds['valid_seconds'] = self._since_t0()
    def _since_t0(self): return round(time.perf_counter() - self.t0, EPOCH_SECONDS_DIGITS)
    def after_epoch(self):
        if (not hasattr(self.recorder, 'log') or getattr(self.learn, 'lr_finder', None)
                or skipped_epoch(self.learn)): return
        row = dict(zip(self.recorder.metric_names, self.recorder.log))
        row.pop('epoch', None)
        self.rows.append({'stage': self.stage, 'phase': self.phase, 'epoch': len(self.rows), **row,
                          **getattr(self, 'seconds', {})})
    def _line(self, log):
        if skipped_epoch(self.learn): return  # an epoch finished before a resume
        vals = [f'{n} {v:.4f}' if isinstance(v, float) else f'{n} {v}' for n, v in zip(self.recorder.metric_names, log)]
        print(f'[{self.stage} {self.phase}] ' + '  '.join(vals), flush=True)


class CPUAutocast(Callback):
    """bfloat16 autocast on the CPU: fastai's `MixedPrecision` only autocasts on CUDA, but CPUs with AMX/AVX-512 BF16
    run convolutions faster in bf16 (BENCHMARKS.md). bf16 has fp32's range, so no loss scaling is needed."""
    order = 10
    ctx = None
    training_only = True  # left out of the exported learner (artifacts.export_stage)
    def before_batch(self): self.ctx = torch.autocast('cpu', dtype=torch.bfloat16); self.ctx.__enter__()
    def after_pred(self): self.learn.pred = to_float(self.pred)  # one tensor, or one per attribute head
    def after_loss(self): self._exit()
    def after_cancel_batch(self): self._exit()
    def _exit(self):
        if self.ctx is not None: self.ctx.__exit__(None, None, None); self.ctx = None


class KeepValidPreds(Callback):
    """The last validation pass's outputs (activated, as `get_preds` gives them) and targets, in `result`.  When fastai
    validates on the test split, the last epoch's pass is the evaluation itself, so the run need not predict those
    images a second time."""
    order = 70  # after CPUAutocast's fp32 outputs
    training_only = True  # left out of the exported learner (artifacts.export_stage)
    result, preds = None, ()  # `preds` stays empty when a pass is cancelled before it starts (lr_find)
    def before_validate(self): self.preds, self.targs = [], []
    def after_batch(self):
        if not self.training: self.preds.append(to_detach(self.pred)); self.targs.append(to_detach(self.yb))
    def after_validate(self):
        if not self.preds: return  # a cancelled pass (lr_find): keep what there was
        targs = to_concat(self.targs)
        self.result = (getattr(self.loss_func, 'activation', noop)(to_concat(self.preds)),
                       targs[0] if len(targs) == 1 else targs)
        self.preds, self.targs = [], []


def set_precision(learn: Learner, precision: str, channels_last: bool = None) -> Learner:
    """Mixed precision comes with channels_last (fastai's `ChannelsLast`): oneDNN's and cuDNN's reduced-precision
    convolutions are fastest in that layout (BENCHMARKS.md); fp32 takes it when `channels_last` says so (`None`: as the
    precision does; see `config.resolve_channels_last`)."""
    if precision == 'fp16':
        learn.to_fp16()
    elif precision == 'bf16':
        if torch.cuda.is_available(): learn.to_bf16()
        else: learn.add_cb(CPUAutocast())
    if channels_last or (channels_last is None and precision != 'fp32'): learn.to_channelslast(use_amp=False)
    return learn


def build_learner(dls,                 # the part's DataLoaders
                  arch: str,           # torchvision ResNet or timm model name
                  body_state: dict = None, # fastai body state_dict to start from (None: random init)
                  path=None,           # learner path (the run folder)
                  stage: str = MODELS[0].name, # the model's name (models.py): its epoch lines and checkpoints
                  precision: str = 'fp32', # fp32 | bf16 | fp16 (resolved, not 'auto')
                  label_smoothing: float = 0., # > 0: fastai's label-smoothing cross-entropy with this epsilon
                  attributes: dict = None,     # {other attribute: vocab}: a head each beside the article type's
                  attribute_weights: tuple = (), # loss weights, articleType first, then each of `attributes`
                  channels_last: bool = None,  # train in channels_last (None: with mixed precision only)
                  ) -> Learner:
    """A `vision_learner` with a freshly initialised head for the article types (and the other attributes, if any) and,
    optionally, a given body.  Its optimiser is fastai's default Adam on torch's fused kernel (see optimizer.py)."""
    if attributes:
        loss_func = AttributeLoss((*attribute_weights[1:], attribute_weights[0]), label_smoothing)
        metrics = head_metrics(list(attributes))
    else:  # None: fastai's default loss
        loss_func = LabelSmoothingCrossEntropyFlat(eps=label_smoothing) if label_smoothing else None
        metrics = [accuracy, top5]
    learn = vision_learner(dls, get_arch(arch), n_out=len(article_vocab(dls)), pretrained=False, metrics=metrics,
                           path=path, loss_func=loss_func, opt_func=FusedAdam)
    if attributes: add_attribute_heads(learn.model, attributes)
    if body_state is not None: learn.model[0].load_state_dict(body_state)
    set_precision(learn, precision, channels_last)
    learn.add_cb(EpochLog(stage))
    if learn.epoch_log.plain: learn.remove_cb(ProgressCallback)
    return learn


def build_model(m: ModelSpec,               # the model's row of the run's table (models.py)
                dls,                          # its part's DataLoaders
                arch: str,                    # torchvision ResNet or timm model name
                body: str,                    # where its body starts: 'imagenet', 'scratch' or a trained model's name
                head: str = 'new',            # its article-type head: new (fastai's fresh one) or imprint
                # the trained learner `body` names (its body, other heads, head to imprint)
                source: Learner = None,
                imagenet_state: dict = None,  # the starting ImageNet state_dict (`weights.resolve_weights`); None: none
                # `build_learner`'s options: path, precision, label_smoothing, attributes...
                **kw) -> Learner:
    """Any model of the run: a fresh learner on its part, its body from ImageNet, from scratch or from a model trained
    before it (whose other attributes' heads carry on too, their vocabs spanning every part).  Its article-type head is
    fastai's freshly initialised one (`new`, the protocol's second learner), or `source`'s with its last layer imprinted
    from the new classes' mean features (`imprint`, see `imprint_head`), which answers before any fine-tuning.  A body
    from ImageNet falls back to scratch when the run has no weights (`--pretrained auto` warned), unless the model's own
    option asked for ImageNet (`--stage2-body imagenet`, to measure the transfer gain), which then fails."""
    if body not in ('imagenet', 'scratch', *NAMES):
        raise ValueError(f"{m.name}'s body from {body!r}: expected imagenet, scratch or one of {', '.join(NAMES)}")
    from_model = body not in ('imagenet', 'scratch')
    if from_model and source is None:
        raise ValueError(f"{m.name}'s body comes from {body}: pass that learner as `source`")
    if body == 'imagenet' and imagenet_state is None and m.body_option:
        raise OptionError(f"--{m.body_option.replace('_', '-')} imagenet needs ImageNet weights: pass --weights FILE "
                          f"or --pretrained yes.")
    state = (body_of(source) if from_model else
             body_state_from_imagenet(arch, imagenet_state) if body == 'imagenet' and imagenet_state is not None else
             None)
    learn = build_learner(dls, arch, state, stage=m.name, **kw)
    if from_model: copy_attribute_heads(learn, source)
    if head == 'imprint':
        if not from_model:
            raise ValueError(f"an imprinted head starts from a trained model's: {m.name}'s body is {body}")
        imprint_head(learn, source)
    elif head != 'new': raise ValueError(f"{m.name} head {head!r}: expected new or imprint")
    return learn


def copy_attribute_heads(learn: Learner, source: Learner) -> None:
    "The other attributes' heads of `source`, into `learn` (which has the same attributes); nothing without attributes."
    heads = attribute_heads(learn.model)
    if heads is not None: heads.others.load_state_dict(attribute_heads(source.model).others.state_dict())


def body_of(learn: Learner) -> dict:
    "A copy of the learner's body weights, so that training the next learner leaves this one as it was."
    return {k: v.detach().clone() for k, v in learn.model[0].state_dict().items()}


@torch.no_grad()
def imprint_head(learn: Learner, source: Learner) -> None:
    """Copy `source`'s head but for the last linear layer, then set that layer's row for each class to the direction of
    the class's mean input feature over its (unaugmented) training images, at the mean length of `source`'s trained
    rows. A class with no training image can never be right: its row points away from the mean of all features (fastai's
    last layer has no bias), so it starts unpredicted."""
    head, src = article_head(learn.model), article_head(source.model)
    last, n = head[-1], len(head) - 1
    head.load_state_dict({k: v for k, v in src.state_dict().items() if not k.startswith(f'{n}.')}, strict=False)
    feats, targets = [], []
    hook = last.register_forward_hook(lambda m, inp, out: feats.append(inp[0].float().cpu()))
    dl = learn.dls.test_dl(learn.dls.train_ds.items, with_labels=True, shuffle=False)
    learn.model.eval()
    try:
        for xb, *ys in dl: learn.model(xb.as_subclass(torch.Tensor)); targets.append(ys[-1].cpu())  # article type last
    finally: hook.remove()
    feats, targets = torch.cat(feats), torch.cat(targets).as_subclass(torch.Tensor)
    scale = src[-1].weight.norm(dim=1).mean()
    counts = torch.bincount(targets, minlength=last.out_features)
    means = torch.zeros(last.out_features, feats.shape[1]).index_add_(0, targets, feats)
    means[counts == 0] = -feats.mean(0)
    last.weight.copy_((torch.nn.functional.normalize(means, dim=1) * scale).to(last.weight))


def suggest_lr(learn: Learner) -> float:
    """fastai's `lr_find` valley suggestion, on the model as it will first be trained (frozen body if there is a head
    phase)."""
    return float(learn.lr_find(suggest_funcs=(valley,), show_plot=False).valley)


def train_stage(learn: Learner,
                epochs: int,            # epochs with the whole network trainable
                lr,                     # a float, a (body, head) pair, or 'auto' for lr_find's valley
                freeze_epochs: int = 0, # head-only epochs first (fine_tune); 0 trains everything from the start
                run_dir=None,           # checkpoint every epoch into run_dir/checkpoints (None: no checkpoints)
                resume: dict = None,    # a checkpoint state to continue from (see checkpoint.py)
                ) -> float:
    """fastai's `fine_tune` schedule when there is a head-only phase (a body worth protecting); a plain one-cycle fit
    otherwise, since freezing a randomly initialised body only wastes epochs.  Launched on several processes, it trains
    them together (see distributed.py).  Returns the learning rate used."""
    if freeze_epochs: learn.freeze()
    if lr == 'auto': lr = resume['lr'] if resume else from_main(suggest_lr(learn))  # a resumed run keeps its rate
    lr = tuple(map(float, lr)) if isinstance(lr, (tuple, list)) else float(lr)
    with training_ctx(learn): fit_schedule(learn, lr, epochs, freeze_epochs, run_dir, resume)
    return lr
