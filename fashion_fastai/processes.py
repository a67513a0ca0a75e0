"""Batch prediction shared among worker processes, one torch thread each.

On a small CPU, torch's threads scale poorly inside one forward of a small model, while separate processes do not share
anything (two one-thread processes outran one two-thread process on 2 cores: `bench/threads_vs_processes.py`,
BENCHMARKS.md). Each process also
decodes its own images, so one process's decoding overlaps the other's forward instead of adding to it.

Processes are started with `spawn` (a child forked from a process that has already run OpenMP code can hang) and each
loads the model once, so this pays off for many files, not for a handful: starting them takes seconds. As with any
`spawn` pool, a script that uses it must keep its top-level work under `if __name__ == '__main__':`.
"""
from __future__ import annotations

import concurrent.futures as cf, multiprocessing as mp, warnings
from pathlib import Path

import torch

from .artifacts import Predictor

_predictor = None  # the model of this worker process, loaded once by `_load`


def _load(path: str, form: str):
    global _predictor
    torch.set_num_threads(1)
    from .predict import load_model_file
    with warnings.catch_warnings():  # the parent loaded this same file first, and warned there if it had to
        warnings.simplefilter('ignore')
        _predictor = load_model_file(Path(path), form)


def _head_probs(paths: list, bs: int) -> dict:
    return _predictor.head_probs(paths, bs, num_workers=0)  # each process decodes its own images: that is the point


class ProcessPredictor(Predictor):
    """The interface of `WeightsOnlyModel` and `PickledLearner` (`artifacts.Predictor`), with the predictions shared among
    `processes` worker processes in contiguous chunks (results in input order). Use as a context manager, or `close()`."""
    def __init__(self,
                 path: Path,      # a weights-only <stage>.json or an exported <stage>.pkl (see predict.find_model)
                 form: str,       # 'weights' or 'pickle'
                 vocabs: dict,    # each head's classes (from the model loaded in the parent, which validated the file)
                 processes: int = 2):
        if processes < 2: raise ValueError(f"processes must be at least 2 for a process pool, got {processes}")
        self.vocabs, self.processes = dict(vocabs), processes
        self.pool = cf.ProcessPoolExecutor(processes, mp_context=mp.get_context('spawn'), initializer=_load,
                                           initargs=(str(path), form))

    def head_probs(self, paths, bs: int = 64, num_workers: int = None) -> dict:
        "`num_workers` is ignored: each process decodes its own chunk."
        paths = [str(p) for p in paths]
        if not paths: return {h: torch.empty(0, len(v)) for h, v in self.vocabs.items()}
        # several chunks per process, so that a slow process does not hold up the end; whole batches, so that each
        # chunk's batches are full
        per = max(bs, len(paths) // (4 * self.processes) // bs * bs)
        chunks = [paths[i:i + per] for i in range(0, len(paths), per)]
        parts = list(self.pool.map(_head_probs, chunks, [bs] * len(chunks)))
        return {h: torch.cat([p[h] for p in parts]) for h in self.vocabs}

    def close(self): self.pool.shutdown()
    def __enter__(self): return self
    def __exit__(self, *exc): self.close()
