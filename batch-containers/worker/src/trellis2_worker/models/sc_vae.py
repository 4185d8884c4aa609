"""Sparse-convolution U-Net VAEs of TRELLIS.2 (docs/models.md#sc-vaes): the shape (flexible dual grid) and texture
encoders and decoders, with ConvNeXt blocks, S2C downsampling and C2S upsampling with predicted or guided
subdivision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from .sparse import SparseConv3d, SparseLinear, SparseTensor, channel_to_spatial, spatial_to_channel
from .transformer import LayerNorm32, convert_module_to


def _zero(m: nn.Module) -> nn.Module:
    for p in m.parameters():
        nn.init.zeros_(p)
    return m


def _checkpointed(fn, use: bool, *args):
    if use and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class SparseConvNeXtBlock3d(nn.Module):
    """h = conv(x); h = LN(h); h = mlp(h); out = h + x."""

    def __init__(self, channels: int, mlp_ratio: float = 4.0, use_checkpoint: bool = False):
        super().__init__()
        self.channels = channels
        self.use_checkpoint = use_checkpoint
        self.norm = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.conv = SparseConv3d(channels, channels, 3)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.SiLU(), _zero(nn.Linear(hidden, channels)))

    def _forward(self, x: SparseTensor) -> SparseTensor:
        h = self.conv(x)
        h = h.replace(self.mlp(self.norm(h.feats)))
        return h + x

    def forward(self, x: SparseTensor) -> SparseTensor:
        return _checkpointed(self._forward, self.use_checkpoint, x)


class SparseResBlockS2C3d(nn.Module):
    """Downsampling res block: conv to Co/8 at the fine level, S2C, conv; skip = group mean of S2C(x)."""

    def __init__(self, channels: int, out_channels: int | None = None, use_checkpoint: bool = False):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.norm1 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm2 = LayerNorm32(self.out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SparseConv3d(channels, self.out_channels // 8, 3)
        self.conv2 = _zero(SparseConv3d(self.out_channels, self.out_channels, 3))

    def _forward(self, x: SparseTensor) -> SparseTensor:
        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))
        h = spatial_to_channel(h)
        xs = spatial_to_channel(x)
        h = self.conv2(h.replace(F.silu(self.norm2(h.feats))))
        n = xs.feats.shape[0]
        skip = xs.feats.reshape(n, self.out_channels, self.channels * 8 // self.out_channels).mean(dim=-1)
        return h.replace(h.feats + skip)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return _checkpointed(self._forward, self.use_checkpoint, x)


class SparseResBlockC2S3d(nn.Module):
    """Upsampling res block: conv to 8·Co, C2S by the subdivision mask, conv; skip = repeat of C2S(x).

    With pred_subdiv the mask comes from `to_subdiv(x) > 0` and forward returns (out, subdivision logits);
    otherwise the caller passes `subdiv` (a SparseTensor [N, 8] whose rows pair with x's rows)."""

    def __init__(self, channels: int, out_channels: int | None = None, use_checkpoint: bool = False,
                 pred_subdiv: bool = True):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.pred_subdiv = pred_subdiv
        self.norm1 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm2 = LayerNorm32(self.out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SparseConv3d(channels, self.out_channels * 8, 3)
        self.conv2 = _zero(SparseConv3d(self.out_channels, self.out_channels, 3))
        if pred_subdiv:
            self.to_subdiv = SparseLinear(channels, 8)

    def _forward(self, x: SparseTensor, subdiv: SparseTensor | None = None):
        if self.pred_subdiv:
            subdiv = self.to_subdiv(x)
        if subdiv is None:
            raise ValueError("this decoder does not predict subdivisions: pass guide_subs from the shape decoder")
        if subdiv.feats.shape[0] != x.feats.shape[0]:
            raise ValueError(f"guide subdivision has {subdiv.feats.shape[0]} rows, the tokens have {x.feats.shape[0]}")
        mask = subdiv.feats > 0
        h = self.conv1(x.replace(F.silu(self.norm1(x.feats))))
        h = channel_to_spatial(h, mask)
        xs = channel_to_spatial(x, mask)
        h = self.conv2(h.replace(F.silu(self.norm2(h.feats))))
        out = h.replace(h.feats + xs.feats.repeat_interleave(self.out_channels // (self.channels // 8), dim=1))
        return (out, subdiv) if self.pred_subdiv else out

    def forward(self, x: SparseTensor, subdiv: SparseTensor | None = None):
        return _checkpointed(self._forward, self.use_checkpoint, x, subdiv)


BLOCKS = {c.__name__: c for c in (SparseConvNeXtBlock3d, SparseResBlockS2C3d, SparseResBlockC2S3d)}


def _block_class(name: str):
    if name not in BLOCKS:
        raise ValueError(f"unsupported block type {name!r} (supported: {', '.join(BLOCKS)})")
    return BLOCKS[name]


def _xavier_linears(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SparseUnetVaeEncoder(nn.Module):
    """forward(x: SparseTensor [N, in], sample_posterior=False) -> latent SparseTensor at 1/16 resolution."""

    def __init__(self, in_channels: int, model_channels: list[int], latent_channels: int, num_blocks: list[int],
                 block_type: list[str], down_block_type: list[str], block_args: list[dict[str, Any]],
                 use_fp16: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.latent_channels = latent_channels
        self.num_blocks = num_blocks
        self.dtype = torch.float16 if use_fp16 else torch.float32
        self.input_layer = SparseLinear(in_channels, model_channels[0])
        self.to_latent = SparseLinear(model_channels[-1], 2 * latent_channels)
        self.blocks = nn.ModuleList()
        for i, nb in enumerate(num_blocks):
            stage = nn.ModuleList([_block_class(block_type[i])(model_channels[i], **block_args[i]) for _ in range(nb)])
            if i < len(num_blocks) - 1:
                stage.append(_block_class(down_block_type[i])(model_channels[i], model_channels[i + 1], **block_args[i]))
            self.blocks.append(stage)
        _xavier_linears(self)
        if use_fp16:
            self.blocks.apply(lambda m: convert_module_to(m, torch.float16))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, x: SparseTensor, sample_posterior: bool = False, return_raw: bool = False):
        h = self.input_layer(x).type(self.dtype)
        for stage in self.blocks:
            for block in stage:
                h = block(h)
        h = h.type(x.dtype)
        h = h.replace(F.layer_norm(h.feats, h.feats.shape[-1:]))
        h = self.to_latent(h)
        mean, logvar = h.feats.chunk(2, dim=-1)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample_posterior else mean
        z = h.replace(z)
        return (z, mean, logvar) if return_raw else z


class FlexiDualGridVaeEncoder(SparseUnetVaeEncoder):
    """Shape encoder: forward(vertices [N, 3] in [0, 1], intersected [N, 3] bool, ...) on the same coords."""

    def __init__(self, model_channels: list[int], latent_channels: int, num_blocks: list[int], block_type: list[str],
                 down_block_type: list[str], block_args: list[dict[str, Any]], use_fp16: bool = False):
        super().__init__(6, model_channels, latent_channels, num_blocks, block_type, down_block_type, block_args,
                         use_fp16)

    def forward(self, vertices: SparseTensor, intersected: SparseTensor, sample_posterior: bool = False,
                return_raw: bool = False):
        x = vertices.replace(torch.cat([vertices.feats - 0.5, intersected.feats.float() - 0.5], dim=1))
        return super().forward(x, sample_posterior, return_raw)


class SparseUnetVaeDecoder(nn.Module):
    """forward(z, guide_subs=None, return_subs=False) -> SparseTensor [N', out] at 16× the latent resolution."""

    def __init__(self, out_channels: int, model_channels: list[int], latent_channels: int, num_blocks: list[int],
                 block_type: list[str], up_block_type: list[str], block_args: list[dict[str, Any]],
                 use_fp16: bool = False, pred_subdiv: bool = True):
        super().__init__()
        self.out_channels = out_channels
        self.model_channels = model_channels
        self.latent_channels = latent_channels
        self.num_blocks = num_blocks
        self.use_fp16 = use_fp16
        self.pred_subdiv = pred_subdiv
        self.dtype = torch.float16 if use_fp16 else torch.float32
        self.output_layer = SparseLinear(model_channels[-1], out_channels)
        self.from_latent = SparseLinear(latent_channels, model_channels[0])
        self.blocks = nn.ModuleList()
        for i, nb in enumerate(num_blocks):
            stage = nn.ModuleList([_block_class(block_type[i])(model_channels[i], **block_args[i]) for _ in range(nb)])
            if i < len(num_blocks) - 1:
                stage.append(_block_class(up_block_type[i])(model_channels[i], model_channels[i + 1],
                                                            pred_subdiv=pred_subdiv, **block_args[i]))
            self.blocks.append(stage)
        _xavier_linears(self)
        if use_fp16:
            self.blocks.apply(lambda m: convert_module_to(m, torch.float16))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _run_blocks(self, x: SparseTensor, guide_subs, stop_at: int | None = None):
        h = self.from_latent(x).type(self.dtype)
        subs = []
        last = len(self.blocks) - 1
        for i, stage in enumerate(self.blocks):
            if stop_at is not None and i == stop_at:
                break
            for j, block in enumerate(stage):
                if i < last and j == len(stage) - 1:  # the up block closing stage i
                    if self.pred_subdiv:
                        h, sub = block(h)
                        subs.append(sub)
                    else:
                        h = block(h, guide_subs[i] if guide_subs is not None else None)
                else:
                    h = block(h)
        return h, subs

    def forward(self, x: SparseTensor, guide_subs: list[SparseTensor] | None = None, return_subs: bool = False):
        if guide_subs is not None and self.pred_subdiv:
            raise ValueError("guide_subs is only for decoders with pred_subdiv=False")
        if return_subs and not self.pred_subdiv:
            raise ValueError("return_subs needs a decoder with pred_subdiv=True")
        h, subs = self._run_blocks(x, guide_subs)
        h = h.type(x.dtype)
        h = h.replace(F.layer_norm(h.feats, h.feats.shape[-1:]))
        h = self.output_layer(h)
        return (h, subs) if return_subs else h

    def upsample(self, x: SparseTensor, upsample_times: int) -> torch.Tensor:
        """Coordinates after `upsample_times` predicted subdivisions (e.g. 4: a 32³ latent -> a 512³ voxel grid)."""
        if not self.pred_subdiv:
            raise ValueError("upsample needs a decoder with pred_subdiv=True")
        h, _ = self._run_blocks(x, None, stop_at=upsample_times)
        return h.coords


@dataclass
class DualGridFields:
    """Decoded flexible-dual-grid fields of one object, before mesh extraction (docs/models.md#sc-vaes)."""

    coords: torch.Tensor        # [N, 3] int32 voxel coords at `resolution`
    vertices: torch.Tensor      # [N, 3] dual vertex offset in voxel units, (1 + 2·margin)·sigmoid − margin
    intersected: torch.Tensor   # [N, 3] bool, +x / +y / +z edge crosses the surface
    quad_lerp: torch.Tensor     # [N, 1] softplus
    resolution: int


class FlexiDualGridVaeDecoder(SparseUnetVaeDecoder):
    """Shape decoder (7 outputs, predicted subdivision). forward returns one DualGridFields per object; the mesh
    extraction (o_voxel's flexible_dual_grid_to_mesh) is not part of this package."""

    def __init__(self, resolution: int, model_channels: list[int], latent_channels: int, num_blocks: list[int],
                 block_type: list[str], up_block_type: list[str], block_args: list[dict[str, Any]],
                 voxel_margin: float = 0.5, use_fp16: bool = False):
        super().__init__(7, model_channels, latent_channels, num_blocks, block_type, up_block_type, block_args,
                         use_fp16, pred_subdiv=True)
        self.resolution = resolution
        self.voxel_margin = voxel_margin

    def set_resolution(self, resolution: int) -> None:
        self.resolution = resolution

    def fields(self, h: SparseTensor) -> list[DualGridFields]:
        m = self.voxel_margin
        out = []
        for item in h.unbind():
            f = item.feats
            out.append(DualGridFields(coords=item.coords[:, 1:], vertices=(1 + 2 * m) * torch.sigmoid(f[:, 0:3]) - m,
                                      intersected=f[:, 3:6] > 0, quad_lerp=F.softplus(f[:, 6:7]),
                                      resolution=self.resolution))
        return out

    def forward(self, x: SparseTensor, return_subs: bool = False, **kwargs):  # type: ignore[override]
        h, subs = super().forward(x, return_subs=True)
        fields = self.fields(h)
        return (fields, subs) if return_subs else fields
