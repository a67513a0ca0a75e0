"""Worker processes sharing the predictions (`ProcessPredictor`, `predict --processes N`).

On a small CPU, torch's threads scale poorly inside one forward of a small model, while separate processes do not share
anything (two one-thread processes outran one two-thread process on 2 cores: `bench/threads_vs_processes.py`,
BENCHMARKS.md).  Each process also decodes its own images, so one process's decoding overlaps the other's forward
instead of adding to it.  Processes are started with `spawn` (a child forked from a process that has already run OpenMP
code can hang) and each loads the model once, so this pays off for many files, not for a handful: starting them takes
seconds.  As with any `spawn` pool, a script that uses it must keep its top-level work under
`if __name__ == '__main__':`.  The pool exists to share a CPU's cores, so its workers predict on the CPU unless CUDA is
asked for by name (`cuda`: each worker then holds its own copy of the model on the GPU)."""
from __future__ import annotations

import concurrent.futures as cf, multiprocessing as mp, warnings
from pathlib import Path

import torch

from fashion_fastai.inference.predictors import Predictor, resolve_device

_worker = None  # the model of this worker process, loaded once by `_load_worker`


def _load_worker(load, path: str, form: str, device: str, closed_set: bool):
    global _worker
    torch.set_num_threads(1)
    with warnings.catch_warnings():  # the parent loaded this same file first, and warned there if it had to
        warnings.simplefilter('ignore')
        _worker = load(Path(path), form, device, threads=1, closed_set=closed_set)


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
                 # the model loaded in the parent, which validated the file: its vocabs and answering
                 parent: Predictor,
                 processes: int = 2,
                 device='cpu',    # each worker's (`worker_device`)
                 load=None):      # what loads the model in a worker (`load.load_model_file`, by reference)
        if processes < 2: raise ValueError(f"processes must be at least 2 for a process pool, got {processes}")
        self.vocabs, self.processes, self.device = dict(parent.vocabs), processes, resolve_device(device)
        self.answering, self.scorer, self.closed_set = parent.answering, parent.scorer, parent.closed_set
        self.parent = parent  # joins what the workers give (`answered`), as the workers themselves would
        self.pool = cf.ProcessPoolExecutor(processes, mp_context=mp.get_context('spawn'), initializer=_load_worker,
                                           initargs=(load, str(path), form, str(self.device), parent.closed_set))

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
        return {h: torch.cat([p[h] for p in parts]) for h in parts[0]}  # a joined answer's heads are its members'

    def answer_probs(self, paths, bs: int = 64, num_workers: int = None) -> tuple[dict, list | None]:
        "Each worker answers its chunk, the frozen ImageNet network's pass included."
        paths = [str(p) for p in paths]
        if not paths: return {h: torch.empty(0, len(v)) for h, v in self.vocabs.items()}, None
        parts = self._map(_worker_answer_probs, paths, bs)
        routed = None if parts[0][1] is None else [r for _, rs in parts for r in rs]
        return {h: torch.cat([p[h] for p, _ in parts]) for h in self.vocabs}, routed

    @property
    def zero_shot(self) -> bool: return self.parent.zero_shot

    @property
    def zero_shot_classes(self) -> tuple: return self.parent.zero_shot_classes

    @property
    def review_prob(self) -> float: return self.parent.review_prob

    def answered(self, heads: dict, files) -> tuple[dict, list | None]: return self.parent.answered(heads, files)

    def close(self): self.pool.shutdown()
