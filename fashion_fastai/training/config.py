"""Every training option, once: its name, default, one-line help and validation, and its life as `config.json`.

`TrainConfig` is what the CLI parses (its `--help` comes from the field annotations, through fastcore's `anno_parser`),
what `bench/`, the notebooks and the tests build, and what a run folder records and `--resume` reads back. It parses and
checks itself when built (strings from the command line or the environment become each field's one type), so a bad value
fails before any data is read, naming the option and what would be valid; nothing downstream checks an option again.

What depends on the machine (the precision, the channels_last layout, the default arch) stays a choice here (`auto`, or
no arch) and is resolved in one step, `TrainConfig.resolve`, whose result config.json records apart: a run resumed on
another machine resolves it again.
"""
from __future__ import annotations

import json, os
from dataclasses import dataclass, fields, asdict, replace
from pathlib import Path
from typing import Annotated

import torch

from fashion_fastai.core.errors import OptionError, DataError
from fashion_fastai.answering.parts import GATES
from fashion_fastai.core.models import ALL, MODELS, spec
from fashion_fastai.core.schema import ATTRIBUTES, IMAGE_SIZE, LABEL
from fashion_fastai.data.holdout import AUTO, RULES
from fashion_fastai.data.styles import data_folder_problem
from fashion_fastai.networks.weights import check_arch, default_arch, is_timm

PRETRAINED = ('auto', 'yes', 'no')
BODIES = (MODELS[0].name, 'imagenet', 'scratch')  # where stage two's body starts
HEADS = ('imprint', 'new')  # how the stage-two and all-classes heads start
RANK_ON = ('all', 'train')
ANSWERS = ('auto', ALL, *GATES)  # --answer: chosen on the holdout, or one candidate (evaluation/join.py)
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


def parse_size(size) -> tuple[int, int]:
    "'80x60' or (80, 60) -> (80, 60) as (height, width); '224' -> (224, 224)."
    try:
        hw = tuple(int(s) for s in (size if isinstance(size, (tuple, list)) else
                                    str(size).lower().replace(',', 'x').split('x')))
        if len(hw) == 1: hw = hw * 2
        if len(hw) != 2 or min(hw) < 8: raise ValueError
    except ValueError:
        raise OptionError("--size must be HEIGHTxWIDTH (e.g. 80x60) or one number for a square, each >= 8; got "
                          f"{size!r}.")
    return hw


def default_holdout(data) -> float:
    """A share of the even years that the models never train on, where the temperatures and the zero-shot gate are
    fitted: with --data 5% (over a thousand photos, so that the gate's 1% bound is a dozen of them, for a twentieth of
    the training photos); the demo's rare classes have a handful of even-year photos each, and only a tenth of them
    leaves each part some."""
    return 0.05 if data is not None else 0.1


def default_size(data) -> tuple[int, int]:
    """With --data, the small set's 80x60 images upsampled to 128x96: ImageNet weights see more at a scale nearer their
    own (chosen on the real data's holdout: BENCHMARKS.md); the demo trains at its images' own size."""
    return (128, 96) if data is not None else IMAGE_SIZE


FLIP = 'flip'  # --tta flip


def parse_tta(tta) -> int | str:
    "'flip', or a number of fastai `tta` passes (0: none); config.json may hold either."
    if str(tta).strip().lower() == FLIP: return FLIP
    try: n = int(str(tta).strip())
    except ValueError: n = -1
    if n < 0:
        raise OptionError(f"--tta must be 'flip' (each image averaged with its mirror image), a number of fastai tta "
                          f"passes (4 is usual), or 0 for none; got {tta!r}.")
    return n


