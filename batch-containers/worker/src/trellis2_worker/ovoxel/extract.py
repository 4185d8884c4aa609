"""O-Voxel → triangle mesh on CPU (docs/data-formats.md#dual-grid): one vertex per voxel, one quad per flagged edge
whose four edge-sharing voxels are all active, split into two triangles."""

from __future__ import annotations

import numpy as np

from .fdg import UNIT_AABB

# Voxels around the lattice edge flagged on voxel v, for the x, y and z edges, in quad order.
EDGE_NEIGHBOURS = np.array([
    [[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0]],
    [[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]],
    [[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]],
], dtype=np.int64)


def _keys(c: np.ndarray, res: int) -> np.ndarray:
    c = c.astype(np.int64)
    return (c[..., 0] * (res + 2) + c[..., 1]) * (res + 2) + c[..., 2]


def flexible_dual_grid_to_mesh(
    coords: np.ndarray,
    dual_vertices: np.ndarray,
    intersected: np.ndarray,
    grid_size: int,
    aabb=UNIT_AABB,
    split_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mesh from an O-Voxel shape. `dual_vertices` are voxel-local offsets in voxel units (e.g. the stored
    `vertices`/255), `intersected` (N,3) bools (or the stored x+2y+4z bits as (N,) / (N,1)).

    Returns (vertices float32 (N,3) in the aabb frame, faces int64 (M,3)). Without `split_weight`, every quad is
    split along its 0–2 diagonal unless triangle 0-1-2 is degenerate, which is what the reference does in practice;
    with it, along 0–2 when w0·w2 > w1·w3, else along 1–3. Face winding is not made consistent (as upstream)."""
    coords = np.asarray(coords).astype(np.int64)
    local = np.asarray(dual_vertices, dtype=np.float32)
    inter = np.asarray(intersected)
    if inter.ndim == 1 or (inter.ndim == 2 and inter.shape[1] == 1):
        bits = inter.reshape(-1).astype(np.uint8)
        inter = np.stack([(bits >> b) & 1 for b in range(3)], axis=1).astype(bool)
    inter = inter.astype(bool)
    lo = np.asarray(aabb, dtype=np.float32)[0]
    size = (np.asarray(aabb, dtype=np.float32)[1] - lo) / np.float32(grid_size)
    verts = (coords.astype(np.float32) + local) * size + lo
    n = len(coords)
    if n == 0:
        return verts.astype(np.float32), np.zeros((0, 3), np.int64)
    keys = _keys(coords, grid_size)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    vox, axis = np.nonzero(inter)
    nb = coords[vox][:, None, :] + EDGE_NEIGHBOURS[axis]            # (M, 4, 3)
    nk = _keys(nb, grid_size)
    pos = np.clip(np.searchsorted(sorted_keys, nk), 0, n - 1)
    found = sorted_keys[pos] == nk
    valid = found.all(axis=1)
    quads = order[pos[valid]]                                          # (L, 4) voxel indices
    split_02 = np.array([0, 1, 2, 0, 2, 3])
    split_13 = np.array([0, 1, 3, 3, 1, 2])
    if split_weight is None:
        q = verts[quads].astype(np.float64)
        nrm = np.cross(q[:, 1] - q[:, 0], q[:, 2] - q[:, 0])
        use02 = (nrm * nrm).sum(axis=1) > 0
    else:
        w = np.asarray(split_weight, dtype=np.float32).reshape(-1)[quads]
        use02 = w[:, 0] * w[:, 2] > w[:, 1] * w[:, 3]
    tris = np.where(use02[:, None], quads[:, split_02], quads[:, split_13]).reshape(-1, 3)
    return verts.astype(np.float32), tris.astype(np.int64)
