r"""Benchmark: the project's fastai loops against bare PyTorch, and the data pipeline against the model's appetite.

For each arch x input size x memory layout x torch thread count, with the same model (a torchvision ResNet or a timm
name), batch size, input size, layout and threads on both sides, alternating ours and bare
`--repeats` times (median reported; for training, which side goes first rotates, and the ratio is given both as the
ratio of the medians and as the median of each repeat's own ratio, whose sides ran back to back):
  1. training images/second: our stage-one learner's `fit_one_cycle` (fastai's loop, callbacks, metrics, optimiser) vs a
     bare loop (forward, cross-entropy, backward, `torch.optim.AdamW` step with fastai's Adam settings, torch's default
     implementation) on a deep copy of the same model; and the bare loop with `AdamW(fused=True)`, the kernel our
     optimiser steps with (optimizer.py), which leaves only the loops' own difference. All replay the same batches,
     already decoded and augmented in memory;
  2. batch inference images/second: the exported learner (`load_learner`) running `get_preds` on a `test_dl` of image
     files (decoding included: what a user runs) vs a bare `model(x)` forward on those images' batches already in
     memory, both in fp32 (an exported learner predicts in fp32 whatever precision it was trained in); and, as the floor
     that decoding sets, the bare forward with each batch's files read and decoded just before it by torchvision's C
     decoder; and the exported learner shared among `--infer-processes` worker processes of one torch thread each
     (`predict --processes`);
  3. the data pipeline alone (decode, item and batch transforms of the training DataLoader) for each worker count, vs
     our training images/second.
Images: the first `--images` rows of the real small data set when it is there (`--data`), else the built-in demo data;
at 224x224 those 60x80 images are upscaled (the full-size data set would be downscaled instead: same tensors for the
model). Models start from scratch (no ImageNet weights here); speed does not depend on the weights. The bare side's
model is built by `weights.create_model` (the network `vision_learner` builds, for either library) and given our model's
weights. `--channels-last` puts both sides' models and inputs in channels_last in fp32 too (bf16 always is); `--threads
1,2` measures each configuration at each torch thread count (depthwise convolutions, as in EfficientNet, run their
backward pass differently from a ResNet's dense ones on a CPU: measure rather than assume).

The defaults measure the documented command's model: `tf_efficientnet_lite0` at 128x96 in channels_last (what
`--channels-last auto` picks for a timm model on a CPU), batch 32, fp32, torch's threads.  The ResNet grids of
2026-11-30 name their archs and layout (BENCHMARKS.md has every command as it was measured).

    .venv/bin/python bench/speed.py                      # the documented command's model, 128x96, channels_last
    .venv/bin/python bench/speed.py --archs resnet18,resnet50 --sizes 80x60,224x224 --channels-last no  # ResNet grid
    .venv/bin/python bench/speed.py --archs tf_efficientnet_lite0 --sizes 80x60,160x120 --threads 1,2 \
        --channels-last both
Writes bench/results/speed.json and prints the markdown tables for BENCHMARKS.md.
"""
from __future__ import annotations

import copy, itertools, json, os, platform, statistics, sys, tempfile, time, warnings
from pathlib import Path

import fashion_fastai  # noqa: F401  first: it quiets fastai's import-time torch.jit.script warning
import torch
from fastai.vision.all import Callback, DataLoader, DataLoaders, find_bs, load_learner
from fastcore.script import call_parse
from torchvision.io import ImageReadMode, decode_image, read_file

from fashion_fastai.answering.answering import Answering
from fashion_fastai.answering.zero_shot import ZeroShotPath, load_map
from fashion_fastai.core.schema import LABEL
from fashion_fastai.training.artifacts import export_stage, record_answering
from fashion_fastai.data.styles import load_data, part_dataloaders
from fashion_fastai.core.models import ALL, JOINED
from fashion_fastai.inference.load import load_model_file
from fashion_fastai.training.stages import build_learner
from fashion_fastai.training.config import parse_size
from fashion_fastai.networks.weights import create_model, normalization

REAL = Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'fashion-product-images-small'


class TrainClock(Callback):
    "Wall time of the training batches after the first `warmup` ones (validation and the fit's set-up excluded)."
    order = 100  # after every other callback's after_batch: the clock sees the whole step
    def __init__(self, warmup: int = 1): self.warmup = warmup
    def before_train(self): self.t0, self.n = None, 0
    def after_batch(self):
        if not self.training: return
        if self.iter == self.warmup - 1: self.t0 = time.perf_counter()
        elif self.iter >= self.warmup: self.n += find_bs(self.yb)
    def after_train(self): self.rate = self.n / (time.perf_counter() - self.t0)


