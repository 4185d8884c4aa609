"""The two flow transformers: SparseStructureFlowModel (dense 16³ latent, docs/models.md#sparse-structure-flow)
and SLatFlowModel (sparse structured latent, docs/models.md#slat-flows), with the reference constructor arguments,
state_dict keys and precision rules."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .sparse import SparseLinear, SparseTensor, sparse_cat
from .transformer import (ModulatedSparseTransformerCrossBlock, ModulatedTransformerCrossBlock, TimestepEmbedder,
                          convert_module_to, manual_cast, rope_phases, str_to_dtype)


class _FlowBase(nn.Module):
    def _common_init(self, model_channels, num_heads, num_head_channels, mlp_ratio, pe_mode, dtype, use_checkpoint,
                     share_mod, initialization, qk_rms_norm, qk_rms_norm_cross, num_blocks, in_channels,
                     cond_channels, out_channels):
        if pe_mode != "rope":
            raise NotImplementedError("only pe_mode='rope' is used by the TRELLIS.2 checkpoints")
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.cond_channels = cond_channels
        self.out_channels = out_channels
        self.num_blocks = num_blocks
        self.num_heads = num_heads or model_channels // num_head_channels
        self.mlp_ratio = mlp_ratio
        self.pe_mode = pe_mode
        self.share_mod = share_mod
        self.initialization = initialization
        self.qk_rms_norm = qk_rms_norm
        self.qk_rms_norm_cross = qk_rms_norm_cross
        self.dtype = str_to_dtype(dtype)
        self.t_embedder = TimestepEmbedder(model_channels)
        if share_mod:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(model_channels, 6 * model_channels, bias=True))

    @property
    def use_checkpoint(self) -> bool:
        return any(b.use_checkpoint for b in self.blocks)

    @use_checkpoint.setter
    def use_checkpoint(self, value: bool) -> None:
        # Gradient checkpointing per block; a pure memory/compute trade-off (docs/training.md#memory).
        for b in getattr(self, "blocks", []):
            b.use_checkpoint = bool(value)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def convert_to(self, dtype) -> None:
        """Put the block Linears in `dtype`; the rest stays float32 (docs/models.md#precision)."""
        self.dtype = str_to_dtype(dtype)
        self.blocks.apply(partial(convert_module_to, dtype=self.dtype))

    def initialize_weights(self) -> None:
        C = self.model_channels

        def linear_init(std):
            def f(m):
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=std) if std else nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
            return f

        if self.initialization == "scaled":
            self.apply(linear_init(np.sqrt(2.0 / (5.0 * C))))
            for b in self.blocks:
                for m in (b.self_attn.to_out, b.cross_attn.to_out, b.mlp.mlp[2]):
                    m.apply(linear_init(1.0 / np.sqrt(5 * self.num_blocks * C)))
            nn.init.normal_(self.input_layer.weight, std=1.0 / np.sqrt(self.in_channels))
            nn.init.zeros_(self.input_layer.bias)
        else:
            self.apply(linear_init(None))
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        mods = [self.adaLN_modulation[-1]] if self.share_mod else [b.adaLN_modulation[-1] for b in self.blocks]
        for m in mods + [self.out_layer]:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def _modulation(self, t: torch.Tensor) -> torch.Tensor:
        t_emb = self.t_embedder(t)
        if self.share_mod:
            t_emb = self.adaLN_modulation(t_emb)
        return manual_cast(t_emb, self.dtype)


