"""Latent npz files of the preprocessed dataset (spec data §8), written with `np.savez_compressed`, read without
pickle and checked against the format."""

from __future__ import annotations

import numpy as np


def save_latent(path, feats: np.ndarray, coords: np.ndarray) -> None:
    """shape_latents/... or pbr_latents/... file: feats f32 (T,C), coords u8 (T,3) on the R/16 grid."""
    feats = np.asarray(feats, dtype=np.float32)
    coords = np.asarray(coords)
    if feats.ndim != 2 or coords.ndim != 2 or coords.shape != (feats.shape[0], 3):
        raise ValueError(f"feats (T,C) and coords (T,3) expected, got {feats.shape} and {coords.shape}")
    if coords.size and (coords.min() < 0 or coords.max() > 255):
        raise ValueError("latent coords must fit in uint8")
    np.savez_compressed(path, feats=feats, coords=coords.astype(np.uint8))


def load_latent(path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        feats, coords = z["feats"], z["coords"]
    if feats.dtype != np.float32 or coords.dtype != np.uint8 or coords.shape != (feats.shape[0], 3):
        raise ValueError(f"{path}: not a latent file (feats f32 (T,C), coords u8 (T,3))")
    return feats, coords


def save_ss_latent(path, z: np.ndarray) -> None:
    """ss_latents/... file: z f32 (8,16,16,16), no batch dimension."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 4:
        raise ValueError(f"z must be (C,D,H,W), got {z.shape}")
    np.savez_compressed(path, z=z)


def load_ss_latent(path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as f:
        z = f["z"]
    if z.dtype != np.float32 or z.ndim != 4:
        raise ValueError(f"{path}: not a sparse-structure latent (z f32 (C,D,H,W))")
    return z
