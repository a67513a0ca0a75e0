"""Which model of a run answers, and in which form: a run folder, a weights-only `<model>.json` (+ `.pth`), an exported
`<model>.pkl` or a shipped `<model>.onnx`, each checked to be what its name says before anything is loaded, and the
image files under the paths a user gives.

A run folder holds each model of the run (core/models.py's table) in two forms (written by `training.artifacts`).  The
weights-only form is preferred whenever it exists, because unpickling a `.pkl` runs code from the file; the `.pkl` is
used only with `trust_pickle` or when it is all there is (with a warning).  A file that is not what its name says
becomes a `ModelError` naming it and what to use."""
from __future__ import annotations

import json, warnings
from pathlib import Path

from fashion_fastai import __version__
from fashion_fastai.core.errors import DataError, ModelError, OptionError
from fashion_fastai.answering.parts import FILE as JOINED_FILE
from fashion_fastai.core.models import ALL, ANSWER_ORDER, CHOICES, FIRST, JOINED, NAMES, spec
from fashion_fastai.data.images import image_problem

IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff'}


ENGINES = ('torch', 'onnx')  # PyTorch (either form), or ONNX Runtime on the run's exported graph (shipped/)


JOINED_FORMS = {'joined': 'torch', 'joined-onnx': 'onnx'}  # the joined answer's form: its members' engine


WEIGHTS_FORMAT = 'fashion_fastai.weights/1'  # what `export_stage` writes in the weights-only JSON, and all this reads


META_KEYS = ('arch', 'vocab', 'size', 'mean', 'std', 'weights')  # what rebuilds the model and its preprocessing


MODEL_HELP = "a run folder, a <model>.json (weights-only) or a <model>.pkl (exported learner)"


def exported(run_dir: Path) -> list:
    "The models of the run folder with at least one form (`.json` or `.pkl`), in the run's order."
    return [n for n in NAMES if any((Path(run_dir) / f'{n}.{ext}').is_file() for ext in ('json', 'pkl'))]


def default_model(run_dir: Path) -> str | None:
    """The run's answer among every article type, which is what someone holding a photo asks: the stages joined by
    the part gate (`joined.json`) where the holdout preferred it, else the all-classes model.  A run with neither (from
    before them, or with the all-classes model's epochs at 0) answers with stage one, and says so; None when the folder
    has no model."""
    there = exported(run_dir) + ([JOINED] if (Path(run_dir) / JOINED_FILE).is_file() else [])
    name = next((n for n in ANSWER_ORDER if n in there), None)
    if name == FIRST:
        best = spec(ALL)
        others = [n for n in NAMES if n not in (name, best.name)]
        warnings.warn(f"{run_dir} has no joined answer and no all-classes model ({best.name}.json; a run from an older "
                      f"version, or trained "
                      f"with --{best.epochs_option.replace('_', '-')} 0): answering among {name}'s classes only; "
                      f"--stage {' or '.join(others)} gives the others.")
    return name


def missing_model(run_dir: Path, name: str | None) -> ModelError:
    "What a run folder without the model asked for holds, and what to do about it."
    there = [f'{n}.{ext}' for n in exported(run_dir) for ext in ('json', 'pkl') if (run_dir / f'{n}.{ext}').is_file()]
    name = name or FIRST
    if there:
        m = spec(name)
        skipped = f" (or was it trained with --{m.epochs_option.replace('_', '-')} 0?)" if m.optional else ''
        return ModelError(f"Run folder {run_dir} has no {name}.json or {name}.pkl: it holds {', '.join(there)}: choose "
                          f"another --stage{skipped}")
    if (run_dir / 'config.json').is_file():
        return ModelError(f"Run folder {run_dir} holds no model ({name}.json or {name}.pkl): is the run still "
                          f"training, or did it stop before exporting?")
    return ModelError(f"{run_dir} holds no model and no config.json: MODEL, the first argument, is {MODEL_HELP}; the "
                      f"images come after it (a run folder still training, or stopped before exporting, has no model "
                      f"yet).")


def find_model(model: Path, stage: str = None, trust_pickle: bool = False) -> tuple[Path, str]:
    """Which file to load and in which form ('weights' or 'pickle'), preferring the weights-only form.  `stage` picks
    one model of a run folder (None: `default_model`); a file is its own model."""
    model = Path(model)
    if stage is not None and stage not in CHOICES:
        raise OptionError(f"--stage must be one of {', '.join(CHOICES)}, got {stage!r}.")
    if model.is_dir():
        name = stage or default_model(model)
        if name == JOINED:
            if not (model / JOINED_FILE).is_file():
                raise ModelError(f"Run folder {model} has no joined answer ({JOINED_FILE}): its holdout preferred the "
                                 f"all-classes model alone, or it was trained before there was one; leave --stage out, "
                                 f"or choose one of {', '.join(exported(model))}.")
            return model / JOINED_FILE, JOINED
        if name not in exported(model): raise missing_model(model, name)
        forms = [model / f'{name}.{ext}' for ext in (('pkl', 'json') if trust_pickle else ('json', 'pkl'))]
        model = next(f for f in forms if f.is_file())
    return file_form(model, trust_pickle)


