"""`train` under `torchrun`: one process per device, gradients averaged by DistributedDataParallel.

    torchrun --standalone --nproc_per_node N -m stages.train <paths>

Each global batch is split across ranks, so N processes see the same data per step as one process
with the same `train.batch_size`; metrics are reduced across ranks and only rank 0 writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over ranks in place (a no-op in a single process)."""
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed() -> Dist:
    """Join the process group torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))
