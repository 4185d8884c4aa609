"""Transformer pieces shared by the dense and sparse flows (docs/models.md#transformer-block): precision helpers,
RoPE, q/k RMS norm, attention (dense SDPA and variable-length per object), the FFN and the modulated cross blocks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from .sparse import SparseConv3d, SparseLinear, SparseTensor

try:  # optional: used on CUDA in half precision when installed, else PyTorch SDPA
    from flash_attn import flash_attn_func, flash_attn_varlen_func  # type: ignore

    HAVE_FLASH_ATTN = True
except Exception:  # noqa: BLE001 - any import failure means "not available"
    HAVE_FLASH_ATTN = False

# Module types whose weights follow the model `dtype` (docs/models.md#precision); everything else stays float32.
MIX_PRECISION_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                         nn.Linear, SparseConv3d, SparseLinear)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "f16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def str_to_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}")
    return DTYPES[name]


def autocast_on(t: torch.Tensor | None = None) -> bool:
    if t is not None:
        return torch.is_autocast_enabled(t.device.type)
    return torch.is_autocast_enabled("cuda") or torch.is_autocast_enabled("cpu")


def manual_cast(x, dtype: torch.dtype):
    """Cast unless autocast is running (then autocast decides), as the reference does."""
    t = x.feats if isinstance(x, SparseTensor) else x
    if autocast_on(t):
        return x
    return x.type(dtype)


def convert_module_to(module: nn.Module, dtype: torch.dtype) -> None:
    """Convert only the mix-precision module types' parameters (applied over a subtree with .apply)."""
    if isinstance(module, MIX_PRECISION_MODULES):
        for p in module.parameters(recurse=False):
            p.data = p.data.to(dtype)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32, result cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        dt = x.dtype
        o = super().forward(manual_cast(x, torch.float32))
        return manual_cast(o, dt)


# ---------------------------------------------------------------------------------------------------------------
# RoPE (docs/models.md#attention-and-rope): freq_dim = D//2//3 per axis, slots x|y|z|pad(identity), interleaved
# pairs, raw integer positions
def rope_freqs(head_dim: int, rope_freq: Sequence[float] = (1.0, 10000.0), dim: int = 3) -> torch.Tensor:
    freq_dim = head_dim // 2 // dim
    j = torch.arange(freq_dim, dtype=torch.float32) / freq_dim
    return rope_freq[0] / (rope_freq[1] ** j)


def rope_phases(positions: torch.Tensor, head_dim: int, rope_freq: Sequence[float] = (1.0, 10000.0)) -> torch.Tensor:
    """Unit complex phases [N, head_dim/2] for integer positions [N, 3]."""
    if head_dim % 2:
        raise ValueError("RoPE needs an even head dim")
    n, dim = positions.shape
    freqs = rope_freqs(head_dim, rope_freq, dim).to(positions.device)
    angles = (positions.to(torch.float32)[:, :, None] * freqs[None, None, :]).reshape(n, -1)
    pad = head_dim // 2 - angles.shape[1]
    if pad > 0:
        angles = torch.cat([angles, angles.new_zeros(n, pad)], dim=1)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, phases: torch.Tensor) -> torch.Tensor:
    """Rotate (2j, 2j+1) pairs of x [..., N, H, D] by phases [N, D/2], in float32, cast back."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    out = torch.view_as_real(xc * phases.unsqueeze(-2)).reshape(*x.shape)
    return out.to(x.dtype)


class MultiHeadRMSNorm(nn.Module):
    """q/k RMS norm: F.normalize (eps 1e-12 on the L2 norm) · gamma · sqrt(D), in float32."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(heads, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (F.normalize(x.float(), dim=-1) * self.gamma * self.scale).to(x.dtype)


# ---------------------------------------------------------------------------------------------------------------
# attention kernels
def _use_flash(q: torch.Tensor) -> bool:
    return HAVE_FLASH_ATTN and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256


def dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [B, L, H, D], k/v [B, M, H, D] -> [B, L, H, D]; scale 1/sqrt(D), no mask."""
    if _use_flash(q) and k.dtype == q.dtype and v.dtype == q.dtype:
        return flash_attn_func(q, k, v)
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_counts: list[int], kv_counts: list[int]) -> torch.Tensor:
    """Attention within each object: q [N, H, D] split by q_counts, k/v [M, H, D] split by kv_counts."""
    if _use_flash(q) and k.dtype == q.dtype and v.dtype == q.dtype:
        dev = q.device
        cu_q = torch.tensor([0, *np.cumsum(q_counts).tolist()], dtype=torch.int32, device=dev)
        cu_k = torch.tensor([0, *np.cumsum(kv_counts).tolist()], dtype=torch.int32, device=dev)
        return flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(q_counts), max(kv_counts))
    outs = []
    qs, ks, vs = q.split(q_counts), k.split(kv_counts), v.split(kv_counts)
    for qi, ki, vi in zip(qs, ks, vs):
        if qi.shape[0] == 0:
            outs.append(qi)
            continue
        o = F.scaled_dot_product_attention(qi.transpose(0, 1)[None], ki.transpose(0, 1)[None], vi.transpose(0, 1)[None])
        outs.append(o[0].transpose(0, 1))
    return torch.cat(outs, dim=0)


@dataclass
class TokenLayout:
    """How tokens are grouped: dense [B, L, C] or sparse rows [N, C] with per-object counts."""

    sparse: bool
    counts: list[int] | None = None
    batch_index: torch.Tensor | None = None
    phases: torch.Tensor | None = None

    def per_item(self, v: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-object vector [B, C] over the tokens."""
        return v[self.batch_index] if self.sparse else v.unsqueeze(1)


class MultiHeadAttention(nn.Module):
    """Self-attention (fused to_qkv, RMS norm, RoPE) or cross-attention (to_q / to_kv), keys as the reference."""

    def __init__(self, channels: int, num_heads: int, ctx_channels: int | None = None, type: str = "self",
                 qkv_bias: bool = True, use_rope: bool = False, rope_freq: Sequence[float] = (1.0, 10000.0),
                 qk_rms_norm: bool = False):
        super().__init__()
        if channels % num_heads:
            raise ValueError("channels must be divisible by num_heads")
        if type not in ("self", "cross"):
            raise ValueError(f"invalid attention type {type!r}")
        if type == "cross" and use_rope:
            raise ValueError("RoPE is only used in self-attention")
        self.channels = channels
        self.num_heads = num_heads
        self.head_dim = channels // num_heads
        self.ctx_channels = ctx_channels if ctx_channels is not None else channels
        self._type = type
        self.use_rope = use_rope
        self.rope_freq = tuple(rope_freq)
        self.qk_rms_norm = qk_rms_norm
        if type == "self":
            self.to_qkv = nn.Linear(channels, channels * 3, bias=qkv_bias)
        else:
            self.to_q = nn.Linear(channels, channels, bias=qkv_bias)
            self.to_kv = nn.Linear(self.ctx_channels, channels * 2, bias=qkv_bias)
        if qk_rms_norm:
            self.q_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
            self.k_rms_norm = MultiHeadRMSNorm(self.head_dim, num_heads)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, h: torch.Tensor, layout: TokenLayout, context=None) -> torch.Tensor:
        lead = h.shape[:-1]
        H = self.num_heads
        if self._type == "self":
            q, k, v = self.to_qkv(h).reshape(*lead, 3, H, -1).unbind(dim=-3)
            if self.qk_rms_norm:
                q, k = self.q_rms_norm(q), self.k_rms_norm(k)
            if self.use_rope:
                if layout.phases is None:
                    raise ValueError("RoPE phases are missing")
                q, k = apply_rope(q, layout.phases), apply_rope(k, layout.phases)
            if layout.sparse:
                o = varlen_attention(q, k, v, layout.counts, layout.counts)
            else:
                o = dense_attention(q, k, v)
        else:
            q = self.to_q(h).reshape(*lead, H, -1)
            if self.qk_rms_norm:
                q = self.q_rms_norm(q)
            if isinstance(context, (list, tuple)):  # one context per object, possibly of different lengths
                kv = [self.to_kv(c).reshape(c.shape[0], 2, H, -1) for c in context]
                k = torch.cat([x[:, 0] for x in kv]) if kv else None
                v = torch.cat([x[:, 1] for x in kv]) if kv else None
                kv_counts = [c.shape[0] for c in context]
            else:
                kvt = self.to_kv(context).reshape(*context.shape[:2], 2, H, -1)
                k, v = kvt.unbind(dim=2)
                kv_counts = [context.shape[1]] * context.shape[0]
                if layout.sparse:
                    k, v = k.reshape(-1, H, k.shape[-1]), v.reshape(-1, H, v.shape[-1])
            if self.qk_rms_norm:
                k = self.k_rms_norm(k)
            if layout.sparse:
                o = varlen_attention(q, k, v, layout.counts, kv_counts)
            else:
                if isinstance(context, (list, tuple)):
                    raise ValueError("dense tokens need a dense [B, L, C] context")
                o = dense_attention(q, k, v)
        return self.to_out(o.reshape(*lead, -1))


