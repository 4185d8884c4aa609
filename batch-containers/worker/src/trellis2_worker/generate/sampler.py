"""The flow-matching Euler sampler with classifier-free guidance, CFG rescale and a guidance interval, as the
reference `FlowEulerGuidanceIntervalSampler` computes it (docs/pipeline.md, "Sampler"). Works on dense tensors
(the sparse-structure latent) and on SparseTensors (the structured latents) alike."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch

from trellis2_worker.errors import InputError
from trellis2_worker.models import SparseTensor

from .options import SAMPLER_PARAMS as _PARAM_RULES
from .options import check_sampler_param

SIGMA_MIN = 1e-5
# The sample kwargs a pipeline.json sampler entry carries under "params" (the ones --sampler may override; their
# rules are generate_options.json's).
SAMPLER_PARAMS = tuple(_PARAM_RULES)


@dataclass(frozen=True)
class SamplerSettings:
    steps: int
    rescale_t: float = 1.0
    guidance_strength: float = 1.0
    guidance_rescale: float = 0.0
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    sigma_min: float = SIGMA_MIN

    @classmethod
    def from_pipeline_entry(cls, entry: dict, where: str = "sampler") -> "SamplerSettings":
        """From a pipeline.json entry {name, args: {sigma_min}, params: {...}}."""
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected an object with 'name', 'args', 'params'")
        name = entry.get("name", "FlowEulerGuidanceIntervalSampler")
        if name != "FlowEulerGuidanceIntervalSampler":
            raise InputError(f"{where}: sampler {name!r} is not supported (only FlowEulerGuidanceIntervalSampler)")
        settings = cls(steps=1, sigma_min=float(entry.get("args", {}).get("sigma_min", SIGMA_MIN)))
        return settings.with_params(entry.get("params", {}), where)

    def with_params(self, params: dict[str, Any], where: str = "sampler") -> "SamplerSettings":
        """A copy with `params` (pipeline.json names) applied and checked."""
        out = self
        for key, value in params.items():
            out = replace(out, **{key: check_sampler_param(key, value, where)})
        return out

    def as_params(self) -> dict:
        return {"steps": self.steps, "rescale_t": self.rescale_t, "guidance_strength": self.guidance_strength,
                "guidance_rescale": self.guidance_rescale, "guidance_interval": list(self.guidance_interval)}


def timesteps(steps: int, rescale_t: float) -> list[float]:
    """t_0 = 1 > t_1 > ... > t_steps = 0: a uniform grid in float64, remapped by t' = r·t / (1 + (r − 1)·t)."""
    t = np.linspace(1, 0, steps + 1)
    return (rescale_t * t / (1 + (rescale_t - 1) * t)).tolist()


@dataclass
class SampleResult:
    samples: Any
    pred_x_t: list = field(default_factory=list)   # x after each step (only when recorded)
    pred_x_0: list = field(default_factory=list)   # x0 predicted at each step, from the guided v
    branches: list[str] = field(default_factory=list)
    forward_passes: int = 0


def _feats(x):
    return x.feats if isinstance(x, SparseTensor) else x


def _item_std(x) -> torch.Tensor:
    """Per-batch-item std, broadcastable onto x's values: unbiased over all non-batch dims for a dense tensor;
    for a SparseTensor sqrt(E[x²] − E[x]²) over each item's feats (biased), as the reference computes them."""
    if isinstance(x, SparseTensor):
        b = x.batch_index()
        n = torch.bincount(b, minlength=x.batch_size).to(x.feats.dtype)[:, None] * x.feats.shape[1]
        zeros = torch.zeros(x.batch_size, 1, dtype=x.feats.dtype, device=x.device)
        s1 = zeros.index_add(0, b, x.feats.sum(1, keepdim=True))
        s2 = zeros.index_add(0, b, (x.feats ** 2).sum(1, keepdim=True))
        mean = s1 / n
        return ((s2 / n - mean ** 2).clamp_min(0).sqrt())[b]
    return x.std(dim=list(range(1, x.ndim)), keepdim=True)


def _wrap(like, feats):
    return like.replace(feats) if isinstance(like, SparseTensor) else feats


def sample(model: Callable, noise, cond, neg_cond, settings: SamplerSettings, *, record: bool = False,
           desc: str | None = None, on_step: Callable[[int, int], None] | None = None, **model_kwargs) -> SampleResult:
    """Integrate the flow from t = 1 (noise) to t = 0. `model(x, t·1000 [B] float32, cond, **model_kwargs) -> v`.

    desc: show a tqdm bar on stderr with that title. record: keep x and the x0 prediction after every step."""
    s = settings.sigma_min
    lo, hi = settings.guidance_interval
    ts = timesteps(settings.steps, settings.rescale_t)
    x = noise
    batch = x.batch_size if isinstance(x, SparseTensor) else x.shape[0]
    device = _feats(x).device
    result = SampleResult(samples=None)

    def velocity(xt, t, c):
        result.forward_passes += 1
        tt = torch.tensor([1000 * t] * batch, device=device, dtype=torch.float32)
        return _feats(model(xt, tt, c, **model_kwargs))

    steps = range(settings.steps)
    bar = None
    if desc is not None:
        from tqdm import tqdm

        bar = tqdm(total=settings.steps, desc=desc, file=sys.stderr, leave=True, dynamic_ncols=True)
    for i in steps:
        t, t_prev = ts[i], ts[i + 1]
        xf = _feats(x)
        w = settings.guidance_strength if lo <= t <= hi else 1.0
        if w == 1:
            v, branch = velocity(x, t, cond), "cond_only"
        elif w == 0:
            v, branch = velocity(x, t, neg_cond), "neg_only"
        else:
            v_pos = velocity(x, t, cond)
            v_neg = velocity(x, t, neg_cond)
            v, branch = w * v_pos + (1 - w) * v_neg, "cfg"
            g = settings.guidance_rescale
            if g > 0:
                x0_pos = (1 - s) * xf - (s + (1 - s) * t) * v_pos
                x0_cfg = (1 - s) * xf - (s + (1 - s) * t) * v
                std_pos = _item_std(_wrap(x, x0_pos))
                std_cfg = _item_std(_wrap(x, x0_cfg))
                x0 = g * (x0_cfg * (std_pos / std_cfg)) + (1 - g) * x0_cfg
                v, branch = ((1 - s) * xf - x0) / (s + (1 - s) * t), "cfg_rescaled"
        x0_pred = (1 - s) * xf - (s + (1 - s) * t) * v
        x = _wrap(x, xf - (t - t_prev) * v)
        result.branches.append(branch)
        if record:
            result.pred_x_t.append(_feats(x))
            result.pred_x_0.append(x0_pred)
        if bar is not None:
            bar.update(1)
        if on_step is not None:
            on_step(i + 1, settings.steps)
    if bar is not None:
        bar.close()
    result.samples = x
    return result
