"""`python -m fashion_fastai.export RUN_DIR`: every model of a run as ONNX, to ship where PyTorch is not installed.

A command over a finished run folder rather than a step of training: ONNX and ONNX Runtime are optional extras that
training does not need, a run trained before this existed exports all the same, and the check below needs images and
time that a run need not spend.  Each model's weights-only form (`<model>.json` + `.pth`) becomes `<model>.onnx` beside
it: the input is the decoder's uint8 RGB pixels ([batch, 3, height, width], the batch axis dynamic), and the graph holds
the scaling, the normalisation, the network and one softmax per head (the article type's and each attribute's), so that
runtime.py needs only Pillow, numpy and ONNX Runtime.  `<model>.json` gains an `onnx` entry: the file, the input, the
outputs in order, and the check.  A run whose models have a zero-shot path also gets its frozen ImageNet network as
`imagenet.onnx` (one graph for the run, checked the same way).

The check, on real product photos: ONNX Runtime's probabilities must equal PyTorch's within what float32 arithmetic
allows this very network on these images.  The reference is PyTorch in float64; PyTorch's own float32 run sets the
scale of float32 error; ONNX Runtime (which fuses BatchNorm into the convolutions and picks other kernels) may stray
from the reference by `TOLERANCE_FACTOR` times that, never less than a few float32 ulps of 1.  Otherwise the export
fails, naming the worst image, and no `.onnx` is left behind.
"""
from __future__ import annotations

import copy, json, warnings
from pathlib import Path

import numpy as np
import torch
from fastcore.script import call_parse

from fashion_fastai.core.atomic import atomic_path, atomic_write_text
from fashion_fastai.cli import command
from fashion_fastai.core.errors import DataError, ModelError
from fashion_fastai.answering.answering import Answering
from fashion_fastai.inference.locate import IMAGE_EXTS, exported, read_meta
from fashion_fastai.inference.predictors import WeightsOnlyModel
from fashion_fastai.data.pixels import image_batch
from fashion_fastai.networks import imagenet_classifier
from fashion_fastai.shipped.runtime import INPUT, import_onnxruntime, session

TOLERANCE_FACTOR = 8.    # ONNX Runtime's error from float64, in units of PyTorch's own float32 error on the same images
FLOOR = 16 * float(np.finfo(np.float32).eps)  # the least tolerance: a few ulps of a probability near 1
OPSET = 18


class ShippedNetwork(torch.nn.Module):
    "The network as it ships: uint8 pixels in, each head's probabilities out (the article type last)."
    def __init__(self, model: torch.nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)

    def forward(self, pixels):
        out = self.model((pixels.to(self.mean.dtype) - self.mean) / self.std)
        return tuple(o.softmax(-1) for o in (out if isinstance(out, tuple) else (out,)))


def check_images(run_dir: Path, images=None, n: int = 64) -> list:
    "Up to `n` photos to check the export on: those given, else the run's own data folder's (`config.json`'s data_dir)."
    if images is None:
        record = Path(run_dir) / 'config.json'
        data_dir = json.loads(record.read_text()).get('data_dir') if record.is_file() else None
        if data_dir is None or not (Path(data_dir) / 'images').is_dir():
            raise DataError(f"{run_dir}: no data folder of the run to check the export on (its config.json names "
                            f"{data_dir or 'none'}): pass --images FOLDER with a few product photos.")
        images = Path(data_dir) / 'images'
    images = Path(images)
    files = sorted(f for f in images.rglob('*') if f.suffix.lower() in IMAGE_EXTS)[:n] if images.is_dir() else []
    if not files:
        raise DataError(f"--images {images} holds no image files to check the export on: pass a folder of photos.")
    return files


def tolerance(reference: list, float32: list) -> float:
    "How far from the float64 reference another float32 implementation may stray: see the module's docstring."
    err = max(float((a - b).abs().max()) for a, b in zip(reference, float32))
    return max(TOLERANCE_FACTOR * err, FLOOR)