def subset(data: Path, images: int, tmp: Path) -> Path:
    "A Kaggle-layout folder with the first `images` rows of styles.csv, its images/ linked: loading stays in seconds."
    lines = (data / 'styles.csv').read_bytes().splitlines(keepends=True)
    (tmp / 'subset').mkdir()
    (tmp / 'subset' / 'styles.csv').write_bytes(b''.join(lines[:images + 1]))
    (tmp / 'subset' / 'images').symlink_to((data / 'images').resolve())
    return tmp / 'subset'


def machine(**more) -> dict:
    "What a result was measured on."
    return dict(cores=os.cpu_count(), torch=torch.__version__, threads=torch.get_num_threads(),
                cpu=platform.processor() or platform.machine(),
                gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, **more)


def bench_data(data: Path, images: int, tmp: Path, record: dict):
    "The first `images` rows of the real data when it is there, else the built-in demo data, loaded; noted in `record`."
    if (data / 'styles.csv').is_file(): record['data'], folder = str(data), subset(data, images, tmp)
    else:
        from fashion_fastai.data.demo import demo_dir
        record['data'], folder = 'built-in demo data', demo_dir()
    return load_data(folder)


def replay(batches: list) -> DataLoader:
    "A fastai DataLoader that hands out ready-made batches in order (`bs=None`: each item is a whole batch)."
    return DataLoader(batches, bs=None, shuffle=False, num_workers=0)


def ours_train(learn, batches: list, lr: float) -> float:
    real, learn.dls = learn.dls, DataLoaders(replay(batches), replay(batches[:1]), device=learn.dls.device)
    clock = TrainClock()
    try: learn.fit_one_cycle(1, lr, cbs=clock)
    finally: learn.dls = real  # its vocab and normalisation are exported later
    return clock.rate


def bare_train(model, batches: list, lr: float, precision: str, fused: bool = False,
               channels_last: bool = False) -> float:
    """fastai's default optimiser is Adam with decoupled weight decay 0.01, betas (0.9, 0.99), eps 1e-5: AdamW with
    those, in torch's default implementation (a for-loop on the CPU, foreach on GPUs) unless `fused`."""
    batches = [(plain(x), plain(y)) for x, y in batches]
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01,
                            fused=fused or None)
    loss_func = torch.nn.CrossEntropyLoss()
    n, t0 = 0, None
    for i, (x, y) in enumerate(batches):
        if i == 1: t0 = time.perf_counter()  # the first batch warms up, as in TrainClock
        if channels_last: x = x.contiguous(memory_format=torch.channels_last)  # as the model (fastai's ChannelsLast)
        with autocast(precision, x.device):
            loss = loss_func(model(x).float(), y)
        loss.backward(); opt.step(); opt.zero_grad()
        if i >= 1: n += len(y)
    return n / (time.perf_counter() - t0)


def plain(t): return t.as_subclass(torch.Tensor)  # fastai's TensorImage/TensorCategory off: bare PyTorch


def autocast(precision: str, device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == 'bf16')


def load(pkl: Path, device):
    "The exported learner (our own file: its pickle warning is noise here)."
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='load_learner` uses Python', category=UserWarning)
        return load_learner(pkl, cpu=device.type == 'cpu')


def ours_infer(pkl: Path, files: list, bs: int, workers: int, device) -> float:
    learn = load(pkl, device)
    learn.get_preds(dl=learn.dls.test_dl(files[:bs], bs=bs, num_workers=0))  # warm-up
    dl = learn.dls.test_dl(files, bs=bs, num_workers=workers)
    t0 = time.perf_counter()
    probs, _ = learn.get_preds(dl=dl)
    assert len(probs) == len(files)
    return len(files) / (time.perf_counter() - t0)


def procs_infer(pool, files: list, bs: int) -> float:
    """The exported learner in a `ProcessPredictor` (`predict --processes N`): each worker process runs `get_preds` on a
    `test_dl` of its share of the files, one torch thread each. The pool was started and warmed up beforehand, as
    `ours_infer` loads its learner untimed."""
    t0 = time.perf_counter()
    probs = pool.probs(files, bs)
    assert len(probs) == len(files)
    return len(files) / (time.perf_counter() - t0)


def bare_infer(model, xs: list) -> float:
    """In fp32, as the exported learner predicts (bf16 autocast is a training-only callback, removed before export), in
    the memory layout it was trained in: same model, same arithmetic, so only the loops and the decoding differ."""
    model.eval()
    with torch.inference_mode():
        model(xs[0])  # warm-up
        t0 = time.perf_counter()
        for x in xs: model(x)
    return sum(len(x) for x in xs) / (time.perf_counter() - t0)


