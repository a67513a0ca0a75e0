"""Inference in one place: which model of a run answers, in which form, on which device, in how many processes.

A run folder holds each model of the run (models.py's table) in two forms (written by `artifacts.export_stage`).  The
weights-only form (`<name>.json` + `<name>.pth`) is preferred whenever it exists, because unpickling a `.pkl` runs code
from the file; the `.pkl` is used only with `trust_pickle` or when it is all there is (with a warning).  A file that is
not what its name says becomes a `ModelError` naming it and what to use when it is loaded, before any image is read.
Nothing here imports training code (stages, run, checkpoint...): loading the weights-only form needs the network and
fastai's data pipeline, not the training loop.

The device is chosen in one place, `resolve_device`: CUDA when torch sees a GPU (`auto`), unless told otherwise.

Worker processes (`ProcessPredictor`, `predict --processes N`): on a small CPU, torch's threads scale poorly inside one
forward of a small model, while separate processes do not share anything (two one-thread processes outran one
two-thread process on 2 cores: `bench/threads_vs_processes.py`, BENCHMARKS.md).  Each process also decodes its own
images, so one process's decoding overlaps the other's forward instead of adding to it.  Processes are started with
`spawn` (a child forked from a process that has already run OpenMP code can hang) and each loads the model once, so this
pays off for many files, not for a handful: starting them takes seconds.  As with any `spawn` pool, a script that uses
it must keep its top-level work under `if __name__ == '__main__':`.  The pool exists to share a CPU's cores, so its
workers predict on the CPU unless CUDA is asked for by name (`cuda`: each worker then holds its own copy of the model on
the GPU).
"""
from __future__ import annotations

import concurrent.futures as cf, json, multiprocessing as mp, warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from fastai.vision.all import load_learner

from . import __version__
from .answering import REVIEW_PROB, Answering
from .attributes import add_attribute_heads, article_head, article_vocab, attribute_heads, head_vocabs
from .data import LABEL
from .errors import DataError, ModelError, OptionError
from .images import image_problem
from .pixels import decoded_ahead, image_batch
from .models import ANSWER_ORDER, FIRST, NAMES, spec
from .weights import create_model

IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff'}
DEVICES = ('auto', 'cpu', 'cuda')
ENGINES = ('torch', 'onnx')  # PyTorch (either form), or ONNX Runtime on the run's exported graph (export.py)
WEIGHTS_FORMAT = 'fashion_fastai.weights/1'  # what `export_stage` writes in the weights-only JSON, and all this reads
META_KEYS = ('arch', 'vocab', 'size', 'mean', 'std', 'weights')  # what rebuilds the model and its preprocessing
MODEL_HELP = "a run folder, a <model>.json (weights-only) or a <model>.pkl (exported learner)"


def resolve_device(device='auto') -> torch.device:
    "The one place the device is chosen: `auto` is CUDA when torch sees a GPU, else the CPU; `cuda` without one is refused."
    if isinstance(device, torch.device): return device
    if device not in DEVICES: raise OptionError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}.")
    if device == 'cuda' and not torch.cuda.is_available():
        raise OptionError("--device cuda, but torch sees no CUDA GPU here (no GPU, no driver, or a CPU-only torch "
                          "build): use --device auto or --device cpu.")
    return torch.device('cuda' if device == 'cuda' or (device == 'auto' and torch.cuda.is_available()) else 'cpu')


def worker_device(device='auto') -> torch.device:
    "Worker processes share a CPU's cores: the CPU unless CUDA was asked for by name (see the module's docstring)."
    return resolve_device('cpu' if device == 'auto' else device)


def exported(run_dir: Path) -> list:
    "The models of the run folder with at least one form (`.json` or `.pkl`), in the run's order."
    return [n for n in NAMES if any((Path(run_dir) / f'{n}.{ext}').is_file() for ext in ('json', 'pkl'))]


