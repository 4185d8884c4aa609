"""Scan-line rasterisation of a triangle against the lattice lines of the voxel grid (docs/data-formats.md#dual-grid).

Shared by the dual-grid and the PBR voxelisers so that both produce the same voxel set. The arithmetic copies the
reference converter's: vertices as float32 widened to double, truncating `int()` row/column indices clamped to the grid,
and linear interpolation that returns the first end point when both share the coordinate."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, error_model="numpy")
def _lerp(a, b, t, va, vb):
    if a == b:
        return va
    alpha = (t - a) / (b - a)
    return (1.0 - alpha) * va + alpha * vb


@nb.njit(cache=True, error_model="numpy")
def _clampi(v, lo, hi):
    return lo if v < lo else (hi if v > hi else v)


@nb.njit(cache=True, error_model="numpy")
def _grow(buf, need):
    cap = buf.shape[0]
    while cap < need:
        cap *= 2
    out = np.empty((cap, buf.shape[1]), dtype=buf.dtype)
    out[: buf.shape[0]] = buf
    return out


@nb.njit(cache=True, error_model="numpy")
def scan_triangle(tri, h, res, buf):
    """Lattice-line crossings of one triangle (3,3 float32, grid frame [0, res*h]).

    Returns (count, buf): row r of buf is (i, j, k, px, py, pz, axis): the crossing point P on the lattice line
    parallel to `axis`, and (i, j, k) the voxel at the line's -,- side (the one whose `intersected[axis]` it sets).
    The four voxels sharing that line are (i, j, k) + {0,1}·e_b + {0,1}·e_c, b = axis+1, c = axis+2 (mod 3)."""
    n = 0
    for a in range(3):
        ax0 = (a + 1) % 3  # columns (the reference's "x")
        ax1 = (a + 2) % 3  # rows, the sort key ("y")
        # (ax0, ax1, a) triples in double, sorted by the ax1 component (stable, like std::sort on 3 items is not
        # guaranteed to be; ties only reorder equal rows, which gives the same crossings).
        t = np.empty((3, 3))
        for r in range(3):
            t[r, 0] = np.float64(tri[r, ax0])
            t[r, 1] = np.float64(tri[r, ax1])
            t[r, 2] = np.float64(tri[r, a])
        # insertion sort by column 1
        for r in range(1, 3):
            rr = r
            while rr > 0 and t[rr, 1] < t[rr - 1, 1]:
                for c in range(3):
                    tmp = t[rr, c]
                    t[rr, c] = t[rr - 1, c]
                    t[rr - 1, c] = tmp
                rr -= 1
        start = _clampi(int(t[0, 1] / h), 0, res - 1)
        mid = _clampi(int(t[1, 1] / h), 0, res - 1)
        end = _clampi(int(t[2, 1] / h), 0, res - 1)
        for half in range(2):
            if half == 0:
                r0, r1, p0, p1, p2 = start, mid, 0, 1, 2
            else:
                r0, r1, p0, p1, p2 = mid, end, 2, 1, 0
            for yi in range(r0, r1):
                y = (yi + 1) * h
                ax = _lerp(t[p0, 1], t[p1, 1], y, t[p0, 0], t[p1, 0])
                az = _lerp(t[p0, 1], t[p1, 1], y, t[p0, 2], t[p1, 2])
                bx = _lerp(t[p0, 1], t[p2, 1], y, t[p0, 0], t[p2, 0])
                bz = _lerp(t[p0, 1], t[p2, 1], y, t[p0, 2], t[p2, 2])
                if ax > bx:
                    ax, bx = bx, ax
                    az, bz = bz, az
                ls = _clampi(int(ax / h), 0, res - 1)
                le = _clampi(int(bx / h), 0, res - 1)
                for xi in range(ls, le):
                    x = (xi + 1) * h
                    z = _lerp(ax, bx, x, az, bz)
                    zi = int(z / h)
                    if zi >= 0 and zi < res:
                        if n >= buf.shape[0]:
                            buf = _grow(buf, n + 1)
                        buf[n, ax0] = xi
                        buf[n, ax1] = yi
                        buf[n, a] = zi
                        buf[n, 3 + ax0] = x
                        buf[n, 3 + ax1] = y
                        buf[n, 3 + a] = z
                        buf[n, 6] = a
                        n += 1
    return n, buf
