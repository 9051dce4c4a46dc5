"""Data-parallel training over several processes: torch DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m stemforge train --ddp ...`` starts N copies of the trainer. Each reads its place
from the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``),
joins the process group (gloo on the CPU; NCCL on CUDA, one GPU per process: ``cuda:LOCAL_RANK``) and trains a
``DistributedDataParallel`` copy of the model, whose gradients are averaged over the processes in each backward
pass. The training loop (``stemforge.train.loop``) asks a ``Group`` for the few things that differ:

- the data: ``--batch-size`` is the global batch; rank r reads the r-th contiguous share of each step's examples
  (``stemforge.data.training.StepIndices``), so the processes together see exactly what one process would;
- the run folder: rank 0 alone writes logs, checkpoints, the state and ``config.json``, validates and draws the
  progress bar;
- the random state: every rank's RNG state is gathered into the one ``state.safetensors``, so ``--resume`` at the
  same world size continues bit for bit;
- stopping: a stop signal (or a time limit) seen by any rank stops every rank after the same step.

``SINGLE`` is the group of a run without ``--ddp``: every method is then a no-op, and the loop runs as it always did.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch

from stemforge.errors import StemforgeError

#: The variables torchrun sets in each process it starts.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long a rank waits for the others in one collective (rank 0 validates while the others wait).
TIMEOUT = datetime.timedelta(hours=2)


@dataclasses.dataclass(frozen=True)
class Group:
    """This process's place among the processes that train one run.

    Attributes:
        rank: 0 .. world_size - 1; rank 0 writes the run folder.
        world_size: processes sharing each global batch (1: no distribution).
        local_rank: rank on this machine (the CUDA device index).
        backend: ``"gloo"``, ``"nccl"``, or ``""`` for a single process (no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return bool(self.backend)

    def device(self, device: str) -> torch.device:
        """The torch device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run, else ``device`` itself.

        Args:
            device: the run's ``--device`` (``cpu``, ``cuda``, ``cuda:1``).

        Returns:
            The device this process trains on.
        """
        if self.distributed and device.startswith("cuda"):
            return torch.device("cuda", self.local_rank)
        return torch.device(device)

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the loop calls: ``model`` in DistributedDataParallel, or ``model`` itself for one process.

        The wrapper broadcasts rank 0's weights and buffers and averages the gradients in each backward pass;
        ``model`` stays the module the loop saves, validates and averages (EMA).

        Args:
            model: the model on ``device``, trainable parameters set.
            device: this rank's device.

        Returns:
            The module to call for training forward passes.
        """
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)

    def max(self, values: list[int]) -> list[int]:
        """The element-wise maximum of ``values`` over all ranks (every rank must call it at the same point).

        Args:
            values: small integers (a signal number, a flag).

        Returns:
            The same list on every rank; ``values`` unchanged for one process.
        """
        if not self.distributed:
            return list(values)
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.int64, device=self._collective_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [int(v) for v in tensor.cpu()]

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over all ranks (a collective), e.g. the loss of the global batch.

        Args:
            value: a 0-d tensor on this rank's device.

        Returns:
            The mean as a float, the same on every rank; ``float(value)`` for one process.
        """
        if not self.distributed:
            return float(value)
        import torch.distributed as dist

        total = value.detach().float().reshape(1).clone()
        dist.all_reduce(total)
        return float(total) / self.world_size

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank (a collective: all ranks call it together).

        Values travel between our own processes only (``all_gather_object``), never through a file.

        Args:
            value: a picklable object (an RNG state).

        Returns:
            ``[value of rank 0, value of rank 1, ...]``; ``[value]`` for one process.
        """
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def close(self, clean: bool = True) -> None:
        """Leave the process group (after the last collective); nothing for one process.

        Args:
            clean: every rank finished normally: wait for all of them before tearing down (a rank leaving while its
                peer's gloo connection was still open aborted the peer once in CI, "terminate called without an
                active exception"). After an error on one rank, leave at once so the others fail fast, not hang.
        """
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                if clean:
                    dist.barrier()
                dist.destroy_process_group()

    def _collective_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


SINGLE = Group()


def _env_int(name: str) -> int:
    text = os.environ[name]
    try:
        return int(text)
    except ValueError:
        raise StemforgeError(f"{name}={text!r} is not a number; --ddp runs under torchrun, which sets it") from None


def join(device: str) -> Group:
    """Join the process group torchrun set up for this process.

    Args:
        device: the run's ``--device``: ``cpu`` trains over gloo, ``cuda`` over NCCL on ``cuda:LOCAL_RANK``.

    Returns:
        This process's group (``world_size`` may be 1: a one-process torchrun is still a DDP run).

    Raises:
        StemforgeError: not started by torchrun (says how to launch), or a rank without a CUDA device (one line).
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise StemforgeError(f"--ddp runs one process per device under torchrun, which sets {', '.join(missing)}: "
                             f"launch it as 'torchrun --nproc_per_node=N -m stemforge train --ddp ...'")
    import torch.distributed as dist

    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    cuda = device.startswith("cuda")
    if cuda:
        if not torch.cuda.is_available() or local >= torch.cuda.device_count():
            raise StemforgeError(f"rank {rank} needs CUDA device {local}, but this machine has "
                                 f"{torch.cuda.device_count() if torch.cuda.is_available() else 0}; start at most "
                                 "that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    group = Group(rank=rank, world_size=world, local_rank=local, backend=backend)
    if dist.get_rank() != rank or dist.get_world_size() != world:
        raise StemforgeError(f"the process group ({dist.get_rank()} of {dist.get_world_size()}) disagrees with "
                             f"torchrun's RANK {rank} / WORLD_SIZE {world}")
    return group