def decode_floor_infer(model, xs: list, files: list, bs: int) -> float:
    """The bare forward, each batch preceded by reading and decoding its files in C (torchvision's libjpeg-turbo: no
    PIL, no fastai, no resize) into a float batch: what the cheapest possible serial decoding leaves of the bare rate,
    the ceiling of any `get_preds` that decodes in the main process."""
    model.eval()
    with torch.inference_mode():
        model(xs[0])
        t0 = time.perf_counter()
        for i, x in enumerate(xs):
            decoded = [decode_image(read_file(f), mode=ImageReadMode.RGB) for f in files[i * bs:(i + 1) * bs]]
            torch.stack(decoded).float().div_(255)
            model(x)
    return sum(len(x) for x in xs) / (time.perf_counter() - t0)


def pipeline_rate(data, size, bs: int, workers: int, batches: int, stats) -> float:
    """Images/second of the training DataLoader alone (decode, resize, augmentation, normalisation), after its first
    batch."""
    dl = part_dataloaders(data, 'top', size=size, bs=bs, num_workers=workers, seed=0, stats=stats).train
    n, t0 = 0, None
    for i, (x, _) in enumerate(dl):
        if i == 0: t0 = time.perf_counter()
        else: n += len(x)
        if i == max(batches, 10): break  # at least 10 batches: a fast pipeline finishes a few in a blink
    return n / (time.perf_counter() - t0)


def median(xs): return statistics.median(xs)


def measure(data, arch: str, size, bs: int, batches: int, repeats: int, workers: list, precision: str, tmp: Path,
            infer_workers: int = 0, infer_processes: int = 2, channels_last: bool = False, first: int = 0) -> dict:
    "One configuration's rates, `repeats` of each side; `first`: which training side goes first in the first repeat."
    stats = normalization(arch)  # the arch's own, as the CLI trains it (speed does not depend on it)
    dls = part_dataloaders(data, 'top', size=size, bs=bs, num_workers=0, seed=0, stats=stats)
    device = dls.device
    train_batches = [b for _, b in zip(range(batches + 1), dls.train)]
    learn = build_learner(dls, arch, path=tmp, precision=precision)  # stage one's learner, from scratch
    channels_last = channels_last or precision == 'bf16'  # bf16 comes with channels_last (set_precision)
    if channels_last: learn.to_channelslast(use_amp=False)  # no-op when set_precision added it
    bare = create_model(arch, dls.c).to(device)  # the same network, built without fastai's learner
    bare.load_state_dict(learn.model.state_dict())  # strict: fails if it is not the same network; same start
    if channels_last: bare = bare.to(memory_format=torch.channels_last)  # as fastai's ChannelsLast does for ours
    lr, rates = 1e-3, dict(train_ours=[], train_bare=[], train_fused=[], infer_ours=[], infer_bare=[], infer_floor=[],
                           infer_procs=[])
    sides = {'train_ours': lambda: ours_train(learn, train_batches, lr),
             'train_bare': lambda: bare_train(bare, train_batches, lr, precision, False, channels_last),
             'train_fused': lambda: bare_train(bare, train_batches, lr, precision, True, channels_last)}
    order = list(sides)
    for r in range(first, first + repeats):  # alternate, so that a slow spell hits every side; rotate who goes first
        for k in order[r % 3:] + order[:r % 3]: rates[k].append(sides[k]())
    export_stage(learn, tmp, 'bench', arch, size)
    files = [str(f) for f in data.part('top').query("split == 'test'")['file'][:bs * batches]]
    exported = load(tmp / 'bench.pkl', device)
    test_dl = exported.dls.test_dl(files, bs=bs, num_workers=0)
    xs = [plain(b[0]) for b in test_dl]
    if channels_last: xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    pool = None
    if infer_processes > 1:
        pool = load_model_file(tmp / 'bench.pkl', 'pickle', 'auto', infer_processes)  # as `predict --processes N`
        pool.probs(files[:bs * 4 * infer_processes], bs)  # starts the processes and warms up each one's model
    for _ in range(repeats):
        rates['infer_ours'].append(ours_infer(tmp / 'bench.pkl', files, bs, infer_workers, device))
        rates['infer_bare'].append(bare_infer(bare, xs))
        rates['infer_floor'].append(decode_floor_infer(bare, xs, files, bs))
        if pool: rates['infer_procs'].append(procs_infer(pool, files, bs))
    if pool: pool.close()
    pipes = {w: [pipeline_rate(data, size, bs, w, batches, stats) for _ in range(repeats)] for w in workers}
    return summarize(rates, pipes, threads=torch.get_num_threads(), channels_last=channels_last)


