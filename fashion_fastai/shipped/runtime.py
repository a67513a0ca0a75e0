"""Running a shipped model: a run's `<model>.onnx` (written by `python -m fashion_fastai.export`) on ONNX Runtime, with
numpy and Pillow alone, so that it predicts where PyTorch is not installed.

The graph takes the RGB pixels as they come out of the decoder (uint8, [N, 3, height, width], resized as in training by
pixels.py) and does the rest itself: scaling, the weights' normalisation, the network, one softmax per head.  What the
outputs mean (each head's vocab) and the input size come from the `<model>.json` beside it, the same file the PyTorch
path reads.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fashion_fastai.core.errors import ModelError
from fashion_fastai.data.pixels import decoded_ahead, image_batch

INPUT = 'pixels'  # the graph's one input: uint8 RGB, [batch, 3, height, width]


def import_onnxruntime():
    "onnxruntime, or an error saying how to get it (it is an optional extra: only shipping needs it)."
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError("the ONNX engine needs onnxruntime, which is not installed: pip install "
                          "'fashion_fastai[onnx]' (or pip install onnxruntime), or use the PyTorch engine (--engine "
                          "torch).") from e
    return onnxruntime


def session(onnx_path: Path, threads: int = None, cuda: bool = False):
    """An ONNX Runtime session on the CPU (or CUDA when asked and this onnxruntime has it), with `threads` intra-op
    threads."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    if threads: opts.intra_op_num_threads = threads
    providers = ['CPUExecutionProvider']
    if cuda:
        if 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise RuntimeError("this onnxruntime has no CUDA provider: install onnxruntime-gpu, or predict on the CPU.")
        providers.insert(0, 'CUDAExecutionProvider')
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)


class OnnxModel:
    """A model of a run from its `<model>.json` and the `<model>.onnx` it names: `vocabs` (every head's, the article
    type last), `size`, and `head_probs(paths)` giving one numpy array of probabilities per head."""
    def __init__(self, json_path: Path, threads: int = None, cuda: bool = False):
        json_path = Path(json_path)
        self.meta = json.loads(json_path.read_text())
        shipped = self.meta.get('onnx')
        if not shipped:
            raise FileNotFoundError(f"{json_path} names no ONNX graph: run `python -m fashion_fastai.export "
                                    f"{json_path.parent}` first.")
        self.size, self.outputs = tuple(self.meta['size']), shipped['outputs']
        self.vocabs = {**self.meta.get('attributes', {}), self.outputs[-1]: self.meta['vocab']}  # the article type last
        self.session = session(json_path.parent / shipped['file'], threads, cuda)
        self._check_graph(json_path, json_path.parent / shipped['file'])

    def _check_graph(self, json_path: Path, graph: Path) -> None:
        """The graph's input and heads against what the JSON says: a graph exported from another model or run (copied
        over this one, or a JSON edited by hand) would otherwise answer with another vocab's names, or fail mid-way."""
        heads = {o.name: o.shape[-1] for o in self.session.get_outputs()}
        expected = {h: len(v) for h, v in self.vocabs.items()}
        inputs = [(i.name, i.shape[-2:]) for i in self.session.get_inputs()]
        size = [d if isinstance(d, int) else None for d in inputs[0][1]] if len(inputs) == 1 else None
        if heads != expected or inputs[0][0] != INPUT or size not in ([*self.size], [None, None]):
            said = lambda d: ', '.join(f'{h} {n}' for h, n in d.items())
            raise ModelError(f"{graph} does not belong to {json_path}: the graph takes {inputs} and answers "
                             f"{said(heads)}, the JSON expects input {INPUT} at {list(self.size)} and "
                             f"{said(expected)}. Run `python -m fashion_fastai.export {json_path.parent}` again.")

    def run(self, pixels: np.ndarray) -> dict:
        "Probabilities per head for a uint8 batch [N, 3, height, width]."
        return dict(zip(self.outputs, self.session.run(self.outputs, {INPUT: pixels})))

    def head_probs(self, paths, bs: int = 64) -> dict:
        "Each head's probabilities for the files, the next batch decoded while the graph runs on this one."
        paths = list(paths)
        chunks = [paths[i:i + bs] for i in range(0, len(paths), bs)]
        decode = lambda chunk: image_batch(chunk, self.size)
        parts = [self.run(b) for b in (decoded_ahead(decode, chunks) if len(chunks) > 1 else map(decode, chunks))]
        return {h: np.concatenate([p[h] for p in parts]) if parts else np.zeros((0, len(self.vocabs[h])), np.float32)
                for h in self.outputs}


class OnnxScorer:
    """The frozen ImageNet network of a run's zero-shot path (`imagenet.onnx`, exported beside the models): its
    probabilities of photos decoded at its own `size`, as `imagenet_classifier.Scorer` gives them in PyTorch."""
    def __init__(self, onnx_path: Path, size, threads: int = None, cuda: bool = False):
        self.size, self.session = tuple(size), session(onnx_path, threads, cuda)
        self.output = self.session.get_outputs()[0].name

    def probs(self, paths, bs: int = 64) -> np.ndarray:
        paths = list(paths)
        out = [self.session.run([self.output], {INPUT: image_batch(paths[i:i + bs], self.size)})[0]
               for i in range(0, len(paths), bs)]
        return np.concatenate(out) if out else np.zeros((0, 1000), np.float32)
