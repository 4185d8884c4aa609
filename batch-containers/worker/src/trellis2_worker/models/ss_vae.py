"""Sparse-structure VAE (TRELLIS v1 `ss_vae_conv3d_16l8_fp16`, docs/models.md#sparse-structure-vae): dense 3D conv
encoder 64³ → [8, 16³] and decoder [8, 16³] → occupancy logits 64³."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .transformer import LayerNorm32, convert_module_to


class GroupNorm32(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x.float()).type(x.dtype)


class ChannelLayerNorm32(LayerNorm32):
    """Affine LayerNorm over the channel dim of [B, C, ...] (channels-last inside), float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        d = x.dim()
        x = x.permute(0, *range(2, d), 1).contiguous()
        x = super().forward(x)
        return x.permute(0, d - 1, *range(1, d - 1)).contiguous()


def norm_layer(norm_type: str, channels: int) -> nn.Module:
    if norm_type == "group":
        return GroupNorm32(32, channels)
    if norm_type == "layer":
        return ChannelLayerNorm32(channels)  # eps 1e-5, affine (nn.LayerNorm defaults)
    raise ValueError(f"invalid norm type {norm_type!r}")


def pixel_shuffle_3d(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Channel c·f³ + a·f² + b·f + d goes to voxel (f·i + a, f·j + b, f·k + d)."""
    B, C, H, W, D = x.shape
    c = C // factor ** 3
    x = x.reshape(B, c, factor, factor, factor, H, W, D).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(B, c, H * factor, W * factor, D * factor)


class ResBlock3d(nn.Module):
    def __init__(self, channels: int, out_channels: int | None = None, norm_type: str = "layer"):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.norm1 = norm_layer(norm_type, channels)
        self.norm2 = norm_layer(norm_type, self.out_channels)
        self.conv1 = nn.Conv3d(channels, self.out_channels, 3, padding=1)
        self.conv2 = nn.Conv3d(self.out_channels, self.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip_connection = nn.Conv3d(channels, self.out_channels, 1) if channels != self.out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip_connection(x)


class DownsampleBlock3d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mode: str = "conv"):
        super().__init__()
        self.mode = mode
        if mode == "conv":
            self.conv = nn.Conv3d(in_channels, out_channels, 2, stride=2)
        elif mode != "avgpool" or in_channels != out_channels:
            raise ValueError(f"invalid downsample mode {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if self.mode == "conv" else F.avg_pool3d(x, 2)


class UpsampleBlock3d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, mode: str = "conv"):
        super().__init__()
        self.mode = mode
        if mode == "conv":
            self.conv = nn.Conv3d(in_channels, out_channels * 8, 3, padding=1)
        elif mode != "nearest" or in_channels != out_channels:
            raise ValueError(f"invalid upsample mode {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "conv":
            return pixel_shuffle_3d(self.conv(x), 2)
        return F.interpolate(x, scale_factor=2, mode="nearest")


class _SSVaeBase(nn.Module):
    def _set_fp16(self, use_fp16: bool) -> None:
        self.use_fp16 = use_fp16
        self.dtype = torch.float16 if use_fp16 else torch.float32
        if use_fp16:
            self.blocks.apply(lambda m: convert_module_to(m, torch.float16))
            self.middle_block.apply(lambda m: convert_module_to(m, torch.float16))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


class SparseStructureEncoder(_SSVaeBase):
    """forward(x [B, 1, 64³] occupancy, sample_posterior=False) -> z [B, latent, 16³] (the mean by default)."""

    def __init__(self, in_channels: int, latent_channels: int, num_res_blocks: int, channels: list[int],
                 num_res_blocks_middle: int = 2, norm_type: str = "layer", use_fp16: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.input_layer = nn.Conv3d(in_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for i, ch in enumerate(channels):
            self.blocks.extend([ResBlock3d(ch, ch, norm_type) for _ in range(num_res_blocks)])
            if i < len(channels) - 1:
                self.blocks.append(DownsampleBlock3d(ch, channels[i + 1]))
        self.middle_block = nn.Sequential(*[ResBlock3d(channels[-1], channels[-1], norm_type)
                                            for _ in range(num_res_blocks_middle)])
        self.out_layer = nn.Sequential(norm_layer(norm_type, channels[-1]), nn.SiLU(),
                                       nn.Conv3d(channels[-1], latent_channels * 2, 3, padding=1))
        self._set_fp16(use_fp16)

    def forward(self, x: torch.Tensor, sample_posterior: bool = False, return_raw: bool = False):
        h = self.input_layer(x).type(self.dtype)
        for block in self.blocks:
            h = block(h)
        h = self.middle_block(h)
        h = self.out_layer(h.type(x.dtype))
        mean, logvar = h.chunk(2, dim=1)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample_posterior else mean
        return (z, mean, logvar) if return_raw else z


class SparseStructureDecoder(_SSVaeBase):
    """forward(z [B, latent, 16³]) -> occupancy logits [B, out, 64³]; occupied where logits > 0."""

    def __init__(self, out_channels: int, latent_channels: int, num_res_blocks: int, channels: list[int],
                 num_res_blocks_middle: int = 2, norm_type: str = "layer", use_fp16: bool = False):
        super().__init__()
        self.out_channels = out_channels
        self.latent_channels = latent_channels
        self.input_layer = nn.Conv3d(latent_channels, channels[0], 3, padding=1)
        self.middle_block = nn.Sequential(*[ResBlock3d(channels[0], channels[0], norm_type)
                                            for _ in range(num_res_blocks_middle)])
        self.blocks = nn.ModuleList()
        for i, ch in enumerate(channels):
            self.blocks.extend([ResBlock3d(ch, ch, norm_type) for _ in range(num_res_blocks)])
            if i < len(channels) - 1:
                self.blocks.append(UpsampleBlock3d(ch, channels[i + 1]))
        self.out_layer = nn.Sequential(norm_layer(norm_type, channels[-1]), nn.SiLU(),
                                       nn.Conv3d(channels[-1], out_channels, 3, padding=1))
        self._set_fp16(use_fp16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input_layer(x).type(self.dtype)
        h = self.middle_block(h)
        for block in self.blocks:
            h = block(h)
        return self.out_layer(h.type(x.dtype))