def default_model(run_dir: Path) -> str | None:
    """The all-classes model when the run folder has one: one answer among every article type, which is what someone
    holding a photo asks.  A run from before it (or with its epochs at 0) answers with stage one, and says so; None when
    the folder has neither."""
    there = exported(run_dir)
    name = next((n for n in ANSWER_ORDER if n in there), None)
    if name is not None and name != ANSWER_ORDER[0]:
        best = spec(ANSWER_ORDER[0])
        others = [n for n in NAMES if n not in (name, best.name)]
        warnings.warn(f"{run_dir} has no all-classes model ({best.name}.json; a run from an older version, or trained "
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
        return ModelError(f"Run folder {run_dir} holds no model ({name}.json or {name}.pkl): is the run still training, "
                          f"or did it stop before exporting?")
    return ModelError(f"{run_dir} holds no model and no config.json: MODEL, the first argument, is {MODEL_HELP}; the "
                      f"images come after it (a run folder still training, or stopped before exporting, has no model "
                      f"yet).")


def find_model(model: Path, stage: str = None, trust_pickle: bool = False) -> tuple[Path, str]:
    """Which file to load and in which form ('weights' or 'pickle'), preferring the weights-only form.  `stage` picks
    one model of a run folder (None: `default_model`); a file is its own model."""
    model = Path(model)
    if stage is not None and stage not in NAMES:
        raise OptionError(f"--stage must be one of {', '.join(NAMES)}, got {stage!r}.")
    if model.is_dir():
        name = stage or default_model(model)
        if name not in exported(model): raise missing_model(model, name)
        forms = [model / f'{name}.{ext}' for ext in (('pkl', 'json') if trust_pickle else ('json', 'pkl'))]
        model = next(f for f in forms if f.is_file())
    return file_form(model, trust_pickle)


def file_form(model: Path, trust_pickle: bool = False) -> tuple[Path, str]:
    "`find_model` for a file: a `.pth` stands for its `.json`, a `.pkl` gives way to its weights-only twin unless trusted."
    if model.suffix == '.pth' and model.is_file():  # the state_dict of the weights-only form: its .json says how to use it
        if not model.with_suffix('.json').is_file():
            raise ModelError(f"{model} is a bare state_dict: pass the {model.with_suffix('.json').name} written beside it "
                             f"(arch, vocab, size), which is missing here.")
        model = model.with_suffix('.json')
    if model.suffix == '.pkl':
        twin = model.with_suffix('.json')
        if not trust_pickle and twin.is_file(): return twin, 'weights'
        if not model.exists(): raise ModelError(f"Model file {model} not found: pass {MODEL_HELP}.")
        if not trust_pickle:
            warnings.warn(f"{model}: no weights-only form ({twin.name}) beside it, so loading the pickle, which runs code "
                          f"from the file. Only do this with files you trust (pass --trust-pickle to silence this).")
        return model, 'pickle'
    if model.suffix == '.json' and model.is_file(): return model, 'weights'
    if model.suffix.lower() in IMAGE_EXTS and model.is_file():
        raise ModelError(f"{model} is an image, not a model: MODEL, the first argument, is {MODEL_HELP}; the images "
                         f"come after it.")
    if model.exists(): raise ModelError(f"{model} is not a model file: pass {MODEL_HELP}.")
    raise ModelError(f"Model {model} not found: pass {MODEL_HELP}.")


class Predictor:
    """What `predict` and the web page use: `vocab` (the article types), `vocabs` (every head's, in output order, the
    article type last) and `head_probs(paths)`, one probability tensor per head on the CPU, the trained heads' softmax;
    `answer_probs(paths)`, the same as the model answers (answering.py: calibrated, and joined with its zero-shot classes
    unless `closed_set`), with which images the zero-shot path answered.  A context manager, so that a caller need not
    know whether there are processes to stop."""
    vocabs: dict
    answering: Answering = Answering(why_not='no answering record was loaded with this model')
    scorer = None          # the frozen ImageNet network's probabilities (imagenet_classifier.Scorer or shipped.OnnxScorer)
    closed_set = False     # True: the trained heads alone (calibrated), as the published runs of the protocol scored

    @property
    def vocab(self) -> list: return self.vocabs[LABEL]

    @property
    def zero_shot(self) -> bool:
        "Whether this predictor answers with zero-shot classes."
        return self.answering.has_zero_shot and not self.closed_set and self.scorer is not None

    def probs(self, paths, bs=64, num_workers: int = None) -> torch.Tensor:
        return self.head_probs(paths, bs, num_workers)[LABEL]

    def answered(self, heads: dict, files) -> tuple[dict, list | None]:
        """`heads` (this predictor's `head_probs` of `files`) as the model answers: (every head's probabilities, per
        file whether a zero-shot class answered it, or None without the zero-shot path)."""
        imagenet = self.scorer.probs(files) if self.zero_shot and len(files) else None
        probs, routed = self.answering.apply({h: p.numpy() for h, p in heads.items()}, imagenet, not self.zero_shot)
        return ({h: torch.from_numpy(p).float() for h, p in probs.items()},
                None if routed is None else [bool(r) for r in routed])

    def answer_probs(self, paths, bs=64, num_workers: int = None) -> tuple[dict, list | None]:
        paths = list(paths)
        return self.answered(self.head_probs(paths, bs, num_workers), paths)

    def close(self): pass
    def __enter__(self): return self
    def __exit__(self, *exc): self.close()


def weights_error(json_path: Path, what: str) -> ModelError:
    "A weights-only model that cannot be loaded: what was wrong, and the other way to get the same model."
    pkl = json_path.with_suffix('.pkl')
    return ModelError(f"{what}. " + (f"The exported learner {pkl} may still load with --trust-pickle (it runs code from "
                                     f"the file)." if pkl.is_file() else
                                     "Copy the .json and its .pth again from the run folder, or retrain."))


def read_meta(json_path: Path) -> dict:
    "The weights-only JSON, checked to be one of ours and whole before anything is built from it."
    try: meta = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise weights_error(json_path, f"{json_path} is not a readable JSON file ({e}): it is damaged or not a model") from e
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
                         f"reads {WEIGHTS_FORMAT!r}): upgrade fashion_fastai, or use the run's .pkl with --trust-pickle.")
    missing = [k for k in META_KEYS if k not in meta]
    if missing: raise weights_error(json_path, f"{json_path} lacks {', '.join(missing)}: the file is damaged")
    return meta


