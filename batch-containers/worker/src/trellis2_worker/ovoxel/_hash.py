"""A small open-addressing hash map from voxel keys (int64) to dense indices, for numba kernels.

Why not a dict: numba's typed dict is several times slower than linear probing over two flat arrays, and the
voxelisers do one lookup per lattice crossing (tens of millions at 1024³)."""

from __future__ import annotations

import numba as nb
import numpy as np

_MULT = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True)
def ht_slot(keys, key):
    """Slot holding `key`, or the empty slot where it would go (keys are ≥ 0, empty = -1)."""
    mask = keys.shape[0] - 1
    s = np.int64((np.uint64(key) * _MULT) >> np.uint64(20)) & mask
    while True:
        k = keys[s]
        if k == key or k == -1:
            return s
        s = (s + 1) & mask


@nb.njit(cache=True)
def ht_new(capacity):
    cap = 1024
    while cap < capacity * 2:
        cap *= 2
    return np.full(cap, -1, dtype=np.int64), np.empty(cap, dtype=np.int32)


@nb.njit(cache=True)
def ht_rehash(keys, vals):
    new_keys = np.full(keys.shape[0] * 2, -1, dtype=np.int64)
    new_vals = np.empty(keys.shape[0] * 2, dtype=np.int32)
    for i in range(keys.shape[0]):
        k = keys[i]
        if k != -1:
            s = ht_slot(new_keys, k)
            new_keys[s] = k
            new_vals[s] = vals[i]
    return new_keys, new_vals


@nb.njit(cache=True)
def ht_lookup(keys, vals, key):
    s = ht_slot(keys, key)
    if keys[s] == -1:
        return -1
    return vals[s]
