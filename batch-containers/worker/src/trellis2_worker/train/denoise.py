"""The model side of a run: the device, gradient checkpointing, and the flow-matching loss of one micro-batch."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from trellis2_worker.errors import WorkerError
from trellis2_worker.train.data import TrainObject
from trellis2_worker.train.recipe import Stage, noisy, velocity


def pick_device(name: str | None) -> torch.device:
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise WorkerError("--device cuda was asked for but no CUDA device is available")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def set_gradient_checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Recompute each transformer block in backward (the flows' own per-block `use_checkpoint`): activation memory
    for compute, with no numerical effect (docs/training.md#memory)."""
    if not hasattr(model, "use_checkpoint"):
        raise WorkerError(f"{type(model).__name__} has no gradient checkpointing switch")
    model.use_checkpoint = on


class Denoise:
    """Builds the model input of one (micro-)batch and computes the flow-matching loss on it."""

    def __init__(self, stage: Stage, model, device: torch.device, autocast: bool):
        self.stage, self.model, self.device, self.autocast = stage, model, device, autocast

    def loss(self, objs: list[TrainObject], t: torch.Tensor, eps: list[torch.Tensor], cond: torch.Tensor,
             weights: list[float] | None = None) -> torch.Tensor:
        """The mean squared error of the micro-batch; with `weights`, the sum over its objects of each one's summed
        squared error times its weight (data-parallel ranks, parallel.py)."""
        dev = self.device
        kwargs = {}
        if not self.stage.sparse:
            x0 = torch.stack([o.x0 for o in objs]).to(dev)
            e = torch.stack(eps).to(dev)
            t_rows = t.to(dev)
            x_in = noisy(x0, t_rows, e)
            target = velocity(x0, e)
        else:
            from trellis2_worker.models import SparseTensor

            x0 = torch.cat([o.x0 for o in objs]).to(dev)
            e = torch.cat(eps).to(dev)
            t_rows = torch.cat([t[i].expand(o.tokens) for i, o in enumerate(objs)]).to(dev)
            coords = torch.cat([torch.cat([torch.full((o.tokens, 1), i, dtype=torch.int32), o.coords], dim=1)
                                for i, o in enumerate(objs)]).to(dev)
            target = velocity(x0, e)
            x_in = SparseTensor(noisy(x0, t_rows, e), coords)
            if self.stage.uses_shape_concat:
                kwargs["concat_cond"] = SparseTensor(torch.cat([o.concat for o in objs]).to(dev), coords)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            pred = self.model(x_in, t.to(dev) * 1000.0, cond.to(dev), **kwargs)
        pred = pred.feats if self.stage.sparse else pred
        if weights is None:
            return F.mse_loss(pred.float(), target)
        rows = [o.tokens for o in objs] if self.stage.sparse else [1] * len(objs)
        sums = torch.stack([part.sum() for part in torch.split((pred.float() - target).square(), rows)])
        return (sums * torch.tensor(weights, dtype=sums.dtype, device=sums.device)).sum()