def timed(fn, n: int) -> float:
    "Images/second of one call of `fn` that handles `n` images."
    t0 = time.perf_counter(); fn()
    return n / (time.perf_counter() - t0)


def latencies(fn, files: list) -> dict:
    "p50/p95 milliseconds of `fn([file])`, one warm photo at a time (as a web page answers)."
    fn(files[:1])
    ms = []
    for f in files:
        t0 = time.perf_counter(); fn([f]); ms.append(1000 * (time.perf_counter() - t0))
    q = statistics.quantiles(ms, n=20)
    return dict(p50=statistics.median(ms), p95=q[18], n=len(ms))


# the real data's stages (20 top classes, 122 rare, 142 in all), each part with one class that had no training photo
# and has a zero-shot map row, so that the frozen ImageNet network runs as in a real run's answer
PART_CLASSES = {'top': 20, 'rare': 122}
ZERO_SHOT = {'top': 'Perfume and Body Mist', 'rare': 'Lipstick'}


def part_vocab(part: str) -> list:
    return sorted([ZERO_SHOT[part], *(f'{part} class {i:03d}' for i in range(PART_CLASSES[part] - 1))])


def untrained_model(data, name: str, vocab: list, arch: str, size, run: Path) -> None:
    """An untrained model of `vocab` exported as the CLI exports a trained one (`export_stage`): a DataBlock of the
    parts' own kind over a few photos relabelled with its classes gives the learner its vocab and normalisation."""
    from fashion_fastai.data.styles import as_items, part_datablock
    from fashion_fastai.training.config import resolve_channels_last
    items = [{**row, LABEL: vocab[i % len(vocab)], 'split': ('train', 'test')[i % 2]}
             for i, row in enumerate(as_items(data.part(ALL).head(8)))]
    dls = part_datablock(vocab, size, 'test', False, normalization(arch)).dataloaders(items, bs=4, num_workers=0)
    learn = build_learner(dls, arch, path=run, stage=name, channels_last=None)
    if resolve_channels_last(None, 'fp32', arch): learn.to_channelslast(use_amp=False)  # as the CLI trains it here
    export_stage(learn, run, name, arch, size)


def bench_answering(vocab: list, network: dict) -> Answering:
    "What calibration records for a model (temperatures, prior, zero-shot path); the numbers do not change the cost."
    untrained = [c for c in ZERO_SHOT.values() if c in vocab]
    path = ZeroShotPath.of(vocab, untrained, load_map())
    assert path.head.classes, f"no zero-shot map row for {untrained}: the ImageNet network would not run"
    prior = tuple(0 if c in untrained else 5 + i % 7 for i, c in enumerate(vocab))
    return Answering({LABEL: 1.5}, path, 1.2, network, prior=prior, prior_strength=.5)


def bench_run(data, arch: str, size, files: list, run: Path) -> dict:
    """A run folder of untrained models, written once with the package's own functions: both stages, the all-classes
    model, the frozen ImageNet network, each model's answering, `joined.json` per gate (a folder each, the models
    linked) and every ONNX graph.  Returns {gate: its joined.json}."""
    from fashion_fastai.answering.parts import GATES, WAYS, PartAnswer
    from fashion_fastai.networks import imagenet_classifier
    from fashion_fastai.shipped.onnx_export import export_imagenet, export_onnx
    run.mkdir()
    vocabs = {'stage1': part_vocab('top'), 'stage2': part_vocab('rare')}
    vocabs[ALL] = sorted(vocabs['stage1'] + vocabs['stage2'])
    mean, std = normalization(arch)
    imagenet_classifier.save(imagenet_classifier.build(arch).eval(), run)
    network = dict(file=imagenet_classifier.FILE, arch=arch, size=list(imagenet_classifier.input_size(arch, size)),
                   mean=mean, std=std)
    for name, vocab in vocabs.items():
        untrained_model(data, name, vocab, arch, size, run)
        record_answering(run, name, bench_answering(vocab, network))
        export_onnx(run / f'{name}.json', files)
    export_imagenet(run / 'stage1.json', files)
    joined = {}
    for gate in GATES:
        folder = run if gate == 'all_parts' else run.with_name(f'{run.name}-{gate}')
        if folder != run:
            folder.mkdir()
            for f in run.iterdir():
                if f.stem not in (ALL, JOINED): (folder / f.name).symlink_to(f)
        answer = PartAnswer(tuple(vocabs[ALL]), {'top': ('stage1', tuple(vocabs['stage1'])),
                                                 'rare': ('stage2', tuple(vocabs['stage2']))}, gate,
                            {w: dict(scale=1., bias=0., temperature=1.) for w in WAYS},
                            attributes_from=ALL if gate == 'all_parts' else 'stage2')
        joined[gate] = answer.save(folder)
    return joined