class SparseStructureFlowModel(_FlowBase):
    """Flow on the dense [B, 8, 16, 16, 16] sparse-structure latent; forward(x, t·1000, cond [B, L, Cc])."""

    # Recomputed at construction; the official files leave it out (docs/models.md#checkpoints-and-loading), so
    # loading allows it to be missing.
    NON_CHECKPOINT_BUFFERS = ("rope_phases",)

    def __init__(self, resolution: int, in_channels: int, model_channels: int, cond_channels: int, out_channels: int,
                 num_blocks: int, num_heads: int | None = None, num_head_channels: int | None = 64,
                 mlp_ratio: float = 4, pe_mode: str = "ape", rope_freq: Sequence[float] = (1.0, 10000.0),
                 dtype: str = "float32", use_checkpoint: bool = False, share_mod: bool = False,
                 initialization: str = "vanilla", qk_rms_norm: bool = False, qk_rms_norm_cross: bool = False,
                 **kwargs):
        super().__init__()
        self.resolution = resolution
        self.rope_freq = tuple(rope_freq)
        self._common_init(model_channels, num_heads, num_head_channels, mlp_ratio, pe_mode, dtype, use_checkpoint,
                          share_mod, initialization, qk_rms_norm, qk_rms_norm_cross, num_blocks, in_channels,
                          cond_channels, out_channels)
        self.register_buffer("rope_phases", self._make_rope_phases())
        self.input_layer = nn.Linear(in_channels, model_channels)
        self.blocks = nn.ModuleList([
            ModulatedTransformerCrossBlock(model_channels, cond_channels, num_heads=self.num_heads,
                                           mlp_ratio=mlp_ratio, use_checkpoint=use_checkpoint, use_rope=True,
                                           rope_freq=rope_freq, share_mod=share_mod, qk_rms_norm=qk_rms_norm,
                                           qk_rms_norm_cross=qk_rms_norm_cross)
            for _ in range(num_blocks)
        ])
        self.out_layer = nn.Linear(model_channels, out_channels)
        self.initialize_weights()
        self.convert_to(self.dtype)

    def _make_rope_phases(self) -> torch.Tensor:
        r = torch.arange(self.resolution)
        grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
        return rope_phases(grid, self.model_channels // self.num_heads, self.rope_freq)

    def reset_buffers(self) -> None:
        """Recompute derived buffers (after building on the meta device and moving to a real one)."""
        self.rope_phases = self._make_rope_phases().to(self.rope_phases.device)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        B, C = x.shape[:2]
        if list(x.shape) != [B, self.in_channels, *[self.resolution] * 3]:
            raise ValueError(f"expected x of shape [B, {self.in_channels}, {self.resolution}³], got {list(x.shape)}")
        h = x.reshape(B, C, -1).permute(0, 2, 1).contiguous()  # token = x·R² + y·R + z
        h = self.input_layer(h)
        mod = self._modulation(t)
        h = manual_cast(h, self.dtype)
        cond = manual_cast(cond, self.dtype)
        phases = self.rope_phases
        if not phases.is_complex():  # Module.to(real dtype) drops the imaginary part of complex buffers
            phases = self._make_rope_phases().to(h.device)
        for block in self.blocks:
            h = block(h, mod, cond, phases)
        h = manual_cast(h, x.dtype)
        h = F.layer_norm(h, h.shape[-1:])
        h = self.out_layer(h)
        return h.permute(0, 2, 1).reshape(B, h.shape[-1], *[self.resolution] * 3).contiguous()


class SLatFlowModel(_FlowBase):
    """Flow on a structured latent; forward(x: SparseTensor, t·1000, cond [B, L, Cc], concat_cond=None)."""

    def __init__(self, resolution: int, in_channels: int, model_channels: int, cond_channels: int, out_channels: int,
                 num_blocks: int, num_heads: int | None = None, num_head_channels: int | None = 64,
                 mlp_ratio: float = 4, pe_mode: str = "ape", rope_freq: Sequence[float] = (1.0, 10000.0),
                 dtype: str = "float32", use_checkpoint: bool = False, share_mod: bool = False,
                 initialization: str = "vanilla", qk_rms_norm: bool = False, qk_rms_norm_cross: bool = False):
        super().__init__()
        self.resolution = resolution
        self._common_init(model_channels, num_heads, num_head_channels, mlp_ratio, pe_mode, dtype, use_checkpoint,
                          share_mod, initialization, qk_rms_norm, qk_rms_norm_cross, num_blocks, in_channels,
                          cond_channels, out_channels)
        self.input_layer = SparseLinear(in_channels, model_channels)
        self.blocks = nn.ModuleList([
            ModulatedSparseTransformerCrossBlock(model_channels, cond_channels, num_heads=self.num_heads,
                                                 mlp_ratio=mlp_ratio, use_checkpoint=use_checkpoint, use_rope=True,
                                                 rope_freq=rope_freq, share_mod=share_mod, qk_rms_norm=qk_rms_norm,
                                                 qk_rms_norm_cross=qk_rms_norm_cross)
            for _ in range(num_blocks)
        ])
        self.out_layer = SparseLinear(model_channels, out_channels)
        self.initialize_weights()
        self.convert_to(self.dtype)

    def forward(self, x: SparseTensor, t: torch.Tensor, cond, concat_cond: SparseTensor | None = None,
                **kwargs) -> SparseTensor:
        if concat_cond is not None:
            x = sparse_cat([x, concat_cond], dim=-1)
        if x.feats.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.feats.shape[1]}")
        # Layers are applied to .feats (not the SparseTensor) so adapter wrappers such as peft's LoRA see tensors.
        h = x.replace(self.input_layer(x.feats))
        h = manual_cast(h, self.dtype)
        mod = self._modulation(t)
        if isinstance(cond, (list, tuple)):
            cond = [manual_cast(c, self.dtype) for c in cond]
        else:
            cond = manual_cast(cond, self.dtype)
        for block in self.blocks:
            h = block(h, mod, cond)
        h = manual_cast(h, x.dtype)
        return h.replace(self.out_layer(F.layer_norm(h.feats, h.feats.shape[-1:])))


class ElasticSLatFlowModel(SLatFlowModel):
    """Same keys and math as SLatFlowModel; the reference only adds memory-driven checkpointing
    (docs/training.md#memory)."""
