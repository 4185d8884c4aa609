"""What one training run is asked to do (`TrainRequest`), where its files go, and the two ways it stops early."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trellis2_worker import DEFAULT_BASE
from trellis2_worker.errors import InputError, WorkerError
from trellis2_worker.evaluate.metrics import DEFAULT_SAMPLES
from trellis2_worker.train.recipe import BATCH_SIZE, RESOLUTIONS, STAGES, Stage
from trellis2_worker.train.split import HELD_OUT_FRACTION, MAX_HELD_OUT_FRACTION

EVAL_OBJECTS = 4  # per evaluated set: generations on CPU take minutes per object, on a GPU tens of seconds


class TrainingDiverged(InputError):
    """The loss became NaN/inf: rerunning the same request would diverge the same way, so it is not retried."""


class TrainingInterrupted(WorkerError):
    """SIGTERM (Batch job stop, spot reclaim): the checkpoint is saved and a rerun of the same command resumes."""

    exit_code = 143


@dataclass
class TrainRequest:
    dataset: str
    denoiser: str
    resolution: int
    rank: int
    learning_rate: float
    training_steps: int
    output: str
    base: str = DEFAULT_BASE
    batch_size: int = BATCH_SIZE
    max_tokens_per_micro_batch: int | None = None
    checkpoint_every: int = 200
    seed: int = 0
    device: str | None = None
    gradient_checkpointing: bool = True
    eval_objects: int = EVAL_OBJECTS  # objects per evaluated set (training, held-out); 0: no evaluation
    eval_samples: int = DEFAULT_SAMPLES  # surface samples per mesh for the geometry stage's Chamfer and F-score
    held_out_fraction: float = HELD_OUT_FRACTION
    ema_decay: float = 0.0  # 0: no EMA (ema.py says why it is off by default and what the decay means)
    condition_cache_gb: float = 4.0
    progress: bool = True
    hf_token: str | None = field(default=None, repr=False)

    def check(self) -> Stage:
        if self.denoiser not in STAGES:
            raise InputError(f"unknown denoiser {self.denoiser!r}; expected one of {sorted(STAGES)}")
        if self.resolution not in RESOLUTIONS:
            raise InputError(f"resolution must be one of {list(RESOLUTIONS)}, got {self.resolution}")
        for name in ("rank", "training_steps", "batch_size", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise InputError("learning-rate must be a positive number")
        if int(self.eval_objects) < 0:
            raise InputError("eval-objects must be 0 (no evaluation) or more")
        if int(self.eval_samples) < 1:
            raise InputError("eval-samples must be at least 1")
        if not 0 <= self.held_out_fraction <= MAX_HELD_OUT_FRACTION:  # also refuses NaN
            raise InputError(f"held-out-fraction must be from 0 to {MAX_HELD_OUT_FRACTION}, "
                             f"got {self.held_out_fraction}")
        if not 0 <= self.ema_decay < 1:
            raise InputError(f"ema-decay must be 0 (off) or below 1, got {self.ema_decay}")
        if not self.output.endswith(".safetensors"):
            raise InputError(f"--output must name a .safetensors file, got {self.output}")
        return STAGES[self.denoiser]


def sibling(output: str, suffix: str) -> str:
    """`.../texture.safetensors` → `.../texture<suffix>` (the record, log, curve and checkpoint live beside it)."""
    return output[: -len(".safetensors")] + suffix