def parse_lr(lr, option: str = '--lr') -> float | str | tuple[float, float]:
    """A positive learning rate, 'auto' (fastai's `lr_find` valley), or 'LO:HI' (config.json: [LO, HI]): discriminative
    rates, LO for the body and HI for the head, as fastai's `slice(LO, HI)`: a body that already knows the images can
    move less than the head that has to learn new classes."""
    if str(lr) == 'auto': return 'auto'
    parts = lr.split(':') if isinstance(lr, str) else list(lr) if isinstance(lr, (list, tuple)) else [lr]
    try: v = [float(x) for x in parts]
    except (TypeError, ValueError): v = [-1.]
    if len(v) not in (1, 2) or not min(v) > 0 or v[0] > v[-1]:
        raise OptionError(f"{option} must be a positive number, 'auto', or LO:HI with 0 < LO <= HI (the body's rate, "
                          f"then the head's, e.g. 2e-4:2e-3); got {lr!r}.")
    return v[0] if len(v) == 1 else tuple(v)


def rate_words(lr) -> str:
    "A learning rate as the log says it: '0.002', or '0.0002:0.002' (body:head) for discriminative rates."
    return ':'.join(f'{v:.3g}' for v in lr) if isinstance(lr, (tuple, list)) else f'{lr:.3g}'


def resolve_precision(precision: str) -> str:
    """auto: bf16 on GPUs that support it (Ampere and newer), fp32 on the CPU (bf16 there is opt-in: it depends on the
    CPU)."""
    _choice('--precision', precision, PRECISIONS)
    if precision == 'fp16' and not torch.cuda.is_available():
        raise OptionError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU.")
    if precision != 'auto': return precision
    return 'bf16' if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 'fp32'


def parse_holdout_by(rules) -> tuple:
    """'years,products' (or a list) -> ('years', 'products'): holdout rules (holdout.RULES), in the order they apply; or
    ('auto',), settled on the data (holdout.resolve)."""
    names = [r.strip() for r in (rules.split(',') if isinstance(rules, str) else rules or ()) if r.strip()]
    if names == [AUTO]: return (AUTO,)
    if not names or any(r not in RULES for r in names) or len(set(names)) != len(names):
        raise OptionError(f"--holdout-by takes {AUTO}, or one or more of {', '.join(RULES)}, comma-separated, each "
                          f"once; got {','.join(names) or 'nothing'}.")
    return tuple(r for r in RULES if r in names)


def parse_attributes(attributes) -> tuple:
    "'masterCategory,subCategory' (or a list) -> ('masterCategory', 'subCategory'), each a column a head can predict."
    names = [a.strip() for a in (attributes.split(',') if isinstance(attributes, str) else attributes or ())
             if a.strip()]
    for a in names:
        if a not in ATTRIBUTES:
            why = "is what every run predicts" if a == LABEL else "is not one"
            raise OptionError(f"--attributes: {a!r} {why}; choose among {', '.join(ATTRIBUTES)} (styles.csv columns).")
    if len(set(names)) != len(names): raise OptionError(f"--attributes names a column twice: {','.join(names)}.")
    return tuple(names)


def parse_attribute_weights(weights, attributes: tuple) -> tuple:
    """The loss weight of each head, articleType first, then each of `attributes` (a string 'w,w,...' or a list);
    default: the published multitask weighting, 2 for articleType and 0.5 for each other head."""
    if weights is None or weights == '' or (isinstance(weights, (list, tuple)) and not weights):
        return (2., *(0.5 for _ in attributes)) if attributes else ()
    if not attributes:
        raise OptionError(f"--attribute-weights {weights!r} needs --attributes: with the article type alone there is "
                          f"nothing to weigh.")
    try: values = [float(w) for w in (weights if isinstance(weights, (list, tuple)) else str(weights).split(','))]
    except (TypeError, ValueError): values = None
    if values is None or len(values) != len(attributes) + 1 or not all(v >= 0 for v in values) or not values[0] > 0:
        raise OptionError(f"--attribute-weights must be {len(attributes) + 1} numbers >= 0, comma-separated, the first "
                          f"(> 0) for articleType, then one each for {', '.join(attributes)}; got {weights!r}.")
    return tuple(values)