def export_graph(net: torch.nn.Module, pixels: torch.Tensor, outputs: list, onnx_path: Path, files: list,
                 bs: int = 32) -> dict:
    """Write `net` (a `ShippedNetwork`) as `onnx_path`, checked on `pixels` (the decoded `files`); returns the record of
    the graph.  A mismatch raises `ModelError` and leaves no file."""
    with atomic_path(onnx_path) as tmp, warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the exporter's notes on its own internals: nothing a user can act on
        torch.onnx.export(net, (pixels[:2],), str(tmp), input_names=[INPUT], output_names=outputs, opset_version=OPSET,
                          dynamo=True, dynamic_shapes=({0: torch.export.Dim('batch')},), verbose=False,
                          external_data=False)  # one file to ship (the exporter would put the weights beside it, named
                          # after the temporary file); ONNX's 2 GB limit on one file is far above these networks
        ours = session(tmp)
        with torch.inference_mode():
            double = copy.deepcopy(net).double()
            reference = [torch.cat(o) for o in zip(*(double(pixels[i:i + bs]) for i in range(0, len(pixels), bs)))]
            float32 = [torch.cat(o) for o in zip(*(net(pixels[i:i + bs]) for i in range(0, len(pixels), bs)))]
        shipped = [torch.from_numpy(np.concatenate(o)) for o in
                   zip(*(ours.run(outputs, {INPUT: pixels[i:i + bs].numpy()}) for i in range(0, len(pixels), bs)))]
        tol = tolerance(reference, float32)
        diff = [(s.double() - r).abs() for s, r in zip(shipped, reference)]
        worst = max(float(d.max()) for d in diff)
        if not worst <= tol:
            head, d = max(zip(outputs, diff), key=lambda hd: float(hd[1].max()))
            image = files[int(d.max(dim=1).values.argmax())]
            raise ModelError(f"{onnx_path.name}: ONNX Runtime's {head} probabilities differ from PyTorch's by "
                             f"{worst:.3g} (on {image}), beyond the {tol:.3g} float32 arithmetic allows this network: "
                             "the graph is not the model. Nothing was written; report it with the versions of torch, "
                             f"onnx and onnxruntime.")
    return dict(file=onnx_path.name, input=INPUT, layout='uint8 RGB [batch, 3, height, width], resized as in training',
                outputs=outputs, opset=OPSET, check=dict(images=len(files), max_abs_diff=worst, tolerance=tol,
                                                         torch_float32_diff=tol / TOLERANCE_FACTOR))


def export_onnx(json_path: Path, files: list, bs: int = 32) -> dict:
    """Write `<model>.onnx` beside `json_path`, check it on `files`, and record it in the JSON; returns that record.
    A mismatch raises `ModelError` and leaves no `.onnx`."""
    json_path = Path(json_path)
    loaded = WeightsOnlyModel(json_path, device='cpu')
    net = ShippedNetwork(loaded.model, loaded.meta['mean'], loaded.meta['std']).eval()
    record = export_graph(net, torch.from_numpy(image_batch(files, loaded.size)), list(loaded.vocabs),
                          json_path.with_suffix('.onnx'), files, bs)
    meta = read_meta(json_path)
    atomic_write_text(json_path, json.dumps({**meta, 'onnx': record}, indent=1))
    return record


def export_imagenet(json_path: Path, files: list, bs: int = 32) -> dict | None:
    """The frozen ImageNet network that `json_path`'s zero-shot path names, as `<network>.onnx` beside it (once for the
    run's models, which share it): the shipped path's second graph.  None when the model has no zero-shot path."""
    network = Answering.from_meta(read_meta(json_path)).network
    if not network: return None
    path = Path(json_path).parent / network['file']
    graph = path.with_suffix('.onnx')
    if graph.is_file() and graph.stat().st_mtime >= path.stat().st_mtime: return dict(file=graph.name, reused=True)
    net = ShippedNetwork(imagenet_classifier.load(network['arch'], path), network['mean'], network['std']).eval()
    return export_graph(net, torch.from_numpy(image_batch(files, network['size'])), ['imagenet'], graph, files, bs)


@call_parse
@command('export')
def main(run: str,             # a run folder (every model), or one weights-only <model>.json
         images: str = None,   # a folder of product photos to check the export on (default: the run's data folder)
         photos: int = 64,     # how many photos the check uses
         ):
    "Export every model of a run to ONNX (`<model>.onnx` beside it), checked against PyTorch on real photos."
    import_onnxruntime()  # fail now, before anything is exported, when the optional extra is missing
    run = Path(run)
    if run.suffix == '.json' and run.is_file(): targets, run_dir = [run], run.parent
    elif run.is_dir():
        targets, run_dir = [run / f'{name}.json' for name in exported(run) if (run / f'{name}.json').is_file()], run
        if not targets: raise ModelError(f"{run} holds no weights-only model (<model>.json + .pth) to export: pass a "
                                         f"finished run folder.")
    else: raise ModelError(f"{run} is neither a run folder nor a <model>.json: pass the run folder to export.")
    for t in targets: read_meta(t)  # every file checked before the first export
    files = check_images(run_dir, images, photos)
    for t in targets:
        r = export_onnx(t, files)
        print(f"{t.with_suffix('.onnx')}: {', '.join(r['outputs'])}; ONNX Runtime within "
              f"{r['check']['max_abs_diff']:.2g} of PyTorch's float64 probabilities on {r['check']['images']} photos "
              f"(float32 allows {r['check']['tolerance']:.2g})",
              flush=True)
        z = export_imagenet(t, files)
        if z and not z.get('reused'):
            print(f"{t.parent / z['file']}: the zero-shot path's ImageNet network; ONNX Runtime within "
                  f"{z['check']['max_abs_diff']:.2g} (float32 allows {z['check']['tolerance']:.2g})", flush=True)
