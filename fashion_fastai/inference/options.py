"""The options of every command that loads a model (`predict`, `app`, `tag`, `index`, `audit`), declared once: a
fastcore `Annotated` type with its one help line per option, its default in `DEFAULT`, and one check of them all
(`check_model_options`) that each command runs before any model is loaded or image read, so that the same value is
refused by every command with the same words.  A command takes the options that make sense for it and no others."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated

from fashion_fastai.answering.answering import REVIEW_PROB
from fashion_fastai.core.errors import OptionError
from fashion_fastai.core.models import ANSWER_ORDER, CHOICES
from fashion_fastai.inference.locate import ENGINES, MODEL_HELP, models_help
from fashion_fastai.inference.predictors import DEVICES, resolve_device
from fashion_fastai.shipped.runtime import import_onnxruntime

Model = Annotated[str, MODEL_HELP]
WeightsModel = Annotated[str, "a run folder or a <model>.json (weights-only): the PyTorch network itself"]
Stage = Annotated[str, f"which model of a run folder: {models_help()} (default: the first of "
                       f"{', '.join(ANSWER_ORDER)} that the run has)"]
Engine = Annotated[str, f"what runs the model: {' or '.join(ENGINES)} (ONNX Runtime on the graph `python -m "
                        f"fashion_fastai.export RUN` wrote; no PyTorch needed to run it)"]
Device = Annotated[str, f"where the model runs: {', '.join(DEVICES)} (auto: CUDA when torch sees a GPU, else the CPU)"]
Processes = Annotated[int, "worker processes sharing the images, one torch thread each (many files, small models); "
                           "they use the CPU unless --device cuda"]
TrustPickle = Annotated[bool, "load the .pkl even when a weights-only form exists (unpickling runs code)"]
MinProb = Annotated[float, "an answer whose article type's calibrated probability is lower needs review: predict marks "
                           "it uncertain, tag sets needs_review (default: the review rule the run fitted on its "
                           f"holdout, else {REVIEW_PROB})"]
Batch = Annotated[int, "photos per forward pass"]
ClosedSet = Annotated[bool, "the trained classes alone, without the zero-shot ones (as the published runs scored)"]


@dataclass(frozen=True)
class ModelOptions:
    "The model options' values; the defaults are what a command's signature gives (`DEFAULT.device`, ...)."
    stage: str | None = None
    engine: str = 'torch'
    device: str = 'auto'
    processes: int = 1
    trust_pickle: bool = False
    min_prob: float = None  # None: the run's review rule (`Predictor.review_prob`)
    bs: int = 64
    closed_set: bool = False


DEFAULT = ModelOptions()


def check_model_options(paths=None, **options) -> ModelOptions:
    """Every model option that cannot work on this machine, refused with one line before anything is loaded or read;
    `paths` (the images after MODEL, where the command takes them) must name at least one.  Options a command lacks keep
    their defaults, which pass."""
    unknown = set(options) - {f.name for f in fields(ModelOptions)}
    if unknown: raise TypeError(f"not a model option: {', '.join(sorted(unknown))}")
    o = ModelOptions(**options)
    if paths is not None and not paths:
        raise OptionError(f"give at least one image file or folder after MODEL ({MODEL_HELP}).")
    if o.stage is not None and o.stage not in CHOICES:
        raise OptionError(f"--stage must be one of {', '.join(CHOICES)}, got {o.stage!r}.")
    if o.engine not in ENGINES: raise OptionError(f"--engine must be one of {', '.join(ENGINES)}, got {o.engine!r}.")
    if o.engine == 'onnx':
        try: import_onnxruntime()
        except ImportError as e: raise OptionError(str(e)) from None
    resolve_device(o.device)  # an unknown device, or cuda where torch sees no GPU
    if o.processes < 1: raise OptionError(f"--processes must be at least 1, got {o.processes}.")
    if o.min_prob is not None and not 0 < o.min_prob <= 1:
        raise OptionError(f"--min-prob must be a probability in (0, 1], e.g. 0.5; got {o.min_prob}.")
    if o.bs < 1: raise OptionError(f"--bs must be at least 1, got {o.bs}.")
    return o
