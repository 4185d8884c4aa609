"""The TRELLIS.2 flow-matching recipe per stage (docs/training.md): which model, how t is drawn, the noising and the
velocity target, and the reference's optimisation constants."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SIGMA_MIN = 1e-5
# Condition dropout; the null condition is all zeros of the same length (docs/training.md#condition-dropout).
P_UNCOND = 0.1
BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.01
ADAM_EPS = 1e-8
BATCH_SIZE = 8  # objects per optimiser step, the reference's batch_size_per_gpu for SS and SLat 512
# Sparse objects above these token counts are filtered out by the reference datasets (no cropping).
MAX_OBJECT_TOKENS = {512: 8192, 1024: 32768}
SS_TOKENS = 16**3  # the dense SS flow sees every cell of the 16³ latent as a token

# Every nn.Linear inside a transformer block; identical names in the dense and the sparse flows
# (docs/training.md#lora-targets).
TARGET_MODULES = (
    "self_attn.to_qkv",
    "self_attn.to_out",
    "cross_attn.to_q",
    "cross_attn.to_kv",
    "cross_attn.to_out",
    "mlp.mlp.0",
    "mlp.mlp.2",
)
RESOLUTIONS = (512, 1024)


@dataclass(frozen=True)
class Stage:
    denoiser: str
    t_sampling: str  # "logit_normal" or "uniform"
    sparse: bool
    uses_shape_concat: bool

    def model_key(self, resolution: int) -> str:
        if self.denoiser == "sparse_structure":
            return "sparse_structure_flow_model"
        prefix = "shape_slat_flow_model" if self.denoiser == "geometry" else "tex_slat_flow_model"
        return f"{prefix}_{resolution}"

    def image_size(self, resolution: int) -> int:
        # The SS flow is always conditioned at 512; the SLat flows use their own resolution
        # (docs/training.md#image-condition).
        return 512 if self.denoiser == "sparse_structure" else resolution

    def max_object_tokens(self, resolution: int) -> int | None:
        return None if not self.sparse else MAX_OBJECT_TOKENS[resolution]


STAGES = {
    "sparse_structure": Stage("sparse_structure", "logit_normal", sparse=False, uses_shape_concat=False),
    "geometry": Stage("geometry", "uniform", sparse=True, uses_shape_concat=False),
    "texture": Stage("texture", "uniform", sparse=True, uses_shape_concat=True),
}


def sample_t(stage: Stage, n: int, generator: torch.Generator) -> torch.Tensor:
    """One t per object in [0, 1] (t = 1 is pure noise): sigmoid(N(1, 1)) for the SS flow, U(0, 1) for the SLat flows."""
    if stage.t_sampling == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator) * 1.0 + 1.0)
    return torch.rand(n, generator=generator)


def noisy(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_t = (1 − t)·x0 + (σmin + (1 − σmin)·t)·ε, with t broadcast per row (per object or per token)."""
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + (SIGMA_MIN + (1 - SIGMA_MIN) * t) * eps


def velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The flow-matching target v = (1 − σmin)·ε − x0."""
    return (1 - SIGMA_MIN) * eps - x0


class AdaptiveGradClipper:
    """The reference's clipper (docs/training.md#optimisation): clip at `max_norm` until `buffer` finite norms are
    seen, then at min(percentile of the last `buffer` norms, max_norm). Its history is part of the resumable state."""

    def __init__(self, max_norm: float = 1.0, percentile: float = 95.0, buffer: int = 1000):
        self.max_norm, self.percentile, self.buffer = max_norm, percentile, buffer
        self.norms: list[float] = []

    def threshold(self) -> float:
        if len(self.norms) < self.buffer:
            return self.max_norm
        return min(float(torch.quantile(torch.tensor(self.norms, dtype=torch.float64), self.percentile / 100)),
                   self.max_norm)

    def __call__(self, params) -> float:
        """Clips in place; returns the pre-clip total norm (inf/nan when the gradients are not finite)."""
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.threshold()))
        if math.isfinite(norm):
            self.norms.append(norm)
            del self.norms[: -self.buffer]
        return norm