class FeedForwardNet(nn.Module):
    def __init__(self, channels: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class _ModulatedCrossBlockBase(nn.Module):
    """adaLN-modulated self-attention, un-gated cross-attention after an affine LN, modulated FFN
    (docs/models.md#transformer-block)."""

    def __init__(self, channels: int, ctx_channels: int, num_heads: int, mlp_ratio: float = 4.0,
                 attn_mode: str = "full", use_checkpoint: bool = False, use_rope: bool = False,
                 rope_freq: Sequence[float] = (1.0, 10000.0), qk_rms_norm: bool = False,
                 qk_rms_norm_cross: bool = False, qkv_bias: bool = True, share_mod: bool = False):
        super().__init__()
        if attn_mode != "full":
            raise NotImplementedError(f"attn_mode {attn_mode!r} is not used by TRELLIS.2 checkpoints")
        self.use_checkpoint = use_checkpoint
        self.share_mod = share_mod
        self.norm1 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.norm2 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm3 = LayerNorm32(channels, elementwise_affine=False, eps=1e-6)
        self.self_attn = MultiHeadAttention(channels, num_heads, type="self", qkv_bias=qkv_bias, use_rope=use_rope,
                                            rope_freq=rope_freq, qk_rms_norm=qk_rms_norm)
        self.cross_attn = MultiHeadAttention(channels, num_heads, ctx_channels=ctx_channels, type="cross",
                                             qkv_bias=qkv_bias, qk_rms_norm=qk_rms_norm_cross)
        self.mlp = FeedForwardNet(channels, mlp_ratio)
        if share_mod:
            self.modulation = nn.Parameter(torch.randn(6 * channels) / channels ** 0.5)
        else:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(channels, 6 * channels, bias=True))

    def _block(self, x: torch.Tensor, mod: torch.Tensor, context, layout: TokenLayout) -> torch.Tensor:
        if self.share_mod:
            m = (self.modulation + mod).type(mod.dtype)
        else:
            m = self.adaLN_modulation(mod)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (layout.per_item(c) for c in m.chunk(6, dim=1))
        h = self.norm1(x)
        h = h * (1 + scale_msa) + shift_msa
        h = self.self_attn(h, layout)
        x = x + h * gate_msa
        h = self.norm2(x)
        x = x + self.cross_attn(h, layout, context)
        h = self.norm3(x)
        h = h * (1 + scale_mlp) + shift_mlp
        x = x + self.mlp(h) * gate_mlp
        return x

    def _run(self, x, mod, context, layout):
        if self.use_checkpoint and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._block, x, mod, context, layout, use_reentrant=False)
        return self._block(x, mod, context, layout)


class ModulatedTransformerCrossBlock(_ModulatedCrossBlockBase):
    """Dense variant: x [B, L, C], mod [B, 6C] (or [B, C] without share_mod), context [B, Lc, Cc]."""

    def forward(self, x: torch.Tensor, mod: torch.Tensor, context: torch.Tensor, phases: torch.Tensor | None = None):
        return self._run(x, mod, context, TokenLayout(sparse=False, phases=phases))


class ModulatedSparseTransformerCrossBlock(_ModulatedCrossBlockBase):
    """Sparse variant: tokens of each object attend only within that object and to that object's context."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_dim = self.self_attn.head_dim
        self.rope_freq = self.self_attn.rope_freq

    def layout_for(self, x: SparseTensor) -> TokenLayout:
        phases = None
        if self.self_attn.use_rope:
            key = f"rope_hd{self.head_dim}_{self.rope_freq}"
            phases = x.cache.get(key)
            if phases is None:
                phases = rope_phases(x.coords[:, 1:], self.head_dim, self.rope_freq)
                x.cache[key] = phases
        return TokenLayout(sparse=True, counts=x.counts, batch_index=x.batch_index(), phases=phases)

    def forward(self, x: SparseTensor, mod: torch.Tensor, context) -> SparseTensor:
        layout = self.layout_for(x)
        return x.replace(self._run(x.feats, mod, context, layout))


class TimestepEmbedder(nn.Module):
    """Sinusoidal [cos, sin] embedding of t (already ×1000), 256 frequencies, then an MLP; float32."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size, bias=True), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size, bias=True))
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.timestep_embedding(t, self.frequency_embedding_size))