def answer_paths(joined: dict, device: str) -> dict:
    """The answers a run gives, each loaded as `predict` loads it, on PyTorch and on ONNX Runtime: the all-classes model
    alone with its zero-shot path, and the joined answer of each gate."""
    run = joined['all_parts'].parent
    out = {'all_zero_shot': {'torch': load_model_file(run / f'{ALL}.json', 'weights', device),
                             'onnx': load_model_file(run / f'{ALL}.json', 'onnx', 'cpu')}}
    for gate, path in joined.items():
        out[f'joined_{gate}'] = {'torch': load_model_file(path, 'joined', device),
                                 'onnx': load_model_file(path, 'joined-onnx', 'cpu')}
    for name, engines in out.items():
        for engine, p in engines.items():
            assert p.zero_shot, f"{name} on {engine} answers without its zero-shot path: the benchmark would not run it"
    return out


def shipping_measure(data, arch: str, size, bs: int, batches: int, repeats: int, processes: int, photos: int,
                     tmp: Path, device: str = 'cpu') -> dict:
    """The paths a user predicts with, side by side, each on the same files: decoding alone (pixels.py); a bare eager
    forward over the decoded, normalised batches already in memory (NCHW, and in channels_last); the PyTorch path
    (`WeightsOnlyModel`, decoding included) and the ONNX Runtime path (`OnnxPredictor`, decoding included), in one
    process and in `processes` worker processes; then one photo at a time, p50/p95 latency of each path. Beside them,
    the answers a run gives on each engine (`answer_paths`: calibrated, the frozen ImageNet network run for the
    zero-shot classes): the all-classes model alone and the joined answer of each gate. `device`: where the PyTorch
    sides run (`auto`: CUDA when there is one); ONNX Runtime runs on the CPU (the PyPI build's provider)."""
    from fashion_fastai.shipped.onnx_export import export_onnx
    from fashion_fastai.inference.predictors import OnnxPredictor, PickledLearner, WeightsOnlyModel
    from fashion_fastai.data.pixels import image_batch
    stats = normalization(arch)
    dls = part_dataloaders(data, 'top', size=size, bs=bs, num_workers=0, seed=0, stats=stats)
    learn = build_learner(dls, arch, path=tmp, channels_last=None)
    from fashion_fastai.training.config import resolve_channels_last
    if resolve_channels_last(None, 'fp32', arch): learn.to_channelslast(use_amp=False)  # as the CLI trains it here
    export_stage(learn, tmp, 'ship', arch, size)
    files = [str(f) for f in data.part(ALL).query("split == 'test'")['file'][:bs * batches]]
    export_onnx(tmp / 'ship.json', files[:64])
    torch_path = WeightsOnlyModel(tmp / 'ship.json', device=device)
    dev = torch_path.device
    onnx_path = OnnxPredictor(tmp / 'ship.json', device='cpu')
    # the exported learner's own fastai pipeline, for reference
    learner = PickledLearner(tmp / 'ship.pkl', device=device)
    xs = list(torch_path.batches(files, bs, num_workers=0))
    bare = create_model(arch, dls.c).eval()
    bare.load_state_dict(torch_path.model.state_dict())
    bare.to(dev)
    nchw = [x.contiguous() for x in xs]
    bare_cl = copy.deepcopy(bare).to(memory_format=torch.channels_last)
    cl = [x.contiguous(memory_format=torch.channels_last) for x in xs]

    def forward(model, batches):
        with torch.inference_mode():
            for x in batches: model(x)
        if dev.type == 'cuda': torch.cuda.synchronize()
    chunks = [files[i:i + bs] for i in range(0, len(files), bs)]
    n = len(files)
    sides = {'decode': lambda: [image_batch(c, size) for c in chunks],
             'bare_nchw': lambda: forward(bare, nchw), 'bare_channels_last': lambda: forward(bare_cl, cl),
             'torch_path': lambda: torch_path.head_probs(files, bs),
             'onnx_path': lambda: onnx_path.head_probs(files, bs),
             'fastai_get_preds': lambda: learner.head_probs(files, bs, num_workers=0)}
    answers = answer_paths(bench_run(data, arch, size, files[:16], tmp / 'run'), device)  # 16: each export's check
    for name, engines in answers.items():  # the answers as `predict` gives them: calibrated, with zero-shot classes
        for engine, p in engines.items():
            sides[f'{name}_{engine}'] = (lambda p: lambda: p.answer_probs(files, bs))(p)
    pools = {}
    if processes > 1:
        for name, form in (('torch_processes', 'weights'), ('onnx_processes', 'onnx')):
            pools[name] = load_model_file(tmp / 'ship.json', form, device if form == 'weights' else 'cpu', processes)
            pools[name].head_probs(files, bs)  # starts the processes and warms each one's model
            sides[name] = (lambda pool: lambda: pool.head_probs(files, bs))(pools[name])
    for f in sides.values(): f()  # warm-up, untimed
    rates = {k: [] for k in sides}
    for r in range(repeats):  # alternate, so that a slow spell hits every side
        for k in list(sides)[r % len(sides):] + list(sides)[:r % len(sides)]: rates[k].append(timed(sides[k], n))
    for pool in pools.values(): pool.close()
    one = files[:photos]
    latency = {'bare_nchw': latencies(lambda f: forward(bare, [torch_path_input(torch_path, f)]), one),
               'torch_path': latencies(lambda f: torch_path.head_probs(f, 1), one),
               'onnx_path': latencies(lambda f: onnx_path.head_probs(f, 1), one),
               **{f'{name}_{engine}': latencies(lambda f, p=p: p.answer_probs(f, 1), one)
                  for name, engines in answers.items() for engine, p in engines.items()}}
    for engines in answers.values():
        for p in engines.values(): p.close()
    res = {k: median(v) for k, v in rates.items()}
    base = res['bare_nchw']
    return dict(res, all=rates, latency_ms=latency, ratios={k: v / base for k, v in res.items()},
                threads=torch.get_num_threads(), channels_last=torch_path.channels_last, images=n, device=str(dev))


