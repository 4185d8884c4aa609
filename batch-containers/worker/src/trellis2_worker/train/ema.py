"""An exponential moving average of the LoRA weights, kept beside the raw ones.

The reference keeps an EMA at 0.9999 over runs of hundreds of thousands of steps. Its horizon, 1/(1-β) = 10 000
steps, is longer than a whole LoRA run of a few thousand, so a plain EMA at that decay would still be mostly the
initial adapter (B = 0: the base) at the end. The decay used at step s is therefore min(β, (1+s)/(10+s)) (the
warm-up of TensorFlow's ExponentialMovingAverage with num_updates): early on it averages about the last tenth of
the steps so far, and it reaches β only once 1/(1-β) is a tenth of the run. With it, β is a ceiling, not the horizon:
0.999 (the default when on) averages over the last ~100 steps of a 1000-step run and ~1000 of a 10 000-step one.
Off by default: it doubles the evaluation work and the adapter handed back is the raw one.
"""

from __future__ import annotations

import contextlib

import torch

DEFAULT_EMA_DECAY = 0.999


def ema_decay_at(decay: float, step: int) -> float:
    return min(decay, (1.0 + step) / (10.0 + step))


class LoraEma:
    """Shadow copies (fp32) of the trainable parameters, updated after each optimiser step."""

    def __init__(self, named_params: dict[str, torch.nn.Parameter], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be between 0 and 1, got {decay}")
        self.decay = decay
        self.params = named_params
        self.shadow = {n: p.detach().float().clone() for n, p in named_params.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """After optimiser step `step` (1-based)."""
        w = 1.0 - ema_decay_at(self.decay, step)
        for n, p in self.params.items():
            self.shadow[n].lerp_(p.detach().float(), w)

    def state(self) -> dict[str, torch.Tensor]:
        return {n: t.cpu().contiguous() for n, t in self.shadow.items()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if set(tensors) != set(self.shadow):
            raise ValueError("the checkpoint's EMA does not match this adapter's parameters")
        for n, t in tensors.items():
            self.shadow[n].copy_(t)

    @contextlib.contextmanager
    def applied(self):
        """The EMA weights in the model for the duration (to evaluate or save them); the raw ones back after."""
        raw = {n: p.detach().clone() for n, p in self.params.items()}
        try:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(self.shadow[n].to(p.dtype))
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(raw[n])