def file_form(model: Path, trust_pickle: bool = False) -> tuple[Path, str]:
    """`find_model` for a file: a `.pth` stands for its `.json`, a `.pkl` gives way to its weights-only twin
    unless trusted."""
    # the state_dict of the weights-only form: its .json says how to use it
    if model.suffix == '.pth' and model.is_file():
        if not model.with_suffix('.json').is_file():
            raise ModelError(f"{model} is a bare state_dict: pass the {model.with_suffix('.json').name} written beside "
                             f"it (arch, vocab, size), which is missing here.")
        model = model.with_suffix('.json')
    if model.suffix == '.pkl':
        twin = model.with_suffix('.json')
        if not trust_pickle and twin.is_file(): return twin, 'weights'
        if not model.exists(): raise ModelError(f"Model file {model} not found: pass {MODEL_HELP}.")
        if not trust_pickle:
            warnings.warn(f"{model}: no weights-only form ({twin.name}) beside it, so loading the pickle, which runs "
                          f"code from the file. Only do this with files you trust "
                          f"(pass --trust-pickle to silence this).")
        return model, 'pickle'
    if model.name == JOINED_FILE and model.is_file(): return model, JOINED
    if model.suffix == '.json' and model.is_file(): return model, 'weights'
    if model.suffix.lower() in IMAGE_EXTS and model.is_file():
        raise ModelError(f"{model} is an image, not a model: MODEL, the first argument, is {MODEL_HELP}; the images "
                         f"come after it.")
    if model.exists(): raise ModelError(f"{model} is not a model file: pass {MODEL_HELP}.")
    raise ModelError(f"Model {model} not found: pass {MODEL_HELP}.")


def weights_error(json_path: Path, what: str) -> ModelError:
    "A weights-only model that cannot be loaded: what was wrong, and the other way to get the same model."
    pkl = json_path.with_suffix('.pkl')
    return ModelError(f"{what}. " + (f"The exported learner {pkl} may still load with --trust-pickle (it runs code "
                                     f"from the file)." if pkl.is_file() else
                                     "Copy the .json and its .pth again from the run folder, or retrain."))


def read_meta(json_path: Path) -> dict:
    "The weights-only JSON, checked to be one of ours and whole before anything is built from it."
    try: meta = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise weights_error(json_path,
                            f"{json_path} is not a readable JSON file ({e}): it is damaged or not a model") from e
    fmt = meta.get('format') if isinstance(meta, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(WEIGHTS_FORMAT.split('/')[0] + '/'):
        there = exported(json_path.parent)
        raise ModelError(f"{json_path} is JSON but not a weights-only model of this package (no \"format\": "
                         f"\"{WEIGHTS_FORMAT}\" in it): " + (
                             f"pass the run folder {json_path.parent} itself, or one of its models: "
                             f"{', '.join(f'{n}.json' for n in there)}." if there else
                             f"pass {MODEL_HELP}, e.g. {', '.join(f'{n}.json' for n in NAMES)} from a run folder."))
    if fmt != WEIGHTS_FORMAT:
        raise ModelError(f"{json_path} is in the format {fmt!r}, which fashion_fastai {__version__} does not read (it "
                         f"reads {WEIGHTS_FORMAT!r}): upgrade fashion_fastai, or use the run's .pkl with "
                         f"--trust-pickle.")
    missing = [k for k in META_KEYS if k not in meta]
    if missing: raise weights_error(json_path, f"{json_path} lacks {', '.join(missing)}: the file is damaged")
    return meta


def onnx_form(path: Path, form: str) -> tuple[Path, str]:
    """`find_model`'s choice as its shipped graph: the `<model>.onnx` that `python -m fashion_fastai.export` wrote
    beside the weights-only JSON (which holds its vocabs and size), or an error saying how to make it."""
    json_path = Path(path).with_suffix('.json')
    if not json_path.is_file():
        raise ModelError(f"--engine onnx reads the weights-only {json_path.name} and the .onnx beside it; {path} has "
                         f"no {json_path.name} beside it: pass a run folder or a <model>.json.")
    meta = read_meta(json_path)
    shipped = meta.get('onnx')
    if not shipped or not (json_path.parent / shipped['file']).is_file():
        raise ModelError(f"{json_path} has no ONNX graph beside it yet: run `python -m fashion_fastai.export "
                         f"{json_path.parent}` (it needs pip install 'fashion_fastai[onnx]'), or use --engine torch.")
    return json_path, 'onnx'


def choose_engine(found: tuple[Path, str], engine: str = 'torch') -> tuple[Path, str]:
    "`find_model`'s (file, form) for `engine`: as found for PyTorch, its ONNX graph for ONNX Runtime (`onnx_form`)."
    if engine not in ENGINES: raise OptionError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    if found[1] in JOINED_FORMS:  # its members are found and checked when it loads
        return found[0], next(f for f, e in JOINED_FORMS.items() if e == engine)
    return onnx_form(*found) if engine == 'onnx' else found


def models_help() -> str:
    "The run's models as `--stage`'s help lists them, names and titles from models.py's table."
    return '; '.join([f"{n} = {spec(n).describe('N')}" for n in NAMES]
                     + [f"{JOINED} = the stages joined by a part gate (written when the holdout preferred it)"])


def expand_paths(paths) -> list[Path]:
    """Files as given, folders walked recursively for image files, in a stable order.  A folder without any image is a
    `DataError` naming it: the user meant another folder, and silence would look like a model that answers nothing."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir(): out.append(p); continue
        found = sorted(f for f in p.rglob('*') if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        if not found:
            n = sum(f.is_file() for f in p.rglob('*'))
            raise DataError(f"{p} holds no image files ({n} other file{'s' * (n != 1)}; images end in "
                            f"{', '.join(sorted(IMAGE_EXTS))}): pass a folder of product photos, or the files.")
        out += found
    return out


def readable(paths) -> tuple[list, list]:
    "The image files under `paths` that decode, and the others as {path, error}: checked before any model runs."
    files, skipped = [], []
    for p in expand_paths(paths):
        why = 'file not found' if not p.exists() else image_problem(p)
        (skipped.append({'path': str(p), 'error': why}) if why else files.append(p))
    return files, skipped