def torch_path_input(model, files):
    "One photo decoded and normalised as the PyTorch path does, for the bare forward's latency (which excludes it)."
    return next(iter(model.batches(files, 1, num_workers=0))).contiguous()


def shipping_grid(data: Path, images: int, archs: str, sizes: str, bs: int, batches: int, repeats: int, processes: int,
                  photos: int, out: Path, device: str = 'cpu') -> None:
    "The shipping grid (see `shipping_measure`), written to `out` and printed as BENCHMARKS.md's table."
    record = dict(command=' '.join(['python', *sys.argv]), bs=bs, batches=batches, repeats=repeats, processes=processes,
                  results={}, machine=machine(onnxruntime=__import__('onnxruntime').__version__))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loaded = bench_data(data, images, tmp, record)
        for arch, size in itertools.product(archs.split(','), sizes.split(',')):
            key = f'{arch} {size}'
            (tmp / key.replace(' ', '-')).mkdir()
            r = record['results'][key] = shipping_measure(loaded, arch, parse_size(size), bs, batches, repeats,
                                                          processes, photos, tmp / key.replace(' ', '-'), device)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(record, indent=1, default=str))
            print(f"{key}: {json.dumps({k: round(v, 1) for k, v in r.items() if isinstance(v, float)})}", flush=True)
    print("\n| model, input | decode img/s | bare NCHW img/s | bare channels_last | fastai get_preds | PyTorch path (x "
          f"bare NCHW, >= 0.9) | ONNX Runtime path (x, >= 2) | {processes} processes: PyTorch / ONNX Runtime | one "
          f"photo p50 / p95 ms: bare, PyTorch, ONNX Runtime (p50 <= 5) |\n|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for k, r in record['results'].items():
        x, lat = r['ratios'], r['latency_ms']
        procs = (f"{r['torch_processes']:.0f} (x{x['torch_processes']:.2f}) / {r['onnx_processes']:.0f} "
                 f"(x{x['onnx_processes']:.2f})" if 'torch_processes' in r else '-')
        print(f"| {k} | {r['decode']:.0f} | {r['bare_nchw']:.0f} | {r['bare_channels_last']:.0f} | "
              f"{r['fastai_get_preds']:.0f} (x{x['fastai_get_preds']:.2f}) | "
              f"{r['torch_path']:.0f} (x{x['torch_path']:.2f}) | {r['onnx_path']:.0f} (x{x['onnx_path']:.2f}) | "
              f"{procs} | "
              + ', '.join(f"{lat[s]['p50']:.1f} / {lat[s]['p95']:.1f}"
                          for s in ('bare_nchw', 'torch_path', 'onnx_path'))
              + ' |')
    print(ANSWERS_HEAD)
    for k, r in record['results'].items():
        for name, title in ANSWERS.items(): print(answers_row(k, title, name, r))
    print(f"\n{record['machine']}")


ANSWERS = {'all_zero_shot': "all-classes model + zero-shot (today's)", 'joined_all_parts': 'joined, gate all_parts',
           'joined_stages': 'joined, gate stages'}
ANSWERS_HEAD = ("\n| model, input | a run's answer (calibrated, zero-shot classes) | PyTorch img/s (x PyTorch path) | "
                "ONNX Runtime img/s (x ONNX Runtime path) | one photo p50 / p95 ms: PyTorch, ONNX Runtime |\n"
                "|---|---|---:|---:|---|")


def answers_row(key: str, title: str, name: str, r: dict) -> str:
    "One answer's row of the second table: its rates against the trained model's own path on the same engine."
    rate = lambda e: f"{r[f'{name}_{e}']:.0f} (x{r[f'{name}_{e}'] / r[f'{e}_path']:.2f})"
    lat = r['latency_ms']
    return (f"| {key} | {title} | {rate('torch')} | {rate('onnx')} | "
            + ', '.join(f"{lat[f'{name}_{e}']['p50']:.1f} / {lat[f'{name}_{e}']['p95']:.1f}" for e in ('torch', 'onnx'))
            + ' |')


def summarize(rates: dict, pipes: dict, **info) -> dict:
    """Medians and ratios of the repeats' rates (`rates`: side -> rates in the order they ran; `pipes`: workers ->
    rates)."""
    rates = {k: v for k, v in rates.items() if v}  # no infer_procs with one process
    pipe = {w: median(v) for w, v in pipes.items()}
    res = {k: median(v) for k, v in rates.items()}
    res.update(info, all=rates, pipeline_all=pipes, pipeline=pipe,
               train_ratio=res['train_ours'] / res['train_bare'],
               fused_ratio=res['train_ours'] / res['train_fused'],
               # each repeat's sides ran back to back, in the same state of the machine: the ratio it swings least in
               train_ratio_paired=median([o / b for o, b in zip(rates['train_ours'], rates['train_bare'])]),
               fused_ratio_paired=median([o / b for o, b in zip(rates['train_ours'], rates['train_fused'])]),
               infer_ratio=res['infer_ours'] / res['infer_bare'], floor_ratio=res['infer_floor'] / res['infer_bare'],
               procs_ratio=res['infer_procs'] / res['infer_bare'] if 'infer_procs' in res else None,
               pipeline_ratio={w: r / res['train_ours'] for w, r in pipe.items()})
    return res


@call_parse
def main(data: Path = REAL,                # Kaggle folder; the built-in demo data when it is not there
         images: int = 3000,               # rows of styles.csv used
         archs: str = 'tf_efficientnet_lite0',  # comma-separated (the documented command's; resnet18,resnet50 before)
         sizes: str = '128x96',            # (height)x(width), comma-separated (the documented command's size)
         bs: int = 32,                     # batch size, both sides
         batches: int = 6,                 # timed batches per measurement (after one warm-up batch)
         repeats: int = 3,                 # alternating repeats (median reported); rounds, with several variants
         workers: str = '0,1,2',           # DataLoader worker counts tried for the pipeline
         # DataLoader workers of the exported learner's test_dl (decoding beside the model)
         infer_workers: int = 0,
         # also the exported learner in this many processes (`predict --processes`); 1: not
         infer_processes: int = 2,
         # fp32 | bf16 (bf16 with channels_last on both sides, as --precision bf16 trains)
         precision: str = 'fp32',
         channels_last: str = 'yes',       # no | yes | both: fp32 in channels_last, both sides (ResNets train in no)
         # torch thread counts to measure each configuration at, e.g. 1,2 ('': torch's)
         threads: str = '',
         out: Path = None,                 # default: bench/results/speed.json (shipping-speed.json with --shipping)
         shipping: bool = False,           # instead: the inference paths a user ships (PyTorch, ONNX Runtime, latency)
         photos: int = 100,                # with --shipping: photos timed one at a time for the latency
         device: str = 'cpu',              # with --shipping: where the PyTorch sides run (cpu, cuda, auto)
         ):
    torch.manual_seed(0)
    results_dir = Path(__file__).parent / 'results'
    if shipping:
        return shipping_grid(data, images, archs, sizes, bs, batches, repeats, infer_processes, photos,
                             out or results_dir / 'shipping-speed.json', device)
    out = out or results_dir / 'speed.json'
    t_start = time.perf_counter()
    layouts = [True] if precision == 'bf16' else dict(no=[False], yes=[True], both=[False, True])[channels_last]
    counts = [int(t) for t in threads.split(',')] if threads else [torch.get_num_threads()]
    record = dict(command=' '.join(['python', *sys.argv]), images=images, bs=bs, batches=batches, repeats=repeats,
                  precision=precision, channels_last=channels_last, threads=counts, infer_workers=infer_workers,
                  infer_processes=infer_processes, results={},
                  machine=machine())
    results = record['results']
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loaded = bench_data(data, images, tmp, record)
        for arch, size in itertools.product(archs.split(','), sizes.split(',')):
            # one variant: its repeats in one measurement. Several (layouts x threads): `repeats` rounds, each measuring
            # every variant once, who trains first rotating by round, so that the machine's swings hit them alike and
            # the variants compare with each other too
            variants = list(itertools.product(layouts, counts))
            rounds, per_round = (repeats, 1) if len(variants) > 1 else (1, repeats)
            runs = {v: [] for v in variants}
            for i, (cl, t) in itertools.product(range(rounds), variants):
                torch.set_num_threads(t)
                key = (f"{arch} {size}" + (f" {t} thr" if threads else '')
                       + (' cl' if cl and precision != 'bf16' else ''))
                run_tmp = tmp / f"{key.replace(' ', '-')}-{i}"; run_tmp.mkdir()
                runs[cl, t].append(measure(loaded, arch, parse_size(size), bs, batches, per_round,
                                           [int(w) for w in workers.split(',')], precision, run_tmp, infer_workers,
                                           infer_processes, cl, first=i))
                got = runs[cl, t]
                results[key] = got[0] if len(got) == 1 else summarize(
                    {k: [x for g in got for x in g['all'].get(k, [])] for k in got[0]['all']},
                    {w: [x for g in got for x in g['pipeline_all'][w]] for w in got[0]['pipeline_all']},
                    threads=t, channels_last=cl, rounds=len(got))
                record['wall_s'] = round(time.perf_counter() - t_start, 1)
                # after every measurement: a stopped grid keeps its results
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(record, indent=1, default=str))
                if i < rounds - 1: continue
                r = results[key]
                print(f"{key}: train {r['train_ours']:.1f} vs bare {r['train_bare']:.1f} img/s "
                      f"(x{r['train_ratio']:.2f}, paired x{r['train_ratio_paired']:.2f}), "
                      f"bare fused {r['train_fused']:.1f} (x{r['fused_ratio']:.2f}, paired "
                      f"x{r['fused_ratio_paired']:.2f}); inference {r['infer_ours']:.1f} vs {r['infer_bare']:.1f} "
                      f"(x{r['infer_ratio']:.2f}; C-decoding ceiling x{r['floor_ratio']:.2f}"
                      + (f"; {infer_processes} processes {r['infer_procs']:.1f}, x{r['procs_ratio']:.2f}"
                         if r['procs_ratio'] else '')
                      + "); pipeline " +
                      ', '.join(f"{w} workers {p:.0f} img/s (x{r['pipeline_ratio'][w]:.1f})"
                                for w, p in r['pipeline'].items()),
                      flush=True)
    wall = time.perf_counter() - t_start
    print(f"\n| model, input | train ours / bare img/s | ratio (>= 0.95), paired | bare, fused AdamW img/s "
          f"| ours / it, paired | inference ours / bare img/s | ratio (>= 0.9) "
          f"| ceiling: C decoding + bare / bare | {infer_processes} processes img/s | ratio (>= 0.9) "
          "| pipeline img/s (workers) | pipeline / train (>= 3) "
          "|\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for k, r in results.items():
        best = max(r['pipeline'], key=r['pipeline'].get)
        print(f"| {k} | {r['train_ours']:.1f} / {r['train_bare']:.1f} | "
              f"{r['train_ratio']:.2f}, {r['train_ratio_paired']:.2f} | {r['train_fused']:.1f} | "
              f"{r['fused_ratio']:.2f}, {r['fused_ratio_paired']:.2f} | {r['infer_ours']:.1f} / {r['infer_bare']:.1f} "
              f"| {r['infer_ratio']:.2f} | {r['floor_ratio']:.2f} | "
              + (f"{r['infer_procs']:.1f} | {r['procs_ratio']:.2f} | " if r['procs_ratio'] else "- | - | ")
              + ', '.join(f"{p:.0f} ({w})" for w, p in r['pipeline'].items()) + f" | {r['pipeline_ratio'][best]:.1f} "
              f"({best}) |")
    print(f"\nwall {wall / 60:.1f} min; {record['machine']}")