def parse_channels_last(value) -> bool | None:
    "'yes'/'no'/'auto' (or a bool, or None from config.json) -> True/False/None; None is resolved on the machine."
    if value is None or isinstance(value, bool): return value
    _choice('--channels-last', value, ('auto', 'yes', 'no'))
    return None if value == 'auto' else value == 'yes'


def parse_yes_no(option: str, value) -> bool:
    "'yes'/'no' (or a bool, from config.json) -> True/False."
    if isinstance(value, bool): return value
    _choice(option, value, ('yes', 'no'))
    return value == 'yes'


def resolve_channels_last(channels_last: bool | None, precision: str, arch: str) -> bool:
    """None (auto): yes with mixed precision (its fast kernels want that layout) and for timm models on a CPU
    (EfficientNet-Lite's depthwise convolutions train faster in it there); no for torchvision ResNets in fp32, where it
    was not measured."""
    if channels_last is not None: return channels_last
    return precision != 'fp32' or (is_timm(arch) and not torch.cuda.is_available())


def _choice(option: str, value, valid) -> None:
    if value not in valid: raise OptionError(f"{option} must be one of {', '.join(valid)}; got {value!r}.")


S, I, F = {'type': str}, {'type': int}, {'type': float}  # what argparse hands over; `TrainConfig` parses the rest


