"""Several processes for one stage: featurize, pretrain, train and evaluate under `torchrun`.

A stage started with ``runtime.processes: N`` (N > 1, or ``auto`` with several GPUs) starts
itself again under torchrun (`launch`), so `dvc repro` runs it and `dvc.lock` records what it
wrote; a user never types torchrun. Each process then joins the group (`init_distributed`): NCCL
on GPUs, one per GPU, gloo on CPUs. Train splits each global batch across ranks
(DistributedDataParallel), so N processes see the same data per step as one process with the same
`train.batch_size`; featurize, pretrain and evaluate split their documents or steps. Only rank 0
writes outputs.

Past one machine, start the stage on every node yourself with torchrun's rendezvous (see
docs/USING.md, "More than one process"):

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \
        -m stages.train <paths>
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bertclf.errors import BertclfError


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

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (a picklable object: a path, a small dict)."""
        if self.world == 1:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def device(self, device: torch.device) -> torch.device:
        """This rank's GPU when `device` is CUDA and there are several processes."""
        if device.type == "cuda" and self.world > 1:
            return torch.device("cuda", self.local_rank)
        return device


SINGLE = Dist()  # one process


def is_main_process() -> bool:
    """Rank 0 of a torchrun job, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed() -> Dist:
    """Join the process group torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def process_count(processes: int | str) -> int:
    """`runtime.processes` as a number: `auto` is one per visible GPU (1 without a GPU)."""
    if processes == "auto":
        return max(1, torch.cuda.device_count())
    return int(processes)


def launch(processes: int | str, module: str) -> int | None:
    """Start stage `module` again under torchrun with this process's arguments when `processes` asks
    for more than one and this is not already one of torchrun's workers; returns torchrun's exit
    code (the caller exits with it), or None: go on in this process."""
    n = process_count(processes)
    if n <= 1 or "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ:
        return None
    if torch.cuda.is_available() and n > torch.cuda.device_count():
        raise BertclfError(f"runtime.processes={processes}: only {torch.cuda.device_count()} GPU(s) are "
                           "visible; lower runtime.processes or set it to auto")
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in list(logging.root.manager.loggerDict):  # torchrun's own lines: the workers say what failed
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # torchrun's own default (and its warning) on CPUs: the cores shared among the processes
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    with tempfile.TemporaryDirectory(prefix="bertclf-torchrun-") as logs:
        # rank 0 talks (progress, its error); the others' output goes to files, read on failure
        quiet = ["--redirects", ",".join(f"{rank}:3" for rank in range(1, n))]
        try:
            run(parse_args(["--standalone", "--nproc-per-node", str(n), "--log-dir", logs, *quiet,
                            "-m", module, *sys.argv[1:]]))
        except ChildFailedError as exc:
            failed = {f.local_rank: f.exitcode for f in exc.failures.values()}
            if 0 not in failed:  # only another rank failed: say what it said
                for rank in sorted(failed):
                    for path in Path(logs).glob(f"**/attempt_*/{rank}/stderr.log"):
                        said = path.read_text(errors="replace").splitlines()
                        print(*[line for line in said if line.startswith("error:")][-1:], file=sys.stderr)
            return next((c for c in failed.values() if c > 0), 1)
    return 0
