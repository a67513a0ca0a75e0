"""Training one run on several processes: GPUs (nccl) or CPU processes (gloo), with fastai's `distrib_ctx` (Accelerate).

Launch: `accelerate launch --multi_gpu --num_processes N -m fashion_fastai.train ...` on GPUs, or
`torchrun --standalone --nproc_per_node N -m fashion_fastai.train ...` anywhere (Accelerate's own launcher starts a
single process on a CPU). Every process runs the same program on the same data; `DistributedDL` gives each its share of
every epoch and DDP keeps their weights identical. Only the main process (rank 0) writes the run folder and evaluates,
once, on the whole test split: the other processes wait for it at a barrier.

`--bs` stays the batch the optimiser sees: each of N processes takes bs / N images per step, so a run on N processes
follows the same schedule (steps, learning rate) as a run on one, and its results match within noise.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.distributed as dist
from fastai.distributed import rank_distrib, num_distrib, distrib_barrier

from fashion_fastai.core.compat import patch_distributed_broadcast, single_process_gather
from fashion_fastai.core.errors import OptionError

__all__ = ['num_distrib', 'is_distributed', 'is_main', 'init_distributed', 'from_main', 'barrier', 'training_ctx',
           'per_process_bs', 'alone',
           'say', 'on_main']


def is_distributed() -> bool: return num_distrib() > 1
def is_main() -> bool: return rank_distrib() == 0


def init_distributed() -> str | None:
    """Join the launcher's process group now (gloo on a CPU, nccl on GPUs), so that the processes can agree on the run
    folder before anything is written; returns the backend, or None for a single process."""
    if not is_distributed(): return None
    patch_distributed_broadcast()
    if not dist.is_initialized():
        from accelerate import PartialState  # the state `distrib_ctx`'s Accelerator then reuses
        PartialState(cpu=not torch.cuda.is_available())
    return dist.get_backend()


def from_main(value):
    "The main process's `value` on every process (a run folder's default name, an `lr_find` suggestion)."
    if not is_distributed(): return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    "Every process waits here until all have arrived (no-op for a single process)."
    distrib_barrier()


def per_process_bs(bs: int) -> int:
    "Each process's share of the optimiser's batch of `bs` images."
    n = num_distrib() or 1
    if bs % n:
        raise OptionError(f"--bs {bs} cannot be split evenly over {n} processes: give a multiple of {n} "
                          f"(each process takes bs / {n} images per step).")
    return bs // n


def alone():
    "This process works by itself for a while (the main one, evaluating): see `compat.single_process_gather`."
    return single_process_gather() if is_distributed() else nullcontext()


def say(*args) -> None:
    "Print from the main process only."
    if is_main(): print(*args, flush=True)


def on_main(fn, *args, **kwargs):
    """Run `fn` on the main process only, then let every process continue together: the one place where the main
    process writes (the run folder, exports, the report) while the others wait.  Returns `fn`'s result on the main
    process, None on the others."""
    out = fn(*args, **kwargs) if is_main() else None
    barrier()
    return out


def training_ctx(learn):
    "fastai's `distrib_ctx` when launched on several processes (no SyncBatchNorm: gloo has none); else nothing."
    if not is_distributed(): return nullcontext(learn)
    return learn.distrib_ctx(sync_bn=False, cpu=not torch.cuda.is_available())
