"""Data-parallel training: one process per GPU of the instance (or N CPU processes over gloo), started by the worker.

`train_data_parallel(req, world_size)` spawns the ranks (torch.multiprocessing) and returns rank 0's report. Every
rank draws each step exactly as one process would (the same objects, views, times, noise and dropped conditions:
they come from the seed and the step), trains on its token-balanced share of the batch's objects, and the LoRA
gradients are summed over the ranks. Each object's loss is weighted as the one-process plan weighs it (the mean
squared error of its micro-batch, divided by the number of micro-batches), so the summed gradient is the
one-process gradient up to float rounding, and the global batch, the adapter, checkpoints and metrics do not change
with the rank count. Every rank then clips and steps identically; rank 0 alone writes checkpoints and outputs and
evaluates. A stop (SIGTERM to the worker, forwarded to the ranks) is agreed at the end of a step, so all ranks stop
at the same one; a rank that fails ends the others.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from trellis2_worker.errors import InputError, WorkerError, one_line
from trellis2_worker.train.batching import plan_micro_batches

BACKENDS = ("gloo", "nccl")


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run."""

    rank: int
    world_size: int

    def plan(self, batch, groups: list[list[int]], budget: int) -> tuple[list[list[int]], list[float]]:
        """This rank's micro-batches (positions into `batch`) and every object's loss weight, from the one-process
        plan `groups`: weight 1 / (micro-batches · elements of its micro-batch), which makes the weighted sums of
        squared errors over all ranks equal the one-process loss."""
        weights = [0.0] * len(batch)
        for group in groups:
            elements = sum(batch[i].x0.numel() for i in group)
            for i in group:
                weights[i] = 1.0 / (len(groups) * elements)
        mine = _shares([o.tokens for o in batch], self.world_size)[self.rank]
        local = plan_micro_batches([batch[i].tokens for i in mine], budget)
        return [[mine[j] for j in g] for g in local], weights

    def reduce(self, params: list[torch.nn.Parameter], loss: float, stop: bool) -> tuple[float, bool]:
        """Sums the gradients (a rank with no object this step adds zeros), the loss and the stop requests."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        for p, g in zip(params, torch.split(flat, [q.numel() for q in params])):
            p.grad = g.view_as(p).clone()
        stats = torch.tensor([loss, float(stop)], dtype=torch.float64, device=flat.device)
        dist.all_reduce(stats)
        return float(stats[0]), bool(stats[1] > 0)


def _shares(tokens: list[int], world_size: int) -> list[list[int]]:
    """Positions split into `world_size` shares with their tokens as even as a longest-first greedy makes them."""
    shares: list[list[int]] = [[] for _ in range(world_size)]
    loads = [0] * world_size
    for i in sorted(range(len(tokens)), key=lambda i: (-tokens[i], i)):
        r = min(range(world_size), key=lambda k: (loads[k], k))
        shares[r].append(i)
        loads[r] += tokens[i]
    return [sorted(s) for s in shares]


def current_ranks() -> Ranks | None:
    """The data-parallel run this process is a rank of, or None for a one-process run."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Ranks(dist.get_rank(), dist.get_world_size())
    return None


def resolve_world_size(world_size: int | None, device: str | None) -> int:
    """`--world-size`, or by default every visible GPU (one process on CPU)."""
    if world_size is not None:
        if world_size < 1:
            raise InputError(f"--world-size must be at least 1, got {world_size}")
        if (device or "").startswith("cuda") or (device is None and torch.cuda.is_available()):
            if world_size > torch.cuda.device_count():
                raise InputError(f"--world-size {world_size} asks for more GPUs than the "
                                 f"{torch.cuda.device_count()} visible")
        return world_size
    if device not in (None, "cuda") or not torch.cuda.is_available():
        return 1
    return max(1, torch.cuda.device_count())


def train_data_parallel(req, world_size: int, backend: str | None = None) -> dict:
    """`train(req)` over `world_size` ranks; returns rank 0's report or raises the error a rank stopped with."""
    import torch.multiprocessing as mp

    from trellis2_worker import storage

    if backend is not None and backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend}")
    with tempfile.TemporaryDirectory(prefix="trellis2-ranks-") as tmp:
        # fetched once for all ranks (the record does not name the dataset's location)
        req = dataclasses.replace(req, dataset=str(storage.open_input(req.dataset, Path(tmp) / "in")))
        ctx = mp.start_processes(_rank_main, args=(req, world_size, backend, _free_port(), tmp),
                                 nprocs=world_size, join=False, start_method="spawn")

        def forward(signum, frame):  # Batch stops the worker; the ranks save and stop at the same step
            for p in ctx.processes:
                if p.is_alive():
                    os.kill(p.pid, signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            while not ctx.join():
                pass
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            pass  # the ranks' own outcomes say what happened
        finally:
            signal.signal(signal.SIGTERM, previous)
        outcomes = {}
        for r in range(world_size):
            path = Path(tmp) / f"rank{r}.pickle"
            if path.is_file():
                outcomes[r] = pickle.loads(path.read_bytes())  # written by our own ranks just now
    if 0 in outcomes and outcomes[0][0] == "ok":
        return outcomes[0][1]
    errors = [outcomes[r][1] for r in sorted(outcomes) if outcomes[r][0] == "error"]
    if errors:
        raise errors[0]
    raise WorkerError(f"the data-parallel training ended without a result ({world_size} ranks)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, req, world_size: int, backend: str | None, port: int, tmp: str) -> None:
    from trellis2_worker.train.trainer import train

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = (req.device or "").startswith("cuda") or (req.device is None and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    else:
        device = "cpu"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))  # the ranks share the cores
    req = dataclasses.replace(req, device=device, progress=req.progress and rank == 0)
    code = 0
    dist.init_process_group(backend or ("nccl" if cuda else "gloo"), rank=rank, world_size=world_size)
    try:
        outcome = ("ok", train(req))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it with its exit code
        code = getattr(exc, "exit_code", 1)
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - an exception that does not pickle still has its message
            exc = WorkerError(one_line(exc))
        outcome = ("error", exc)
    finally:
        dist.destroy_process_group()
    (Path(tmp) / f"rank{rank}.pickle").write_bytes(pickle.dumps(outcome))
    if code:
        raise SystemExit(code)  # a failed rank ends the others (they would wait for it at the next step)