@dataclass
class TrainConfig:
    "Train and evaluate both stages of the Fashion Product Images protocol; writes a run folder."
    data: Annotated[Path | None, "Kaggle folder holding styles.csv and images/ (default: the built-in demo "
                    "data)", S] = None
    out: Annotated[Path, "parent folder of the run folders", S] = Path('runs')
    name: Annotated[str | None, "run folder name (default: date and time)", S] = None
    arch: Annotated[str | None, "torchvision ResNet (resnet18 ... resnet152) or a timm model name, e.g. "
                                "tf_efficientnet_lite0 (default, resolved on this machine: with --data the protocol's "
                                "resnet50 where torchvision's ImageNet weights are cached or downloadable, else the "
                                "installed tf_efficientnet_lite0; on the demo data tf_efficientnet_lite0 when its "
                                "ImageNet weights are installed, else resnet18)", S] = None
    pretrained: Annotated[str, "ImageNet weights: auto = use if installed, cached or downloadable, else warn and train "
                               "from scratch; yes = required; no = scratch", S] = 'auto'
    weights: Annotated[Path | None, "a torchvision or timm ImageNet state_dict file for --arch to start from (instead "
                                    "of the packages and caches)", S] = None
    size: Annotated[tuple[int, int] | None, "model input HEIGHTxWIDTH, or one number for a square (default: 128x96 "
                                            "with --data, the small data set's 80x60 images upsampled, chosen on its "
                                            "holdout; the demo's own 80x60 without)", S] = None
    bs: Annotated[int, "batch size (chosen on the real data's holdout: BENCHMARKS.md)", I] = 32
    epochs: Annotated[int, "stage-one epochs with the whole network trained", I] = 4
    epochs2: Annotated[int, "stage-two epochs (0 skips stage two)", I] = 10
    freeze_epochs: Annotated[int | None, "head-only epochs before each model (default: 0 for the two stages, 1 for the "
                                         "all-classes model)", I] = None
    lr: Annotated[float | str, "stage-one learning rate, 'auto' for fastai lr_find's valley suggestion, or LO:HI for "
                              "discriminative rates (the body LO, the head HI, fastai's slice)", S] = 2e-3
    lr2: Annotated[float | str, "stage-two learning rate, 'auto', or LO:HI", S] = 2e-3
    epochs_all: Annotated[int, "epochs of the all-classes model (one answer among every article type, body from the "
                               "last stage), after the two stages; 0 skips it", I] = 1
    lr_all: Annotated[float | str, "the all-classes model's learning rate, 'auto', or LO:HI", S] = 2e-3
    all_head: Annotated[str, "the all-classes model's head: imprint (the last stage's head, its last layer set from "
                             "each class's mean features) or new (fastai's fresh head)", S] = 'imprint'
    answer: Annotated[str, "the answer for any photo (predict's default): auto (the candidate with the most holdout "
                           "photos right), all (the all-classes model alone), all_parts (the stages, weighed by the "
                           "all-classes model's part sums) or stages (the stages, weighed by their own best "
                           "probabilities)", S] = 'auto'
    topk: Annotated[int, "number of most frequent classes in stage one", I] = 20
    rank_on: Annotated[str, "rank classes over 'all' rows of styles.csv (the protocol) or 'train' rows", S] = 'all'
    holdout: Annotated[float | None, "fraction of even-year images held out (per class) for validation, the "
                                     "temperatures and the zero-shot gate; 0 validates on the test split, with neither "
                                     "(default: 0.05 with --data, 0.1 on the demo, whose rare classes are a handful of "
                                     "photos each)", F] = None
    holdout_by: Annotated[tuple[str, ...], "what the holdout differs from training by, comma-separated rules, each "
                                           "drawing --holdout of what the others leave: random (a share of the "
                                           "photos), years (whole even years, the smallest first), products (whole "
                                           "products: the photos whose names differ only by colour words); auto: "
                                           "years where whole even years come near the share (the Kaggle data), else "
                                           "random (chosen on the real data: BENCHMARKS.md)", S] = 'auto'
    stage2_body: Annotated[str, f"where stage two's body starts: {BODIES[0]} (the protocol), imagenet or scratch",
                           S] = BODIES[0]
    stage2_head: Annotated[str, "stage two's head: new (fastai's fresh head, the protocol) or imprint (stage one's "
                                "head, its last layer set from each rare class's mean features; needs --stage2-body "
                                f"{BODIES[0]})", S] = 'new'
    precision: Annotated[str, "fp32, bf16 (CUDA AMP, or CPU autocast), fp16 (CUDA only); auto: bf16 on recent GPUs, "
                              "else fp32 (resolved on the machine that trains)", S] = 'auto'
    channels_last: Annotated[bool | None, "train in the channels_last memory layout: yes, no, or auto (with bf16/fp16, "
                                          "and for timm models on a CPU, where it trains EfficientNet-Lite faster: "
                                          "BENCHMARKS.md; resolved on the machine that trains)", S] = None
    seed: Annotated[int, "random seed (weights init, shuffling, holdout)", I] = 42
    workers: Annotated[int | None, "DataLoader worker processes (default: 0 on a CPU with <= 4 cores, else "
                                   "fastai's)", I] = None
    demo_scale: Annotated[float, "size of the generated demo data set, 1.0 = about 2,600 images (only without "
                                 "--data)", F] = 0.5
    label_smoothing: Annotated[float, "> 0: label-smoothing cross-entropy with this epsilon (e.g. 0.1), both "
                                      "stages", F] = 0.
    tta: Annotated[int | str, "test-time augmentation in the final evaluation: flip (each image averaged with its "
                              "mirror image: one more pass), N (fastai's tta: N passes with the training "
                              "augmentation, article type alone), or 0 (none)", S] = 0
    zero_shot: Annotated[bool | str, "yes: keep the starting network's ImageNet classifier beside the models, for "
                                     "answers on article types without a training photo (needs a holdout to fit its "
                                     "gate on); no: closed-set answers only, without its passes over the holdout and "
                                     "the test split", S] = 'yes'
    zero_shot_map: Annotated[Path | None, "a CSV of rows articleType,imagenet[,main] that adds to or replaces the "
                                          "package's zero-shot table, so that article types without a training photo "
                                          "(a catalogue's new category) get answers from the ImageNet "
                                          "classifier", S] = None
    attributes: Annotated[tuple[str, ...], "other styles.csv columns to predict, one head each beside articleType, "
                                           "comma-separated: gender, masterCategory, subCategory, baseColour, season, "
                                           "usage (default: none)", S] = ()
    attribute_weights: Annotated[tuple[float, ...], "loss weight of each head, comma-separated: articleType first, "
                                                    "then each of --attributes (default: 2 for articleType, 0.5 for "
                                                    "each other)", S] = ()

    def __post_init__(self):
        "Parse every value into its one type and check it, so that a bad option fails before anything is read."
        self.data, self.weights, self.zero_shot_map = _path(self.data), _path(self.weights), _path(self.zero_shot_map)
        self.out, self.name, self.arch = _path(self.out), _text(self.name), _text(self.arch)
        for k in ('bs', 'epochs', 'epochs2', 'epochs_all', 'topk', 'seed', 'freeze_epochs', 'workers'):
            setattr(self, k, _number(k, getattr(self, k), int))
        if self.holdout is None: self.holdout = default_holdout(self.data)
        for k in ('holdout', 'demo_scale', 'label_smoothing'): setattr(self, k, _number(k, getattr(self, k), float))
        _choice('--pretrained', self.pretrained, PRETRAINED)
        if self.arch is not None: check_arch(self.arch)
        for k in ('epochs', 'bs', 'topk'):
            if getattr(self, k) is None or getattr(self, k) < 1:
                raise OptionError(f"--{k} must be a positive integer, got {getattr(self, k)}.")
        if self.epochs2 is None or self.epochs2 < 0:
            raise OptionError(f"--epochs2 must be a positive integer, or 0 to skip stage two; got {self.epochs2}.")
        if self.epochs_all is None or self.epochs_all < 0:
            raise OptionError(f"--epochs-all must be a positive integer, or 0 to skip the all-classes model; "
                              f"got {self.epochs_all}.")
        if self.freeze_epochs is not None and self.freeze_epochs < 0:
            raise OptionError(f"--freeze-epochs must be >= 0 (0: train the whole network from the first epoch), "
                              f"got {self.freeze_epochs}.")
        if self.workers is not None and self.workers < 0:
            raise OptionError(f"--workers must be >= 0 (0: decode images in the main process), got {self.workers}.")
        if self.data is None and not self.demo_scale > 0:
            raise OptionError(f"--demo-scale must be > 0 (1.0 = about 2,600 images), got {self.demo_scale}.")
        if not (self.holdout == 0 or 0 < self.holdout < 1):
            raise OptionError("--holdout must be 0 (no holdout: validate on the test split) or a fraction in (0, 1) "
                              f"of the even-year images, e.g. 0.1; got {self.holdout}.")
        if not 0 <= self.label_smoothing < 1:
            raise OptionError(f"--label-smoothing must be in [0, 1) (0: plain cross-entropy; 0.1 is usual), "
                              f"got {self.label_smoothing}.")
        self.tta = parse_tta(self.tta)
        self.holdout_by = parse_holdout_by(self.holdout_by)
        holds_nothing_out = (parse_holdout_by(_default('holdout_by')), parse_holdout_by('random'))
        if not self.holdout and self.holdout_by not in holds_nothing_out:
            raise OptionError(f"--holdout-by {','.join(self.holdout_by)} needs a holdout, and --holdout 0 holds "
                              f"nothing out: give --holdout a fraction (e.g. 0.05), or leave --holdout-by out.")
        self.zero_shot = parse_yes_no('--zero-shot', self.zero_shot)
        self.attributes = parse_attributes(self.attributes)
        self.attribute_weights = parse_attribute_weights(self.attribute_weights, self.attributes)
        if self.attributes and self.tta and self.tta != FLIP:
            raise OptionError(f"--tta {self.tta} (fastai's tta) averages one output, the article type's: with "
                              f"--attributes use --tta flip or leave --tta out.")
        _choice('--stage2-body', self.stage2_body, BODIES)
        _choice('--rank-on', self.rank_on, RANK_ON)
        _choice('--all-head', self.all_head, HEADS)
        _choice('--stage2-head', self.stage2_head, HEADS)
        _choice('--answer', self.answer, ANSWERS)
        if self.stage2_head == 'imprint' and self.stage2_body != BODIES[0]:
            raise OptionError("--stage2-head imprint starts from stage one's head, so it needs --stage2-body "
                              f"{BODIES[0]} (got {self.stage2_body}): use --stage2-head new.")
        _choice('--precision', self.precision, PRECISIONS)
        self.channels_last = parse_channels_last(self.channels_last)
        self.size = None if self.size is None else parse_size(self.size)
        self.lr, self.lr2 = parse_lr(self.lr), parse_lr(self.lr2, '--lr2')
        self.lr_all = parse_lr(self.lr_all, '--lr-all')
        if self.weights is not None and not self.weights.is_file():
            raise OptionError(f"--weights {self.weights} is not a file: give an ImageNet state_dict (.pth) for "
                              f"--arch {self.arch or 'ARCH'}, or leave --weights out to use the installed or cached "
                              f"weights.")
        if self.data is not None:
            if problem := data_folder_problem(self.data): raise DataError(problem)
        if self.data is not None: self.data = self.data.resolve()  # so that --resume works from any folder

    @property
    def input_size(self) -> tuple[int, int]:
        """--size, or the default for the data: with --data, the small set's 80x60 images upsampled to 128x96 (ImageNet
        weights see more at a scale nearer their own; chosen on the real data's holdout: BENCHMARKS.md); the demo
        trains at its images' own size."""
        return self.size or default_size(self.data)

    def head_epochs(self, model: str) -> int:
        """Head-only epochs before a model (the table's: none for the two stages, where training the whole network from
        the first epoch beat fine_tune's head epoch on the real data's holdout, BENCHMARKS.md; one for the all-classes
        model, whose imprinted head starts from the last stage's).  `--freeze-epochs` sets them all."""
        return self.freeze_epochs if self.freeze_epochs is not None else spec(model).head_epochs

    def resolve(self, previous: dict = None) -> tuple['TrainConfig', dict]:
        """This machine's answer to every `auto`: a copy with the arch, precision and channels_last settled, and the
        record of what was chosen and why (config.json's `resolved`).  `previous`: that record from the run being
        resumed, whose arch its checkpoints hold."""
        if self.arch: arch, why_arch = self.arch, 'given with --arch'
        elif previous and previous.get('arch'):
            arch, why_arch = previous['arch'], "as the run started (its checkpoints)"
        else: arch, why_arch = default_arch(self.data is not None, self.pretrained)
        precision = resolve_precision(self.precision)
        channels_last = resolve_channels_last(self.channels_last, precision, arch)
        record = dict(arch=arch, precision=precision, channels_last=channels_last, size=list(self.input_size),
                      why=dict(arch=why_arch,
                               precision='given with --precision' if self.precision != 'auto' else
                               'auto: bf16 on a GPU that supports it, else fp32',
                               channels_last='given with --channels-last' if self.channels_last is not None else
                               'auto: with mixed precision, and for timm models on a CPU'))
        return replace(self, arch=arch, precision=precision, channels_last=channels_last, size=self.input_size), record

    def data_options(self) -> dict:
        """`data.load_data`'s options for this run: a tool that rebuilds a run's rows (its holdout above all) gets the
        same."""
        return dict(k=self.topk, rank_on=self.rank_on, holdout=self.holdout, seed=self.seed, holdout_by=self.holdout_by,
                    attributes=self.attributes)

    def learner_options(self) -> dict:
        """The options every learner of the run is built with (`stages.build_learner`'s), but the data's attribute
        vocabs."""
        return dict(precision=self.precision, label_smoothing=self.label_smoothing,
                    attribute_weights=self.attribute_weights, channels_last=self.channels_last)

    def to_dict(self) -> dict:
        "JSON-ready: paths as strings, tuples as lists."
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> 'TrainConfig':
        """The options among `d`'s keys (a run's config.json holds more: versions, weights, timings); older names read
        too."""
        names = {f.name for f in fields(cls)}
        d = {'holdout_by': 'random', **{RENAMED.get(k, k): v for k, v in d.items()}}  # older runs: before --holdout-by
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_env(cls, prefix: str = 'FASHION_NB_') -> 'TrainConfig':
        "The options set in the environment as PREFIX<OPTION> (e.g. FASHION_NB_EPOCHS=1), parsed as the CLI's are."
        return cls(**{f.name: os.environ[prefix + f.name.upper()] for f in fields(cls) if prefix
                      + f.name.upper() in os.environ})

    @classmethod
    def of_run(cls, run_dir: Path) -> 'TrainConfig':
        "The options a run folder was started with, so that `--resume` continues the same run."
        return cls.from_dict(read_run_record(run_dir))

    def replace(self, **changes) -> 'TrainConfig':
        "A copy with some options changed, checked again."
        return replace(self, **changes)

    def resumed_with(self, given: dict, started: set) -> 'TrainConfig':
        """These (saved) options with the ones `given` again on the command line of `--resume`: those that leave what is
        already trained as it was (RESUMABLE; the schedule options of a model not yet started) are applied, any other
        that differs is refused by name."""
        changed = {k: v for k, v in given.items() if getattr(self.replace(**{k: v}), k) != getattr(self, k)}
        allowed = set(RESUMABLE) | {o for m in MODELS if m.name not in started
                                    for o in (m.epochs_option, m.lr_option, m.body_option, m.head_option) if o}
        refused = [k for k in changed if k not in allowed]
        if refused:
            flags = ', '.join(_flag(k) for k in refused)
            can = ', '.join(_flag(k) for k in sorted(allowed))
            raise OptionError(f"--resume: {flags} cannot change in a run that has started (what is trained so far used "
                              f"the saved value{'s' if len(refused) > 1 else ''}): leave "
                              f"{'them' if len(refused) > 1 else 'it'} out, or start a new run. What can change on "
                              f"resuming: {can}.")
        return self.replace(**changed)


