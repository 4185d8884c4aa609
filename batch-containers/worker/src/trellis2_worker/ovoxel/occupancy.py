"""The 64³ sparse-structure occupancy, exactly as the reference derives it, without building the 1024 dual grid.

The reference SS target is the set of 64³ cells holding an active voxel of the **1024** dual grid
(`unique(coords_1024 // 16)`, docs/data-formats.md#ss-occupancy). A 1024-voxel is active iff it is one of the four
voxels around a point where the surface crosses a 1024-lattice line (docs/data-formats.md#dual-grid; the scan of
`_scan.py`): a crossing on the line parallel to axis a at (b, c) = ((i+1)h, (j+1)h), at a = a_cross, activates voxels
(i+db, j+dc, int(a_cross/h)), db, dc ∈ {0, 1}.
So a 64-cell is occupied iff some crossing of a 1024-lattice line activates a voxel inside it. The QEFs, the dual
vertex solve, the hash map of millions of voxels and the 1024 encoding are all irrelevant to that set; only the crossing
scan is needed, and its result can be folded into a 64³ bit grid on the fly. This module runs exactly that scan (same
double-precision arithmetic, same truncations as the reference scan-line pass) and keeps one bit per 64-cell.
Since h = 1/1024 and 16 are powers of two, `int(a/h) // 16` needs no extra rounding care.

Why not the 512 grid: 512-lattice lines are only the even 1024 lines, so a triangle that crosses only odd lines
(small triangles, thin parts) occupies a 64-cell at 1024 that the 512 grid never sees.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._scan import _clampi, _lerp  # the reference's lerp and clamped truncation, shared with the voxelisers' scan

FINE_RESOLUTION = 1024
COARSE_RESOLUTION = 64


@njit(cache=True)
def _scan(tris, res, shift, occ):
    """Mark `occ[cell] = 1` for every cell (voxel >> shift) of every voxel the crossing scan activates."""
    h = 1.0 / res  # float32 in the reference; exact for powers of two, so the same double
    n = tris.shape[0]
    tb = np.empty(3)
    tc = np.empty(3)
    ta = np.empty(3)
    coord = np.empty(3, np.int64)
    for f in range(n):
        for ax2 in range(3):
            ax0 = (ax2 + 1) % 3
            ax1 = (ax2 + 2) % 3
            for k in range(3):
                tb[k] = np.float64(tris[f, k, ax0])
                tc[k] = np.float64(tris[f, k, ax1])
                ta[k] = np.float64(tris[f, k, ax2])
            # sort the three corners by their ax1 coordinate (ties keep any order: they give empty row ranges)
            o0, o1, o2 = 0, 1, 2
            if tc[o1] < tc[o0]:
                o0, o1 = o1, o0
            if tc[o2] < tc[o1]:
                o1, o2 = o2, o1
                if tc[o1] < tc[o0]:
                    o0, o1 = o1, o0
            start = _clampi(int(tc[o0] / h), 0, res - 1)
            mid = _clampi(int(tc[o1] / h), 0, res - 1)
            end = _clampi(int(tc[o2] / h), 0, res - 1)
            for half in range(2):
                if half == 0:
                    r0, r1, p, q, s = start, mid, o0, o1, o2
                else:
                    r0, r1, p, q, s = mid, end, o2, o1, o0
                for j in range(r0, r1):
                    y = (j + 1) * h
                    # edge p→q and p→s at row line y, each giving (b, a)
                    x3 = _lerp(tc[p], tc[q], y, tb[p], tb[q])
                    z3 = _lerp(tc[p], tc[q], y, ta[p], ta[q])
                    x4 = _lerp(tc[p], tc[s], y, tb[p], tb[s])
                    z4 = _lerp(tc[p], tc[s], y, ta[p], ta[s])
                    if x3 > x4:
                        x3, x4 = x4, x3
                        z3, z4 = z4, z3
                    i0 = _clampi(int(x3 / h), 0, res - 1)
                    i1 = _clampi(int(x4 / h), 0, res - 1)
                    for i in range(i0, i1):
                        x = (i + 1) * h
                        z = _lerp(x3, x4, x, z3, z4)
                        kz = int(z / h)
                        if kz < 0 or kz >= res:
                            continue
                        for db in range(2):
                            for dc in range(2):
                                coord[ax0] = (i + db) >> shift
                                coord[ax1] = (j + dc) >> shift
                                coord[ax2] = kz >> shift
                                occ[coord[0], coord[1], coord[2]] = 1


def triangles_in_grid_frame(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,3,3) float32 triangles shifted from the unit cube [-0.5,0.5]³ to [0,1]³, as the reference converter sees them."""
    v = np.asarray(vertices, dtype=np.float32) - np.float32(-0.5)
    return np.ascontiguousarray(v[np.asarray(faces, dtype=np.int64)])


def ss_occupancy(vertices: np.ndarray, faces: np.ndarray, fine: int = FINE_RESOLUTION, coarse: int = COARSE_RESOLUTION) -> np.ndarray:
    """Coords (N,3) int32, sorted, of the `coarse`³ cells holding an active voxel of the `fine` dual grid.

    `vertices` are in the unit cube (docs/data-formats.md#normalisation applied), `faces` index them.
    Equal to `unique(coords_fine // (fine // coarse))` of the reference dual grid at `fine`.
    """
    if fine % coarse or (fine & (fine - 1)) or (coarse & (coarse - 1)):
        raise ValueError("fine and coarse must be powers of two with coarse dividing fine")
    shift = int(np.log2(fine // coarse))
    occ = np.zeros((coarse, coarse, coarse), np.uint8)
    tris = triangles_in_grid_frame(vertices, faces)
    if len(tris):
        _scan(tris, fine, shift, occ)
    return np.argwhere(occ).astype(np.int32)


def occupancy_grid(coords: np.ndarray, size: int = COARSE_RESOLUTION) -> np.ndarray:
    """Dense (1,size,size,size) float32 occupancy with occ[x,y,z] = 1, the SS encoder's input
    (docs/data-formats.md#ss-occupancy)."""
    occ = np.zeros((1, size, size, size), np.float32)
    c = np.asarray(coords)
    if c.size:
        if c.min() < 0 or c.max() >= size:
            raise ValueError(f"occupancy coords must lie in [0, {size})")
        occ[0, c[:, 0], c[:, 1], c[:, 2]] = 1.0
    return occ
