"""Every training option, once: its name, default, one-line help and validation, and its life as `config.json`.

`TrainConfig` is what the CLI parses (its `--help` comes from the field annotations, through fastcore's `anno_parser`),
what `bench/`, the notebooks and the tests build, and what a run folder records and `--resume` reads back.  It checks
itself when built, so a bad value fails before any data is read, naming the option and what would be valid; nothing
downstream checks an option again.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields, asdict, replace
from pathlib import Path
from typing import Annotated

from .errors import OptionError, DataError

PRETRAINED = ('auto', 'yes', 'no')
STAGE2_INITS = ('stage1', 'imagenet', 'scratch')
HEAD_INITS = ('imprint', 'new')  # how the stage-two and all-classes heads start
RANK_ON = ('all', 'train')
PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')


def parse_size(size) -> tuple[int, int]:
    "'80x60' or (80, 60) -> (80, 60) as (height, width); '224' -> (224, 224)."
    try:
        hw = tuple(int(s) for s in (size if isinstance(size, (tuple, list)) else
                                    str(size).lower().replace(',', 'x').split('x')))
        if len(hw) == 1: hw = hw * 2
        if len(hw) != 2 or min(hw) < 8: raise ValueError
    except ValueError:
        raise OptionError(f"--size must be HEIGHTxWIDTH (e.g. 80x60) or one number for a square, each >= 8; got {size!r}.")
    return hw


def default_size(data) -> tuple[int, int]:
    """With --data, the small set's 80x60 images upsampled to 128x96: ImageNet weights see more at a scale nearer their
    own (chosen on the real data's holdout: BENCHMARKS.md); the demo trains at its images' own size."""
    from .data import IMAGE_SIZE
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


def parse_lr(lr, option: str = '--lr') -> float | str:
    "A positive learning rate, or 'auto' (fastai's `lr_find` valley)."
    if str(lr) == 'auto': return 'auto'
    try: v = float(lr)
    except (TypeError, ValueError): v = -1.
    if not v > 0: raise OptionError(f"{option} must be a positive number or 'auto', got {lr!r}.")
    return v


def resolve_precision(precision: str) -> str:
    "auto: bf16 on GPUs that support it (Ampere and newer), fp32 on the CPU (bf16 there is opt-in: it depends on the CPU)."
    import torch
    _choice('--precision', precision, PRECISIONS)
    if precision == 'fp16' and not torch.cuda.is_available():
        raise OptionError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU.")
    if precision != 'auto': return precision
    return 'bf16' if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 'fp32'


def parse_attributes(attributes) -> tuple:
    "'masterCategory,subCategory' (or a list) -> ('masterCategory', 'subCategory'), each a column a head can predict."
    from .data import ATTRIBUTES, LABEL
    names = [a.strip() for a in (attributes.split(',') if isinstance(attributes, str) else attributes or ()) if a.strip()]
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


def resolve_channels_last(channels_last, precision: str, arch: str) -> bool:
    """auto: yes with mixed precision (its fast kernels want that layout) and for timm models on a CPU (EfficientNet-Lite's
    depthwise convolutions train faster in it there); no for torchvision ResNets in fp32, where it was not measured."""
    if isinstance(channels_last, bool): return channels_last
    _choice('--channels-last', channels_last, ('auto', 'yes', 'no'))
    if channels_last != 'auto': return channels_last == 'yes'
    import torch
    from .weights import is_timm
    return precision != 'fp32' or (is_timm(arch) and not torch.cuda.is_available())


def _choice(option: str, value, valid) -> None:
    if value not in valid: raise OptionError(f"{option} must be one of {', '.join(valid)}; got {value!r}.")


def _data_problem(data: Path) -> str | None:
    "Why `data` is not a Kaggle folder, with a hint where the right one is, or None."
    if (data / 'styles.csv').is_file(): return None
    hint = ('it is a file: give the folder holding it' if data.is_file() else 'that folder does not exist' if not data.is_dir()
            else next((f'it has one in {c.parent}: try --data {c.parent}' for c in sorted(data.glob('*/styles.csv'))), ''))
    return (f"--data {data} has no styles.csv{' (' + hint + ')' if hint else ''}: it must be the Kaggle folder holding "
            f"styles.csv and images/ (e.g. fashion-product-images-small/); omit --data for the built-in demo data.")


@dataclass
class TrainConfig:
    "Train and evaluate both stages of the Fashion Product Images protocol; writes a run folder."
    data: Annotated[Path, "Kaggle folder holding styles.csv and images/ (default: the built-in demo data)"] = None
    out: Annotated[Path, "parent folder of the run folders"] = Path('runs')
    name: Annotated[str, "run folder name (default: date and time)"] = None
    arch: Annotated[str, "torchvision ResNet (resnet18 ... resnet152) or a timm model name, e.g. tf_efficientnet_lite0 "
                         "(default: resnet50 with --data; on the demo data tf_efficientnet_lite0 when its ImageNet weights are installed, else "
                         "resnet18)"] = None
    pretrained: Annotated[str, "ImageNet weights: auto = use if installed, cached or downloadable, else warn and train "
                               "from scratch; yes = required; no = scratch"] = 'auto'
    weights: Annotated[Path, "a torchvision or timm ImageNet state_dict file for --arch to start from (instead of the "
                             "packages and caches)"] = None
    size: Annotated[str, "model input HEIGHTxWIDTH, or one number for a square (default: 128x96 with --data, the "
                         "small data set's 80x60 images upsampled, chosen on its holdout; the demo's own 80x60 without)"] = None
    bs: Annotated[int, "batch size (chosen on the real data's holdout: BENCHMARKS.md)"] = 32
    epochs: Annotated[int, "stage-one epochs with the whole network trained"] = 4
    epochs2: Annotated[int, "stage-two epochs (0 skips stage two)"] = 10
    freeze_epochs: Annotated[int, "head-only epochs before each model (default: 0 for the two stages, 1 for the "
                                  "all-classes model)"] = None
    lr: Annotated[str, "stage-one learning rate, or 'auto' for fastai lr_find's valley suggestion"] = '2e-3'
    lr2: Annotated[str, "stage-two learning rate, or 'auto'"] = '2e-3'
    epochs_all: Annotated[int, "epochs of the all-classes model (one answer among every article type, body from the "
                                "last stage), after the two stages; 0 skips it"] = 1
    lr_all: Annotated[str, "the all-classes model's learning rate, or 'auto'"] = '2e-3'
    all_init: Annotated[str, "the all-classes model's head: imprint (the last stage's head, its last layer set from "
                             "each class's mean features) or new (fastai's fresh head)"] = 'imprint'
    topk: Annotated[int, "number of most frequent classes in stage one"] = 20
    rank_on: Annotated[str, "rank classes over 'all' rows of styles.csv (the protocol) or 'train' rows"] = 'all'
    holdout: Annotated[float, "fraction of even-year images held out for validation; 0 validates on the test "
                              "split"] = 0.
    stage2_init: Annotated[str, "stage-two body: stage1 (the protocol), imagenet or scratch"] = 'stage1'
    stage2_head: Annotated[str, "stage-two head: new (fastai's fresh head, the protocol) or imprint (stage one's head, "
                                "its last layer set from each rare class's mean features; needs --stage2-init stage1)"] = 'new'
    precision: Annotated[str, "fp32, bf16 (CUDA AMP, or CPU autocast), fp16 (CUDA only); auto: bf16 on recent GPUs, "
                              "else fp32"] = 'auto'
    channels_last: Annotated[str, "train in the channels_last memory layout: yes, no, or auto (with bf16/fp16, and for "
                                  "timm models on a CPU, where it trains EfficientNet-Lite faster: BENCHMARKS.md)"] = 'auto'
    seed: Annotated[int, "random seed (weights init, shuffling, holdout)"] = 42
    workers: Annotated[int, "DataLoader worker processes (default: 0 on a CPU with <= 4 cores, else fastai's)"] = None
    demo_scale: Annotated[float, "size of the generated demo data set, 1.0 = about 2,600 images (only without "
                                 "--data)"] = 0.5
    label_smoothing: Annotated[float, "> 0: label-smoothing cross-entropy with this epsilon (e.g. 0.1), both "
                                      "stages"] = 0.
    tta: Annotated[str, "test-time augmentation in the final evaluation: flip (each image averaged with its mirror "
                        "image: one more pass), N (fastai's tta: N passes with the training augmentation, article type "
                        "alone), or 0 (none)"] = '0'
    attributes: Annotated[str, "other styles.csv columns to predict, one head each beside articleType, comma-separated: "
                               "gender, masterCategory, subCategory, baseColour, season, usage (default: none)"] = ''
    attribute_weights: Annotated[str, "loss weight of each head, comma-separated: articleType first, then each of "
                                      "--attributes (default: 2 for articleType, 0.5 for each other)"] = None

    def __post_init__(self):
        "Normalise every value to its one type and check it, so that a bad option fails before anything is read."
        from .weights import check_arch, default_arch  # the architectures this installation can build
        if self.data is not None: self.data = Path(self.data).expanduser()
        self.out = Path(self.out)
        if self.weights is not None: self.weights = Path(self.weights)
        _choice('--pretrained', self.pretrained, PRETRAINED)
        self.arch = self.arch or default_arch(self.data is not None, self.pretrained)
        check_arch(self.arch)
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
            raise OptionError(f"--holdout must be 0 (no holdout: validate on the test split) or a fraction in (0, 1) of "
                              f"the even-year images, e.g. 0.1; got {self.holdout}.")
        if not 0 <= self.label_smoothing < 1:
            raise OptionError(f"--label-smoothing must be in [0, 1) (0: plain cross-entropy; 0.1 is usual), "
                              f"got {self.label_smoothing}.")
        self.tta = parse_tta(self.tta)
        self.attributes = parse_attributes(self.attributes)
        self.attribute_weights = parse_attribute_weights(self.attribute_weights, self.attributes)
        if self.attributes and self.tta and self.tta != FLIP:
            raise OptionError(f"--tta {self.tta} (fastai's tta) averages one output, the article type's: with --attributes "
                              f"use --tta flip or leave --tta out.")
        _choice('--stage2-init', self.stage2_init, STAGE2_INITS)
        _choice('--rank-on', self.rank_on, RANK_ON)
        _choice('--all-init', self.all_init, HEAD_INITS)
        _choice('--stage2-head', self.stage2_head, HEAD_INITS)
        if self.stage2_head == 'imprint' and self.stage2_init != 'stage1':
            raise OptionError(f"--stage2-head imprint starts from stage one's head, so it needs --stage2-init stage1 "
                              f"(got {self.stage2_init}): use --stage2-head new.")
        self.precision = resolve_precision(self.precision)
        self.channels_last = resolve_channels_last(self.channels_last, self.precision, self.arch)
        self.size, self.lr, self.lr2 = parse_size(default_size(self.data) if self.size is None else self.size), \
            parse_lr(self.lr), parse_lr(self.lr2, '--lr2')
        self.lr_all = parse_lr(self.lr_all, '--lr-all')
        if self.weights is not None and not self.weights.is_file():
            raise OptionError(f"--weights {self.weights} is not a file: give an ImageNet state_dict (.pth) for "
                              f"--arch {self.arch}, or leave --weights out to use the cache.")
        if self.data is not None and (problem := _data_problem(self.data)): raise DataError(problem)
        if self.data is not None: self.data = self.data.resolve()  # so that --resume works from any folder

    def head_epochs(self, stage: str) -> int:
        """Head-only epochs before a model: none for the two stages (training the whole network from the first epoch beat
        fine_tune's head epoch on the real data's holdout by 11 points in both: BENCHMARKS.md); one for the all-classes
        model, whose imprinted head starts from the last stage's.  `--freeze-epochs` sets all three."""
        if self.freeze_epochs is not None: return self.freeze_epochs
        return int(stage == 'all')

    def learner_options(self) -> dict:
        "The options every learner of the run is built with (`stages.build_learner`'s), but the data's attribute vocabs."
        return dict(precision=self.precision, label_smoothing=self.label_smoothing,
                    attribute_weights=self.attribute_weights, channels_last=self.channels_last)

    def to_dict(self) -> dict:
        "JSON-ready: paths as strings, the size as [height, width]."
        return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> 'TrainConfig':
        "The options among `d`'s keys (a run's config.json holds more: versions, weights, timings)."
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def of_run(cls, run_dir: Path) -> 'TrainConfig':
        "The options a run folder was started with, so that `--resume` continues the same run."
        p = Path(run_dir) / 'config.json'
        if not p.is_file():
            raise OptionError(f"--resume {run_dir}: no config.json there; pass the folder of a run started by this program.")
        try: return cls.from_dict(json.loads(p.read_text()))
        except (ValueError, TypeError) as e:
            raise OptionError(f"--resume {run_dir}: {p} is not a run configuration written by this program ({e}).") from e

    def replace(self, **changes) -> 'TrainConfig':
        "A copy with some options changed, checked again."
        return replace(self, **changes)
