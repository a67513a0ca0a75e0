"""A loaded model behind one interface (`Predictor`), whatever its form: `WeightsOnlyModel` (rebuilt from the JSON and
the state_dict, no unpickling), `PickledLearner` (fastai's exported learner), `OnnxPredictor` (the shipped graph on ONNX
Runtime).  Nothing here imports training code: the weights-only form needs the network and the pixel pipeline, not the
training loop.

The device is chosen in one place, `resolve_device`: CUDA when torch sees a GPU (`auto`), unless told otherwise."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from fastai.vision.all import load_learner

from fashion_fastai.answering.answering import Answering
from fashion_fastai.core.errors import ModelError, OptionError
from fashion_fastai.core.schema import LABEL
from fashion_fastai.data.pixels import decoded_ahead, image_batch
from fashion_fastai.inference.locate import read_meta, weights_error
from fashion_fastai.networks.attributes import (add_attribute_heads, article_head, article_vocab, attribute_heads,
                                                head_vocabs)
from fashion_fastai.networks.weights import create_model
from fashion_fastai.shipped.runtime import OnnxModel, import_onnxruntime

DEVICES = ('auto', 'cpu', 'cuda')


def resolve_device(device='auto') -> torch.device:
    """The one place the device is chosen: `auto` is CUDA when torch sees a GPU, else the CPU; `cuda` without one is
    refused."""
    if isinstance(device, torch.device): return device
    if device not in DEVICES: raise OptionError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}.")
    if device == 'cuda' and not torch.cuda.is_available():
        raise OptionError("--device cuda, but torch sees no CUDA GPU here (no GPU, no driver, or a CPU-only torch "
                          "build): use --device auto or --device cpu.")
    return torch.device('cuda' if device == 'cuda' or (device == 'auto' and torch.cuda.is_available()) else 'cpu')


def worker_device(device='auto') -> torch.device:
    "Worker processes share a CPU's cores: the CPU unless CUDA was asked for by name (see the module's docstring)."
    return resolve_device('cpu' if device == 'auto' else device)


class Predictor:
    """What `predict` and the web page use: `vocab` (the article types), `vocabs` (every head's, in output order, the
    article type last) and `head_probs(paths)`, one probability tensor per head on the CPU, the trained heads' softmax;
    `answer_probs(paths)`, the same as the model answers (answering.py: calibrated, and joined with its zero-shot
    classes unless `closed_set`), with which images the zero-shot path answered.  A context manager, so that a caller
    need not know whether there are processes to stop."""
    vocabs: dict
    answering: Answering = Answering(why_not='no answering record was loaded with this model')
    # the frozen ImageNet network's probabilities (imagenet_classifier.Scorer or shipped.OnnxScorer)
    scorer = None
    closed_set = False     # True: the trained heads alone (calibrated), as the published runs of the protocol scored

    @property
    def vocab(self) -> list: return self.vocabs[LABEL]

    @property
    def zero_shot(self) -> bool:
        "Whether this predictor answers with zero-shot classes."
        return self.answering.has_zero_shot and not self.closed_set and self.scorer is not None

    @property
    def zero_shot_classes(self) -> tuple:
        "The classes it answers without training photos (none unless `zero_shot`)."
        return tuple(self.answering.zero_shot.head.classes) if self.zero_shot else ()

    @property
    def review_prob(self) -> float:
        """The calibrated probability below which an answer is `uncertain`: the rule fitted on the run's holdout for
        the way this predictor answers (answering/review.py)."""
        return self.answering.review_prob(not self.zero_shot)

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


def read_state_dict(json_path: Path, weights: Path) -> dict:
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
        state = read_state_dict(json_path, weights)
        self._check_heads(json_path, weights, state)
        self.model.load_state_dict(state)
        self.device = resolve_device(device)
        self.channels_last = bool(self.meta.get('channels_last'))  # the layout it trained in (export_stage records it)
        self.model.eval().to(self.device,
                             memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        stat = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self.mean, self.std = stat(self.meta['mean']), stat(self.meta['std'])

    def batches(self, paths, bs=64, num_workers: int = None):
        """The model's input batches: uint8 pixels decoded and resized exactly as in training (pixels.py, the same bytes
        as fastai's pipeline), then fastai's own `IntToFloatTensor` and `Normalize` arithmetic, on the model's device
        and in its memory layout.  Decoding needs no fastai `DataLoader` (whose per-item Python costs more than the
        decoding of a small photo); with `num_workers` other than 0 the next batch is decoded in a thread while the
        model runs."""
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
            raise ValueError(f"{json_path.name} lists other attributes {expected or 'none'} but {weights.name} has "
                             f"heads for {got or 'none'}: the two files come from different runs or models")
        names = {m: n for n, m in self.model.named_modules()}
        heads = attribute_heads(self.model)
        layers = {**({a: h[-1] for a, h in heads.others.items()} if heads is not None else {}),
                  LABEL: article_head(self.model)[-1]}
        for head, layer in layers.items():
            # absent: another model altogether, which load_state_dict names
            weight = state.get(f'{names[layer]}.weight')
            n_out = None if weight is None else weight.shape[0]
            if n_out is not None and n_out != len(self.vocabs[head]):
                what = 'classes' if head == LABEL else f'{head} values'
                raise ValueError(f"{json_path.name} lists {len(self.vocabs[head])} {what} but {weights.name} has "
                                 f"{n_out} outputs for them: the two files come from different runs or models")

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
        # fastai's own pickle warning: `find_model` has warned, or --trust-pickle said so
        with warnings.catch_warnings():
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


class OnnxPredictor(Predictor):
    """A shipped model (`shipped.OnnxModel`, ONNX Runtime, the input pipeline in Pillow and numpy) behind the same
    interface, its answers as torch tensors.  On CUDA only when asked for by name or when this onnxruntime has the CUDA
    provider: the PyPI `onnxruntime` runs on the CPU."""
    def __init__(self, json_path: Path, device='auto', threads: int = None):
        try: ort = import_onnxruntime()
        except ImportError as e: raise OptionError(str(e)) from None
        wants_cuda = resolve_device(device).type == 'cuda'
        cuda = wants_cuda and (device == 'cuda' or 'CUDAExecutionProvider' in ort.get_available_providers())
        try: self.model = OnnxModel(json_path, threads, cuda)
        except ModelError: raise
        except Exception as e:
            raise weights_error(json_path, f"ONNX Runtime could not load the graph {json_path.with_suffix('.onnx')} "
                                           f"({type(e).__name__}: {str(e)[:300]}): export it again") from e
        self.vocabs, self.device = self.model.vocabs, torch.device('cuda' if cuda else 'cpu')

    def head_probs(self, paths, bs=64, num_workers: int = None) -> dict:
        "`num_workers` is ignored: the graph's session has its own threads."
        return {h: torch.from_numpy(p) for h, p in self.model.head_probs(paths, bs).items()}
