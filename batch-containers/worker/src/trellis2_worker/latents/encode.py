"""Run the three frozen encoders on one object's O-Voxels (docs/data-formats.md#latent-files), posterior means only.

Inputs are the quantised O-Voxel attributes exactly as the reference reads them back from its `.vxz` files:
dual-vertex offsets uint8 (/255), intersected flags, PBR attributes uint8 (/255·2-1).
"""

from __future__ import annotations

import numpy as np
import torch

from trellis2_worker.dataset import layout
from trellis2_worker.ovoxel import occupancy_grid


class EncodingError(ValueError):
    """One object's encoding failed (non-finite input or output, mismatched coords); the object is skipped."""


def _sparse_input(coords: np.ndarray, feats: np.ndarray, device):
    from trellis2_worker.models import SparseTensor

    c = np.asarray(coords, dtype=np.int32)
    bc = np.concatenate([np.zeros((len(c), 1), np.int32), c], axis=1)  # batch index 0 prepended
    return SparseTensor(torch.from_numpy(np.ascontiguousarray(feats)).to(device), torch.from_numpy(bc).to(device))


def _latent_out(z, what: str) -> tuple[np.ndarray, np.ndarray]:
    feats = z.feats.detach().float().cpu().numpy()
    coords = z.coords.detach().cpu().numpy()
    if coords.shape[1] == 4:
        if coords.size and (coords[:, 0] != 0).any():
            raise EncodingError(f"{what} encoder returned more than one batch item")
        coords = coords[:, 1:]
    if not np.isfinite(feats).all():
        raise EncodingError(f"{what} latent has non-finite values")
    return np.ascontiguousarray(feats, dtype=np.float32), np.ascontiguousarray(coords, dtype=np.int32)


@torch.no_grad()
def encode_shape(encoder, coords: np.ndarray, vertices: np.ndarray, intersected: np.ndarray, device="cpu"):
    """Shape latent (feats (T,C) f32, coords (T,3) i32) from the dual grid.

    `vertices`: uint8 (N,3) dual-vertex offsets inside the voxel (·/255 in the reference), or float in [0,1];
    `intersected`: (N,3) bool, or (N,1)/(N,) uint8 bits x=1, y=2, z=4 as stored in the `.vxz`.
    """
    v = np.asarray(vertices)
    v = v.astype(np.float32) / 255.0 if v.dtype == np.uint8 else v.astype(np.float32)
    inter = np.asarray(intersected)
    if inter.ndim == 1 or inter.shape[-1] == 1:
        bits = inter.reshape(-1).astype(np.uint8)
        inter = np.stack([bits % 2, bits // 2 % 2, bits // 4 % 2], axis=1).astype(bool)
    inter = inter.astype(bool)
    if len(v) == 0 or not np.isfinite(v).all():
        raise EncodingError("dual grid is empty or has non-finite vertices")
    z = encoder(_sparse_input(coords, v, device), _sparse_input(coords, inter, device), sample_posterior=False)
    return _latent_out(z, "shape")


@torch.no_grad()
def encode_pbr(encoder, coords: np.ndarray, attrs: np.ndarray, device="cpu"):
    """PBR latent from the PBR voxels: `attrs` uint8 (N,6) = base_color(3), metallic, roughness, alpha."""
    a = np.asarray(attrs)
    if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != 6:
        raise EncodingError(f"PBR attributes must be uint8 (N,6), got {a.dtype} {a.shape}")
    if len(a) == 0:
        raise EncodingError("no PBR voxels")
    feats = a.astype(np.float32) / 255.0 * 2.0 - 1.0
    z = encoder(_sparse_input(coords, feats, device), sample_posterior=False)
    return _latent_out(z, "PBR")


@torch.no_grad()
def encode_ss(encoder, occupancy_coords: np.ndarray, device="cpu") -> np.ndarray:
    """SS latent float32 (8,16,16,16) from the 64³ occupancy coords."""
    if len(occupancy_coords) == 0:
        raise EncodingError("empty sparse structure")
    occ = torch.from_numpy(occupancy_grid(occupancy_coords, layout.SS_GRID))[None].to(device)
    z = encoder(occ, sample_posterior=False)
    z = z[0].detach().float().cpu().numpy()
    if z.shape != layout.SS_LATENT_SHAPE:
        raise EncodingError(f"SS encoder returned {z.shape}, expected {layout.SS_LATENT_SHAPE}")
    if not np.isfinite(z).all():
        raise EncodingError("SS latent has non-finite values")
    return np.ascontiguousarray(z, dtype=np.float32)


def for_device(model, device):
    """The encoder ready to run on `device`: on CPU, a float32 copy of an fp16 model.

    CPUs have no fast float16 convolutions (a tiny encoder takes minutes in fp16, seconds in fp32); float32 only
    adds precision over the reference's fp16 blocks. On GPU the model runs as loaded, like the reference.
    """
    import copy

    if str(device).startswith("cuda") or getattr(model, "dtype", torch.float32) != torch.float16:
        return model
    m = copy.deepcopy(model).float()
    for mod in m.modules():
        if getattr(mod, "dtype", None) == torch.float16:
            mod.dtype = torch.float32
        if getattr(mod, "use_fp16", False):
            mod.use_fp16 = False
    return m.eval()