def read_state(json_path: Path, weights: Path) -> dict:
    "The state_dict the JSON names, read without unpickling code; a missing or cut-short file is named."
    if not weights.is_file():
        raise weights_error(json_path, f"{json_path} names the state_dict {weights}, which is missing")
    try: return torch.load(weights, map_location='cpu', weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for a damaged file
        first = str(e).strip().splitlines()[0].split('. ')[0][:200] if str(e).strip() else ''
        raise weights_error(json_path, f"Could not read the state_dict {weights} that {json_path} names "
                                       f"({type(e).__name__}: {first}): it is damaged or cut short") from e


class WeightsOnlyModel(Predictor):
    "A model rebuilt from `<name>.json` + `<name>.pth`, with the same resize and normalisation as in training."
    def __init__(self, json_path: Path, device='auto'):
        json_path = Path(json_path)
        self.meta = read_meta(json_path)
        self.size = tuple(self.meta['size'])
        self.model = add_attribute_heads(create_model(self.meta['arch'], len(self.meta['vocab'])),
                                         self.meta.get('attributes', {}))
        self.vocabs = head_vocabs(self.model, self.meta['vocab'])
        weights = json_path.parent / self.meta['weights']
        state = read_state(json_path, weights)
        self._check_heads(json_path, weights, state)
        self.model.load_state_dict(state)
        self.device = resolve_device(device)
        self.channels_last = bool(self.meta.get('channels_last'))  # the layout it trained in (export_stage records it)
        self.model.eval().to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        stat = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self.mean, self.std = stat(self.meta['mean']), stat(self.meta['std'])

    def batches(self, paths, bs=64, num_workers: int = None):
        """The model's input batches: uint8 pixels decoded and resized exactly as in training (pixels.py, the same bytes
        as fastai's pipeline), then fastai's own `IntToFloatTensor` and `Normalize` arithmetic, on the model's device and
        in its memory layout.  Decoding needs no fastai `DataLoader` (whose per-item Python costs more than the decoding
        of a small photo); with `num_workers` other than 0 the next batch is decoded in a thread while the model runs."""
        paths = list(paths)
        chunks = [paths[i:i + bs] for i in range(0, len(paths), bs)]
        decode = lambda chunk: torch.from_numpy(image_batch(chunk, self.size))
        for pixels in (decoded_ahead(decode, chunks) if num_workers != 0 and len(chunks) > 1 else map(decode, chunks)):
            x = pixels.to(self.device).float().div_(255)
            x = (x - self.mean) / self.std
            yield x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _check_heads(self, json_path: Path, weights: Path, state: dict) -> None:
        "Each head's outputs in the state_dict against the vocab the JSON gives it: files from two runs do not mix."
        others = lambda keys: sorted({k.split('.')[2] for k in keys if k.startswith('1.others.')})
        expected, got = others(self.model.state_dict()), others(state)
        if expected != got:
            raise ValueError(f"{json_path.name} lists other attributes {expected or 'none'} but {weights.name} has heads "
                             f"for {got or 'none'}: the two files come from different runs or models")
        names = {m: n for n, m in self.model.named_modules()}
        heads = attribute_heads(self.model)
        layers = {**({a: h[-1] for a, h in heads.others.items()} if heads is not None else {}),
                  LABEL: article_head(self.model)[-1]}
        for head, layer in layers.items():
            weight = state.get(f'{names[layer]}.weight')  # absent: another model altogether, which load_state_dict names
            n_out = None if weight is None else weight.shape[0]
            if n_out is not None and n_out != len(self.vocabs[head]):
                what = 'classes' if head == LABEL else f'{head} values'
                raise ValueError(f"{json_path.name} lists {len(self.vocabs[head])} {what} but {weights.name} has {n_out} "
                                 f"outputs for them: the two files come from different runs or models")

    def head_probs(self, paths, bs=64, num_workers: int = None) -> dict:
        outs = []
        with torch.inference_mode():
            for x in self.batches(paths, bs, num_workers):
                out = self.model(x)
                outs.append(tuple(o.cpu() for o in (out if isinstance(out, tuple) else (out,))))
        return {head: torch.cat([o[i] for o in outs]).softmax(1) if outs else torch.empty(0, len(vocab))
                for i, (head, vocab) in enumerate(self.vocabs.items())}


    def embed(self, paths, bs=64) -> tuple[torch.Tensor, dict]:
        """Each photo's product embedding, the input of the article type's last layer (the head's last hidden features:
        what the model separates article types with), L2-normalised, with every head's probabilities, in one pass."""
        feats, layer = [], article_head(self.model)[-1]
        hook = layer.register_forward_hook(lambda m, inp, out: feats.append(F.normalize(inp[0].float(), dim=1).cpu()))
        try: probs = self.head_probs(paths, bs)
        finally: hook.remove()
        return (torch.cat(feats) if feats else torch.empty(0, layer.in_features)), probs


class PickledLearner(Predictor):
    "An exported `.pkl` learner behind the same interface as `WeightsOnlyModel`."
    def __init__(self, pkl_path: Path, device='auto'):
        self.device = resolve_device(device)
        with warnings.catch_warnings():  # fastai's own pickle warning: `find_model` has warned, or --trust-pickle said so
            warnings.filterwarnings('ignore', message='load_learner` uses', category=UserWarning)
            self.learn = load_learner(pkl_path, cpu=self.device.type == 'cpu')
        self.learn.dls.to(self.device)  # fastai keeps the DataLoaders on the device they were exported from
        self.learn.model.to(self.device)
        self.vocabs = head_vocabs(self.learn.model, article_vocab(self.learn.dls))

    def head_probs(self, paths, bs=64, num_workers: int = None) -> dict:
        "`num_workers` None: the exported DataLoaders' own."
        kw = {} if num_workers is None else dict(num_workers=num_workers)
        dl = self.learn.dls.test_dl(list(paths), bs=bs, **kw)
        with self.learn.no_bar(): probs, _ = self.learn.get_preds(dl=dl)
        return {h: p.cpu() for h, p in zip(self.vocabs, probs if isinstance(probs, tuple) else (probs,))}


def onnx_form(path: Path, form: str) -> tuple[Path, str]:
    """`find_model`'s choice as its shipped graph: the `<model>.onnx` that `python -m fashion_fastai.export` wrote beside
    the weights-only JSON (which holds its vocabs and size), or an error saying how to make it."""
    json_path = Path(path).with_suffix('.json')
    if not json_path.is_file():
        raise ModelError(f"--engine onnx reads the weights-only {json_path.name} and the .onnx beside it; {path} has no "
                         f"{json_path.name} beside it: pass a run folder or a <model>.json.")
    meta = read_meta(json_path)
    shipped = meta.get('onnx')
    if not shipped or not (json_path.parent / shipped['file']).is_file():
        raise ModelError(f"{json_path} has no ONNX graph beside it yet: run `python -m fashion_fastai.export "
                         f"{json_path.parent}` (it needs pip install 'fashion_fastai[onnx]'), or use --engine torch.")
    return json_path, 'onnx'


class OnnxPredictor(Predictor):
    """A shipped model (`shipped.OnnxModel`, ONNX Runtime, the input pipeline in Pillow and numpy) behind the same
    interface, its answers as torch tensors.  On CUDA only when asked for by name or when this onnxruntime has the CUDA
    provider: the PyPI `onnxruntime` runs on the CPU."""
    def __init__(self, json_path: Path, device='auto', threads: int = None):
        from .shipped import OnnxModel, import_onnxruntime
        try: ort = import_onnxruntime()
        except ImportError as e: raise OptionError(str(e)) from None
        wants_cuda = resolve_device(device).type == 'cuda'
        cuda = wants_cuda and (device == 'cuda' or 'CUDAExecutionProvider' in ort.get_available_providers())
        try: self.model = OnnxModel(json_path, threads, cuda)
        except Exception as e:
            raise weights_error(json_path, f"ONNX Runtime could not load the graph {json_path.with_suffix('.onnx')} "
                                           f"({type(e).__name__}: {str(e)[:300]}): export it again") from e
        self.vocabs, self.device = self.model.vocabs, torch.device('cuda' if cuda else 'cpu')

    def head_probs(self, paths, bs=64, num_workers: int = None) -> dict:
        "`num_workers` is ignored: the graph's session has its own threads."
        return {h: torch.from_numpy(p) for h, p in self.model.head_probs(paths, bs).items()}


_worker = None  # the model of this worker process, loaded once by `_load_worker`


def _load_worker(path: str, form: str, device: str, closed_set: bool):
    global _worker
    torch.set_num_threads(1)
    with warnings.catch_warnings():  # the parent loaded this same file first, and warned there if it had to
        warnings.simplefilter('ignore')
        _worker = load_model_file(Path(path), form, device, threads=1, closed_set=closed_set)


def _worker_head_probs(paths: list, bs: int) -> dict:
    return _worker.head_probs(paths, bs, num_workers=0)  # each process decodes its own images: that is the point


def _worker_answer_probs(paths: list, bs: int) -> tuple:
    return _worker.answer_probs(paths, bs, num_workers=0)


class ProcessPredictor(Predictor):
    """`Predictor` with the predictions shared among `processes` worker processes of one torch thread each, in
    contiguous chunks (results in input order); see the module's docstring for when it pays.  Close it when done."""
    def __init__(self,
                 path: Path,      # a weights-only <model>.json or an exported <model>.pkl (see `find_model`)
                 form: str,       # 'weights' or 'pickle'
                 parent: Predictor,  # the model loaded in the parent, which validated the file: its vocabs and answering
                 processes: int = 2,
                 device='cpu'):   # each worker's (`worker_device`)
        if processes < 2: raise ValueError(f"processes must be at least 2 for a process pool, got {processes}")
        self.vocabs, self.processes, self.device = dict(parent.vocabs), processes, resolve_device(device)
        self.answering, self.scorer, self.closed_set = parent.answering, parent.scorer, parent.closed_set
        self.pool = cf.ProcessPoolExecutor(processes, mp_context=mp.get_context('spawn'), initializer=_load_worker,
                                           initargs=(str(path), form, str(self.device), parent.closed_set))

    def _map(self, fn, paths: list, bs: int) -> list:
        # several chunks per process, so that a slow process does not hold up the end; whole batches, so that each
        # chunk's batches are full
        per = max(bs, len(paths) // (4 * self.processes) // bs * bs)
        chunks = [paths[i:i + per] for i in range(0, len(paths), per)]
        return list(self.pool.map(fn, chunks, [bs] * len(chunks)))

    def head_probs(self, paths, bs: int = 64, num_workers: int = None) -> dict:
        "`num_workers` is ignored: each process decodes its own chunk."
        paths = [str(p) for p in paths]
        if not paths: return {h: torch.empty(0, len(v)) for h, v in self.vocabs.items()}
        parts = self._map(_worker_head_probs, paths, bs)
        return {h: torch.cat([p[h] for p in parts]) for h in self.vocabs}

    def answer_probs(self, paths, bs: int = 64, num_workers: int = None) -> tuple[dict, list | None]:
        "Each worker answers its chunk, the frozen ImageNet network's pass included."
        paths = [str(p) for p in paths]
        if not paths: return self.answered(self.head_probs(paths), paths)
        parts = self._map(_worker_answer_probs, paths, bs)
        routed = None if parts[0][1] is None else [r for _, rs in parts for r in rs]
        return {h: torch.cat([p[h] for p, _ in parts]) for h in self.vocabs}, routed

    def close(self): self.pool.shutdown()


def load_model_file(path: Path, form: str, device='auto', processes: int = 1, threads: int = None,
                    closed_set: bool = False) -> Predictor:
    """`find_model`'s choice loaded on `device` (`resolve_device`): 'weights' as a `WeightsOnlyModel`, 'pickle' as a
    `PickledLearner`, 'onnx' (`onnx_form`) as an `OnnxPredictor` with `threads` threads; with its answering (the
    temperatures and zero-shot path in its JSON, and the frozen ImageNet network that path needs, unless `closed_set`).
    With `processes` > 1, a `ProcessPredictor` whose workers each load it (on `worker_device`) after this process has
    checked, on the CPU, that it loads."""
    if processes > 1:
        workers = worker_device(device)
        return ProcessPredictor(path, form, load_model_file(path, form, 'cpu', closed_set=closed_set), processes, workers)
    return with_answering(load_trained(path, form, device, threads), path, form, threads, closed_set)


def with_answering(predictor: Predictor, path: Path, form: str, threads: int = None, closed_set: bool = False) -> Predictor:
    """The predictor with the answering its model's JSON records (a `.pkl` reads the JSON beside it) and, for the
    zero-shot path, the frozen ImageNet network it names, run by the same engine (and in the model's memory layout).  A
    model from before calibration, or a `.pkl` alone, answers with its softmax; `predict` says so."""
    json_path = Path(path).with_suffix('.json')
    meta = read_meta(json_path) if json_path.is_file() else {}
    if meta: predictor.answering = Answering.from_meta(meta)
    else: predictor.answering = Answering(why_not=f"no {json_path.name} beside {Path(path).name} to read its "
                                                  f"calibration and zero-shot path from")
    predictor.closed_set = closed_set
    a = predictor.answering
    if not a.has_zero_shot or closed_set: return predictor
    network = json_path.parent / a.network['file']
    if form == 'onnx':
        from .shipped import OnnxScorer
        graph = network.with_suffix('.onnx')
        if not graph.is_file():
            raise ModelError(f"{json_path.name}'s zero-shot path needs the ImageNet network's graph {graph}, which is "
                             f"missing: run `python -m fashion_fastai.export {json_path.parent}` again, or pass "
                             f"--closed-set to answer with the trained classes alone.")
        predictor.scorer = OnnxScorer(graph, a.network['size'], threads, predictor.device.type == 'cuda')
        return predictor
    if not network.is_file():
        raise ModelError(f"{json_path.name}'s zero-shot path needs the frozen ImageNet network {network}, which is "
                         f"missing: copy it from the run folder with the model, or pass --closed-set to answer with the "
                         f"trained classes alone.")
    from . import imagenet_classifier
    net = imagenet_classifier.load(a.network['arch'], network)
    predictor.scorer = imagenet_classifier.Scorer(net, a.network['size'], a.network['mean'], a.network['std'],
                                                  predictor.device, channels_last=bool(meta.get('channels_last')))
    return predictor


def load_trained(path: Path, form: str, device='auto', threads: int = None) -> Predictor:
    "The trained model alone, as `load_model_file` loads it."
    if form == 'onnx': return OnnxPredictor(path, device, threads)
    if form == 'weights':
        try: return WeightsOnlyModel(path, device)
        except (ModelError, OptionError): raise
        except Exception as e:
            raise weights_error(path, f"Could not load the weights-only model {path} and the state_dict it names "
                                      f"({type(e).__name__}: {str(e)[:300]}). Both files come from the same run "
                                      f"folder") from e
    try: return PickledLearner(path, device)
    except OptionError: raise
    except Exception as e:
        twin = path.with_suffix('.json')
        why = ("it names a module or class that this installation lacks" if isinstance(e, UnboundLocalError) else
               f"{type(e).__name__}: {str(e)[:300]}")  # fastai's load_learner swallows an ImportError, then fails on `res`
        raise ModelError(f"Could not load the exported learner {path} ({why}). A .pkl loads "
                         f"only if intact and with the fastai/torch versions that wrote it; use the weights-only form "
                         + (f"{twin} instead (it is right there: drop --trust-pickle)." if twin.is_file() else
                            f"{twin.name} + {path.with_suffix('.pth').name} from the same run instead, which loads with "
                            f"any version.")) from e


def load_model(model: Path, stage: str = None, trust_pickle: bool = False, processes: int = 1, device='auto',
               engine: str = 'torch', closed_set: bool = False) -> Predictor:
    """The model `find_model` chooses, loaded by `load_model_file` on `engine` (ENGINES); a file that cannot be loaded
    gives a `ModelError` naming it and what to use."""
    return load_model_file(*choose_engine(find_model(model, stage, trust_pickle), engine), device, processes,
                           closed_set=closed_set)


def choose_engine(found: tuple[Path, str], engine: str = 'torch') -> tuple[Path, str]:
    "`find_model`'s (file, form) for `engine`: as found for PyTorch, its ONNX graph for ONNX Runtime (`onnx_form`)."
    if engine not in ENGINES: raise OptionError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    return onnx_form(*found) if engine == 'onnx' else found


def models_help() -> str:
    "The run's models as `--stage`'s help lists them, names and titles from models.py's table."
    return '; '.join(f"{n} = {spec(n).describe('N')}" for n in NAMES)


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


def answers(predictor: Predictor, files: list, heads: dict, topk: int = 5, min_prob: float = REVIEW_PROB,
            routed: list = None) -> list:
    """Per file, its top-k article types (and, from a model with other attributes, each one's best value under
    `attributes`) from `heads` (`answer_probs` of `files`).  With `min_prob`, each says whether it is `uncertain` (its
    best article type below that probability); with `routed` (`answer_probs`'), whether a zero-shot class answered it
    (`zero_shot`).  Nothing is dropped or relabelled."""
    heads = dict(heads)
    probs = heads.pop(LABEL)
    k = min(topk, probs.shape[1])
    vals, idxs = probs.topk(k, dim=1)
    best = {h: p.max(dim=1) for h, p in heads.items()}
    results = []
    for n, (f, v, i) in enumerate(zip(files, vals.tolist(), idxs.tolist())):
        results.append({'path': str(f), 'top': [{'class': predictor.vocab[j], 'prob': round(p, 4)} for p, j in zip(v, i)]})
        if heads: results[-1]['attributes'] = {h: {'class': predictor.vocabs[h][int(b.indices[n])],
                                                   'prob': round(float(b.values[n]), 4)} for h, b in best.items()}
        if min_prob is not None: results[-1]['uncertain'] = v[0] < min_prob
        if routed is not None: results[-1]['zero_shot'] = routed[n]
    return results


def answering_note(predictor: Predictor) -> dict:
    "What the answers' probabilities are, for predict's JSON and its one line on stderr."
    a = predictor.answering
    why = ('--closed-set: the trained classes alone' if predictor.closed_set and a.has_zero_shot else a.why_not)
    return dict(calibrated=bool(a.temperatures), zero_shot=predictor.zero_shot,
                **({'zero_shot_classes': len(a.zero_shot.head.classes)} if predictor.zero_shot else {'why_not': why}))


def predict_paths(predictor: Predictor, paths, topk: int = 5, min_prob: float = REVIEW_PROB) -> tuple[list, list]:
    "`answers` for the readable images under `paths`, and the skipped ones with reasons."
    files, skipped = readable(paths)
    if not files: return [], skipped
    heads, routed = predictor.answer_probs(files)
    return answers(predictor, files, heads, topk, min_prob, routed), skipped
