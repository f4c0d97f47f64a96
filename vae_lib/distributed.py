"""Data-parallel training with ``torchrun``: process group set-up and a sharded in-memory loader.

``torchrun --nproc_per_node=N -m vae_lib train ...`` starts N processes with ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment; :func:`setup` joins them into one process
group (nccl on GPUs, gloo on CPUs) and the Trainer then runs ``DistributedDataParallel``.

The global batch stays ``TrainConfig.batch_size`` whatever the world size: each rank computes
``batch_size / N`` of every batch and DDP averages the gradients, so a step means the same with 1
or N processes (same learning rate, same beta schedule, same checkpoint counters) and a run saved
with one world size resumes with another. Raise ``train.batch_size`` to give each GPU more work.
"""
from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vae_lib.runtime import pick_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and figures."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment; a no-op otherwise.

    On CUDA each process takes GPU ``LOCAL_RANK`` and the nccl backend; elsewhere gloo. Returns the
    ``DistInfo`` of this process (rank 0 of 1 outside torchrun).
    """
    if not launched_by_torchrun():
        return DistInfo(device=pick_device(device))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    return DistInfo(rank, world_size, local_rank, device)


def cleanup() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over the ranks (in place); the tensor itself without a process group."""
    rank, world_size = rank_and_world_size()
    if world_size > 1:
        dist.all_reduce(tensor)
        tensor /= world_size
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over the ranks (in place); the tensor itself without a process group."""
    if rank_and_world_size()[1] > 1:
        dist.all_reduce(tensor)
    return tensor


class ShardedLoader:
    """Rank ``rank``'s share of every batch of an ``InMemoryLoader`` (or anything with its ``order``,
    ``tensors``, ``batch_size``, ``drop_last``, ``epoch`` and state dict).

    All ranks draw the same permutation (the loader's, seeded by (seed, epoch)); global batch b is
    ``order[b*B:(b+1)*B]`` and rank r takes its positions r, r+N, r+2N, ... So each sample is seen
    once per epoch across ranks, every rank runs the same number of steps (DDP needs that), and the
    global batch is the one a single process would see. A last batch with fewer than N samples
    would leave a rank empty: it is left out (at most N-1 samples sit out an epoch).
    """

    def __init__(self, loader, rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
        if loader.batch_size < world_size:
            raise ValueError(f"batch_size {loader.batch_size} is smaller than the world size {world_size}: "
                             "every rank needs at least one sample of each batch")
        self.loader, self.rank, self.world_size = loader, rank, world_size

    @property
    def epoch(self) -> int:
        return self.loader.epoch

    def __len__(self) -> int:
        full, rest = divmod(self.loader.num_samples, self.loader.batch_size)
        return full + (not self.loader.drop_last and rest >= self.world_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        loader, size = self.loader, self.loader.batch_size
        order = loader.order().to(loader.device)
        for b in range(len(self)):
            index = order[b * size:(b + 1) * size][self.rank::self.world_size]
            yield tuple(t.index_select(0, index) for t in loader.tensors)
        loader.epoch += 1

    def state_dict(self) -> dict:
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state)

    def __repr__(self) -> str:
        return f"ShardedLoader(rank={self.rank}, world_size={self.world_size}, loader={self.loader!r})"


def shard(loader, rank: int | None = None, world_size: int | None = None):
    """``loader`` as this rank's ``ShardedLoader`` under a process group of 2+ ranks, else unchanged.

    Loaders other than in-memory ones (no ``order``) are returned as they are: shard those yourself
    (e.g. ``torch.utils.data.DistributedSampler``).
    """
    if rank is None or world_size is None:
        rank, world_size = rank_and_world_size()
    if world_size == 1 or isinstance(loader, ShardedLoader) or not hasattr(loader, "order"):
        return loader
    return ShardedLoader(loader, rank, world_size)