RENAMED = {'stage2_init': 'stage2_body', 'all_init': 'all_head'}  # config.json keys of older versions
# how the run computes or answers, not what it learns
RESUMABLE = ('workers', 'precision', 'channels_last', 'tta', 'zero_shot', 'zero_shot_map', 'answer')


def _default(name: str):
    "A TrainConfig field's default, as declared."
    return next(f.default for f in fields(TrainConfig) if f.name == name)


def _flag(name: str) -> str: return '--' + name.replace('_', '-')


def _path(v) -> Path | None: return None if v is None or v == '' else Path(v).expanduser()


def _text(v) -> str | None: return None if v is None or str(v).strip() == '' else str(v).strip()


def _number(name: str, v, kind):
    "An int or float option from a string (the environment, config.json) or a number; None stays None."
    if v is None or (isinstance(v, kind) and not isinstance(v, bool)): return v
    try:
        n = float(v) if kind is float else int(str(v).strip())
        return n
    except (TypeError, ValueError):
        raise OptionError(f"{_flag(name)} must be {'a number' if kind is float else 'an integer'}, got "
                          f"{v!r}.") from None


def read_run_record(run_dir: Path) -> dict:
    "A run folder's config.json, as written: a clear error when it is missing or not one this program wrote."
    p = Path(run_dir) / 'config.json'
    if not Path(run_dir).is_dir():
        raise OptionError(f"--resume {run_dir}: no such folder; pass the folder of a run started by this program.")
    if not p.is_file():
        raise OptionError(f"--resume {run_dir}: no config.json there; pass the folder of a run started by this "
                          "program.")
    try:
        record = json.loads(p.read_text())
        if not isinstance(record, dict) or 'seed' not in record: raise ValueError('no training options in it')
        return record
    except (ValueError, UnicodeDecodeError) as e:
        raise OptionError(f"--resume {run_dir}: {p} is not a run configuration written by this program ({e}).") from e
