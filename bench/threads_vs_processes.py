"""Benchmark: one process with N torch threads against N processes with one thread each, the same bare forward.

Why `predict --processes` (`inference.ProcessPredictor`) exists: on a small CPU a small model's forward does not keep N
threads busy, while N separate processes share nothing. Each process runs `--batches` forwards of a random batch (resnet
at `--size`, from scratch) after two warm-up ones, all starting together; the rate is all images over the slowest
process's time. Alternating, median of `--repeats`.

torchvision models only (`--arch resnet18`, `resnet50`): it reproduces the measurement of 2026-11-30 behind
`predict --processes` (BENCHMARKS.md, "Threads against processes"; bench/HISTORY.md).  For the documented command's
`tf_efficientnet_lite0`, `bench/speed.py` times the exported learner in one process and in worker processes.

    .venv/bin/python bench/threads_vs_processes.py                  # resnet18, 80x60, batch 32, 2 cores
"""
from __future__ import annotations

import multiprocessing as mp, os, statistics, time

import torch, torchvision
from fastcore.script import call_parse


def forwards(arch: str, size: tuple, bs: int, threads: int, batches: int, results, start):
    torch.set_num_threads(threads)
    model, x = getattr(torchvision.models, arch)(num_classes=20).eval(), torch.randn(bs, 3, *size)
    with torch.inference_mode():
        model(x); model(x)
        start.wait()
        t0 = time.perf_counter()
        for _ in range(batches): model(x)
        results.put((batches * bs, time.perf_counter() - t0))


def rate(procs: int, threads: int, batches: int, arch: str, size: tuple, bs: int) -> float:
    ctx = mp.get_context('spawn')
    results, start = ctx.Queue(), ctx.Barrier(procs)
    ps = [ctx.Process(target=forwards, args=(arch, size, bs, threads, batches, results, start)) for _ in range(procs)]
    for p in ps: p.start()
    done = [results.get() for _ in ps]
    for p in ps: p.join()
    return sum(n for n, _ in done) / max(t for _, t in done)


@call_parse
def main(arch: str = 'resnet18', size: str = '80x60', bs: int = 32,
         cores: int = os.cpu_count(),  # N: threads of the one process, or processes of one thread
         batches: int = 20,            # timed forwards of the one process; each of the N processes runs batches / N
         repeats: int = 4):
    hw = tuple(int(v) for v in size.split('x'))
    r = {f'1 process x {cores} threads': [], f'{cores} processes x 1 thread': []}
    for _ in range(repeats):
        r[f'1 process x {cores} threads'].append(rate(1, cores, batches, arch, hw, bs))
        r[f'{cores} processes x 1 thread'].append(rate(cores, 1, max(1, batches // cores), arch, hw, bs))
    for k, v in r.items(): print(f'{k}: {statistics.median(v):.1f} img/s (median of {[round(x, 1) for x in v]})')
