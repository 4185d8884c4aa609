"""Mesh → flexible dual grid (docs/data-formats.md#dual-grid): active voxels, intersected-edge flags and QEF dual
vertices.

Follows the reference converter step by step (scan-line crossings, face term gated by a triangle/box overlap test,
boundary-edge term traversed by 3-D DDA, λ·cnt regulariser toward the crossings' centroid, box-constrained minimum)
with float32 accumulation like the reference, so the quantised outputs agree to ±1/255."""

from __future__ import annotations

import numba as nb
import numpy as np

from ._hash import ht_new, ht_rehash, ht_slot
from ._qr import cpqr_solve
from ._scan import scan_triangle

F32 = np.float32
UNIT_AABB = ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))

# Symmetric 4x4 QEF stored as 10 floats: index of (row, col).
_QI = np.array([[0, 1, 2, 3], [1, 4, 5, 6], [2, 5, 7, 8], [3, 6, 8, 9]], dtype=np.int64)


@nb.njit(cache=True, error_model="numpy")
def dot3(a0, a1, a2, b0, b1, b2):
    """3-term dot product summed as Eigen's unrolled reduction does: a0*b0 + (a1*b1 + a2*b2)."""
    return a0 * b0 + (a1 * b1 + a2 * b2)


@nb.njit(cache=True, error_model="numpy")
def _plane_q(v0, v1, v2, q):
    """Plane quadric of the triangle (float32, normal = normalize((v1-v0) x (v2-v1)))."""
    e0x, e0y, e0z = v1[0] - v0[0], v1[1] - v0[1], v1[2] - v0[2]
    e1x, e1y, e1z = v2[0] - v1[0], v2[1] - v1[1], v2[2] - v1[2]
    nx = e0y * e1z - e0z * e1y
    ny = e0z * e1x - e0x * e1z
    nz = e0x * e1y - e0y * e1x
    sq = dot3(nx, ny, nz, nx, ny, nz)
    if sq > F32(0.0):
        s = np.sqrt(sq)
        nx, ny, nz = nx / s, ny / s, nz / s
    d = -dot3(nx, ny, nz, v0[0], v0[1], v0[2])
    p = (nx, ny, nz, d)
    k = 0
    for i in range(4):
        for j in range(i, 4):
            q[k] = p[i] * p[j]
            k += 1
    return nx, ny, nz


@nb.njit(cache=True, error_model="numpy")
def _grow2(a, cap):
    out = np.zeros((cap,) + a.shape[1:], dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


@nb.njit(cache=True, error_model="numpy")
def _grow1(a, cap):
    out = np.zeros(cap, dtype=a.dtype)
    out[: a.shape[0]] = a
    return out


@nb.njit(cache=True, error_model="numpy")
def _intersect_pass(tris, res, h32):
    h = np.float64(h32)
    F = tris.shape[0]
    cap = max(4096, F * 4)
    coords = np.zeros((cap, 3), dtype=np.int32)
    means = np.zeros((cap, 3), dtype=np.float32)
    cnt = np.zeros(cap, dtype=np.float32)
    flags = np.zeros(cap, dtype=np.uint8)
    qef = np.zeros((cap, 10), dtype=np.float32)
    keys, vals = ht_new(cap)
    buf = np.empty((256, 7))
    q = np.zeros(10, dtype=np.float32)
    n = 0
    R = np.int64(res)
    for f in range(F):
        tri = tris[f]
        _plane_q(tri[0], tri[1], tri[2], q)
        m, buf = scan_triangle(tri, h, res, buf)
        for c in range(m):
            a = int(buf[c, 6])
            b = (a + 1) % 3
            cc = (a + 2) % 3
            px = np.float32(buf[c, 3])
            py = np.float32(buf[c, 4])
            pz = np.float32(buf[c, 5])
            for db in range(2):
                for dc in range(2):
                    vx = np.int64(buf[c, 0]) + (db if b == 0 else 0) + (dc if cc == 0 else 0)
                    vy = np.int64(buf[c, 1]) + (db if b == 1 else 0) + (dc if cc == 1 else 0)
                    vz = np.int64(buf[c, 2]) + (db if b == 2 else 0) + (dc if cc == 2 else 0)
                    key = (vx * R + vy) * R + vz
                    s = ht_slot(keys, key)
                    if keys[s] == -1:
                        if n >= cap:
                            cap *= 2
                            coords = _grow2(coords, cap)
                            means = _grow2(means, cap)
                            cnt = _grow1(cnt, cap)
                            flags = _grow1(flags, cap)
                            qef = _grow2(qef, cap)
                        if (n + 1) * 2 > keys.shape[0]:
                            keys, vals = ht_rehash(keys, vals)
                            s = ht_slot(keys, key)
                        keys[s] = key
                        vals[s] = n
                        coords[n, 0] = vx
                        coords[n, 1] = vy
                        coords[n, 2] = vz
                        i = n
                        n += 1
                    else:
                        i = vals[s]
                    means[i, 0] += px
                    means[i, 1] += py
                    means[i, 2] += pz
                    cnt[i] += F32(1.0)
                    if db == 0 and dc == 0:
                        flags[i] |= np.uint8(1 << a)
                    for k in range(10):
                        qef[i, k] += q[k]
    return coords[:n].copy(), means[:n].copy(), cnt[:n].copy(), flags[:n].copy(), qef[:n].copy(), keys, vals


@nb.njit(cache=True, error_model="numpy")
def _face_pass(tris, res, h32, keys, vals, qef):
    """Add each triangle's plane quadric to every already-active voxel its triangle overlaps (box test in float32)."""
    q = np.zeros(10, dtype=np.float32)
    R = np.int64(res)
    zero = F32(0.0)
    for f in range(tris.shape[0]):
        v0, v1, v2 = tris[f, 0], tris[f, 1], tris[f, 2]
        nx, ny, nz = _plane_q(v0, v1, v2, q)
        e0 = (v1[0] - v0[0], v1[1] - v0[1], v1[2] - v0[2])
        e1 = (v2[0] - v1[0], v2[1] - v1[1], v2[2] - v1[2])
        e2 = (v0[0] - v2[0], v0[1] - v2[1], v0[2] - v2[2])
        lo = np.empty(3, dtype=np.int64)
        hi = np.empty(3, dtype=np.int64)
        for ax in range(3):
            mn = min(v0[ax], min(v1[ax], v2[ax])) / h32
            mx = max(v0[ax], max(v1[ax], v2[ax])) / h32
            lo[ax] = max(int(mn), 0)
            hi[ax] = min(int(mx + F32(1.0)), res)
        cx = h32 if nx > zero else zero
        cy = h32 if ny > zero else zero
        cz = h32 if nz > zero else zero
        d1 = dot3(nx, ny, nz, cx - v0[0], cy - v0[1], cz - v0[2])
        d2 = dot3(nx, ny, nz, (h32 - cx) - v0[0], (h32 - cy) - v0[1], (h32 - cz) - v0[2])
        # 2-D edge functions on the XY, YZ and ZX projections.
        m = F32(-1.0) if nz < zero else F32(1.0)
        xy0 = (-m * e0[1], m * e0[0])
        xy1 = (-m * e1[1], m * e1[0])
        xy2 = (-m * e2[1], m * e2[0])
        dxy0 = -(xy0[0] * v0[0] + xy0[1] * v0[1]) + (max(xy0[0], zero) * h32 + max(xy0[1], zero) * h32)
        dxy1 = -(xy1[0] * v1[0] + xy1[1] * v1[1]) + (max(xy1[0], zero) * h32 + max(xy1[1], zero) * h32)
        dxy2 = -(xy2[0] * v2[0] + xy2[1] * v2[1]) + (max(xy2[0], zero) * h32 + max(xy2[1], zero) * h32)
        m = F32(-1.0) if nx < zero else F32(1.0)
        yz0 = (-m * e0[2], m * e0[1])
        yz1 = (-m * e1[2], m * e1[1])
        yz2 = (-m * e2[2], m * e2[1])
        dyz0 = -(yz0[0] * v0[1] + yz0[1] * v0[2]) + (max(yz0[0], zero) * h32 + max(yz0[1], zero) * h32)
        dyz1 = -(yz1[0] * v1[1] + yz1[1] * v1[2]) + (max(yz1[0], zero) * h32 + max(yz1[1], zero) * h32)
        dyz2 = -(yz2[0] * v2[1] + yz2[1] * v2[2]) + (max(yz2[0], zero) * h32 + max(yz2[1], zero) * h32)
        m = F32(-1.0) if ny < zero else F32(1.0)
        zx0 = (-m * e0[0], m * e0[2])
        zx1 = (-m * e1[0], m * e1[2])
        zx2 = (-m * e2[0], m * e2[2])
        dzx0 = -(zx0[0] * v0[2] + zx0[1] * v0[0]) + (max(zx0[0], zero) * h32 + max(zx0[1], zero) * h32)
        dzx1 = -(zx1[0] * v1[2] + zx1[1] * v1[0]) + (max(zx1[0], zero) * h32 + max(zx1[1], zero) * h32)
        dzx2 = -(zx2[0] * v2[2] + zx2[1] * v2[0]) + (max(zx2[0], zero) * h32 + max(zx2[1], zero) * h32)
        for z in range(lo[2], hi[2]):
            pz = h32 * F32(z)
            for y in range(lo[1], hi[1]):
                py = h32 * F32(y)
                for x in range(lo[0], hi[0]):
                    px = h32 * F32(x)
                    ndp = dot3(nx, ny, nz, px, py, pz)
                    if (ndp + d1) * (ndp + d2) > zero:
                        continue
                    if xy0[0] * px + xy0[1] * py + dxy0 < zero:
                        continue
                    if xy1[0] * px + xy1[1] * py + dxy1 < zero:
                        continue
                    if xy2[0] * px + xy2[1] * py + dxy2 < zero:
                        continue
                    if yz0[0] * py + yz0[1] * pz + dyz0 < zero:
                        continue
                    if yz1[0] * py + yz1[1] * pz + dyz1 < zero:
                        continue
                    if yz2[0] * py + yz2[1] * pz + dyz2 < zero:
                        continue
                    if zx0[0] * pz + zx0[1] * px + dzx0 < zero:
                        continue
                    if zx1[0] * pz + zx1[1] * px + dzx1 < zero:
                        continue
                    if zx2[0] * pz + zx2[1] * px + dzx2 < zero:
                        continue
                    s = ht_slot(keys, (np.int64(x) * R + y) * R + z)
                    if keys[s] != -1:
                        i = vals[s]
                        for k in range(10):
                            qef[i, k] += q[k]


@nb.njit(cache=True, error_model="numpy")
def _boundary_pass(segs, res, h32, weight, keys, vals, qef):
    """Add weight × (squared distance to the boundary edge's line) to every active voxel the edge passes through."""
    R = np.int64(res)
    q = np.zeros(10, dtype=np.float32)
    A = np.zeros((3, 3), dtype=np.float32)
    inf = np.inf
    for si in range(segs.shape[0]):
        v0 = segs[si, 0]
        v1 = segs[si, 1]
        d = np.empty(3)
        for ax in range(3):
            d[ax] = np.float64(v1[ax] - v0[ax])  # float32 difference, widened like the reference
        length = np.sqrt(dot3(d[0], d[1], d[2], d[0], d[1], d[2]))
        if length < 1e-6:
            continue
        for ax in range(3):
            d[ax] /= length
        for i in range(3):
            for j in range(3):
                A[i, j] = (F32(1.0) if i == j else F32(0.0)) - np.float32(d[i] * d[j])
        b = np.empty(3, dtype=np.float32)
        for i in range(3):
            b[i] = dot3(-A[i, 0], -A[i, 1], -A[i, 2], v0[0], v0[1], v0[2])
        r = np.empty(3, dtype=np.float32)
        for j in range(3):
            r[j] = dot3(v0[0], v0[1], v0[2], A[0, j], A[1, j], A[2, j])
        c = dot3(r[0], r[1], r[2], v0[0], v0[1], v0[2])
        full = np.empty((4, 4), dtype=np.float32)
        for i in range(3):
            for j in range(3):
                full[i, j] = A[i, j]
            full[i, 3] = b[i]
            full[3, i] = b[i]
        full[3, 3] = c
        k = 0
        for i in range(4):
            for j in range(i, 4):
                q[k] = weight * full[i, j]
                k += 1
        cur = np.empty(3, dtype=np.int64)
        step = np.empty(3, dtype=np.int64)
        tmax = np.empty(3)
        tdelta = np.empty(3)
        for ax in range(3):
            cur[ax] = np.int64(np.floor(v0[ax] / h32))
            step[ax] = 1 if d[ax] > 0 else -1
            if d[ax] == 0.0:
                tmax[ax] = inf
                tdelta[ax] = inf
            else:
                border = h32 * np.float32(cur[ax] + (1 if step[ax] > 0 else 0))
                tmax[ax] = np.float64(border - v0[ax]) / d[ax]
                tdelta[ax] = np.float64(h32) / abs(d[ax])
        while True:
            # the reference visits the start voxel, then every voxel the DDA steps into
            if 0 <= cur[0] < res and 0 <= cur[1] < res and 0 <= cur[2] < res:
                s = ht_slot(keys, (cur[0] * R + cur[1]) * R + cur[2])
                if keys[s] != -1:
                    i = vals[s]
                    for kk in range(10):
                        qef[i, kk] += q[kk]
            if tmax[0] < tmax[1]:
                ax = 0 if tmax[0] < tmax[2] else 2
            else:
                ax = 1 if tmax[1] < tmax[2] else 2
            if tmax[ax] > length:
                break
            cur[ax] += step[ax]
            tmax[ax] += tdelta[ax]


@nb.njit(cache=True, error_model="numpy")
def _energy(Q, p0, p1, p2):
    """[p;1]ᵀ Q [p;1] in float32: row r = pᵀQ, then r·p, 4-term sums paired as SSE reductions do."""
    p = (p0, p1, p2, F32(1.0))
    r = np.empty(4, dtype=np.float32)
    for j in range(4):
        r[j] = (p[0] * Q[0, j] + p[2] * Q[2, j]) + (p[1] * Q[1, j] + p[3] * Q[3, j])
    return (r[0] * p[0] + r[2] * p[2]) + (r[1] * p[1] + r[3] * p[3])


@nb.njit(cache=True, error_model="numpy")
def _solve_pass(coords, means, cnt, qef, h32, lam):
    """Box-constrained QEF minimum per voxel, in float32 and in the reference's candidate order."""
    N = coords.shape[0]
    out = np.empty((N, 3), dtype=np.float32)
    Q = np.empty((4, 4), dtype=np.float32)
    Qf = np.empty(10, dtype=np.float32)
    lo = np.empty(3, dtype=np.float32)
    hi = np.empty(3, dtype=np.float32)
    best_p = np.empty(3, dtype=np.float32)
    pp = np.empty(3, dtype=np.float32)
    A3 = np.empty((3, 3), dtype=np.float32)
    b3 = np.empty(3, dtype=np.float32)
    x3 = np.empty(3, dtype=np.float32)
    A2 = np.empty((2, 2), dtype=np.float32)
    A2c = np.empty((2, 2), dtype=np.float32)
    b2 = np.empty(2, dtype=np.float32)
    x2 = np.empty(2, dtype=np.float32)
    for n in range(N):
        for k in range(10):
            Qf[k] = qef[n, k]
        if lam > F32(0.0):
            c = cnt[n]
            p0, p1, p2 = means[n, 0] / c, means[n, 1] / c, means[n, 2] / c
            s = lam * c
            Qf[0] += s
            Qf[4] += s
            Qf[7] += s
            Qf[3] += s * (-p0)
            Qf[6] += s * (-p1)
            Qf[8] += s * (-p2)
            Qf[9] += s * dot3(p0, p1, p2, p0, p1, p2)
        k = 0
        for i in range(4):
            for j in range(i, 4):
                Q[i, j] = Qf[k]
                Q[j, i] = Qf[k]
                k += 1
        for ax in range(3):
            lo[ax] = np.float32(coords[n, ax]) * h32
            hi[ax] = np.float32(coords[n, ax] + 1) * h32
        for i in range(3):
            for j in range(3):
                A3[i, j] = Q[i, j]
            b3[i] = -Q[i, 3]
        cpqr_solve(A3, b3, 3, x3)
        if lo[0] <= x3[0] <= hi[0] and lo[1] <= x3[1] <= hi[1] and lo[2] <= x3[2] <= hi[2]:
            out[n, 0], out[n, 1], out[n, 2] = x3[0], x3[1], x3[2]
            continue
        best = np.float32(np.inf)
        best_p[0], best_p[1], best_p[2] = x3[0], x3[1], x3[2]
        # 6 faces: one coordinate fixed, 2x2 solve for the other two
        for fa in range(3):
            a1 = (fa + 1) % 3
            a2 = (fa + 2) % 3
            for side in range(2):
                fv = lo[fa] if side == 0 else hi[fa]
                A2[0, 0], A2[0, 1], A2[1, 0], A2[1, 1] = Q[a1, a1], Q[a1, a2], Q[a2, a1], Q[a2, a2]
                b2[0] = (-Q[a1, fa]) * fv + (-Q[a1, 3])
                b2[1] = (-Q[a2, fa]) * fv + (-Q[a2, 3])
                A2c[:, :] = A2
                cpqr_solve(A2c, b2, 2, x2)
                if lo[a1] <= x2[0] <= hi[a1] and lo[a2] <= x2[1] <= hi[a2]:
                    pp[fa] = fv
                    pp[a1] = x2[0]
                    pp[a2] = x2[1]
                    e = _energy(Q, pp[0], pp[1], pp[2])
                    if e < best:
                        best = e
                        best_p[:] = pp
        # 12 edges: two coordinates fixed
        for fr in range(3):
            a1 = (fr + 1) % 3
            a2 = (fr + 2) % 3
            a = Q[fr, fr]
            for s1 in range(2):
                for s2 in range(2):
                    f1 = lo[a1] if s1 == 0 else hi[a1]
                    f2 = lo[a2] if s2 == 0 else hi[a2]
                    x = -dot3(Q[fr, a1], Q[fr, a2], Q[fr, 3], f1, f2, F32(1.0)) / a
                    if lo[fr] <= x <= hi[fr]:
                        pp[fr] = x
                        pp[a1] = f1
                        pp[a2] = f2
                        e = _energy(Q, pp[0], pp[1], pp[2])
                        if e < best:
                            best = e
                            best_p[:] = pp
        # 8 corners (always feasible; the reference enumerates max before min)
        for sx in range(2):
            for sy in range(2):
                for sz in range(2):
                    px = lo[0] if sx else hi[0]
                    py = lo[1] if sy else hi[1]
                    pz = lo[2] if sz else hi[2]
                    e = _energy(Q, px, py, pz)
                    if e < best:
                        best = e
                        best_p[0], best_p[1], best_p[2] = px, py, pz
        out[n, 0], out[n, 1], out[n, 2] = best_p[0], best_p[1], best_p[2]
    return out


def _voxel_size(grid_size: int, aabb) -> np.float32:
    ext = np.asarray(aabb, dtype=np.float32)
    size = (ext[1] - ext[0]) / np.float32(grid_size)
    if not np.all(size == size[0]):
        raise ValueError("only cubic voxels are supported (a cubic aabb)")
    return np.float32(size[0])


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """Undirected edges (by vertex index) used by exactly one face, sorted (the reference iterates a std::map)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    e.sort(axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq[counts == 1]


def mesh_to_flexible_dual_grid(
    vertices: np.ndarray,
    faces: np.ndarray,
    grid_size: int,
    aabb=UNIT_AABB,
    face_weight: float = 1.0,
    boundary_weight: float = 0.2,
    regularization_weight: float = 1e-2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flexible dual grid of a triangle mesh, as the TRELLIS.2 data toolkit calls it (its weights are the defaults).

    Returns (coords int32 (N,3), dual_vertices float32 (N,3), intersected bool (N,3)) in discovery order.
    Like the reference, `dual_vertices` are in the aabb-min-shifted frame: `dual*grid_size - coords` is the
    voxel-local offset in [0, 1] (see `dual_grid_attrs`). `face_weight` is an on/off switch, as in the reference."""
    vertices = np.asarray(vertices, dtype=np.float32)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError("vertices must be (V,3) and faces (F,3)")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("face index out of range")
    h32 = _voxel_size(grid_size, aabb)
    shifted = vertices - np.asarray(aabb, dtype=np.float32)[0]
    tris = np.ascontiguousarray(shifted[faces])
    coords, means, cnt, flags, qef, keys, vals = _intersect_pass(tris, int(grid_size), h32)
    if face_weight > 0:
        _face_pass(tris, int(grid_size), h32, keys, vals, qef)
    if boundary_weight > 0 and len(faces):
        be = boundary_edges(faces)
        if len(be):
            segs = np.ascontiguousarray(shifted[be])
            _boundary_pass(segs, int(grid_size), h32, np.float32(boundary_weight), keys, vals, qef)
    del keys, vals
    dual = _solve_pass(coords, means, cnt, qef, h32, np.float32(regularization_weight))
    intersected = np.stack([(flags >> b) & 1 for b in range(3)], axis=1).astype(bool)
    return coords, dual, intersected


def dual_grid_attrs(coords: np.ndarray, dual_vertices: np.ndarray, intersected: np.ndarray,
                    grid_size: int) -> dict[str, np.ndarray]:
    """The `.vxz` attributes the data toolkit writes (docs/data-formats.md#dual-grid): `vertices` uint8 (N,3), the
    voxel-local dual vertex ×255 truncated, and `intersected` uint8 (N,1) with bits x=1, y=2, z=4."""
    local = dual_vertices.astype(np.float32) * np.float32(grid_size) - coords.astype(np.float32)
    if local.size and (local.min() < -1e-3 or local.max() > 1 + 1e-3):
        raise ValueError("dual vertices out of their voxels")
    local = np.clip(local, 0, 1)
    verts = (local * np.float32(255)).astype(np.uint8)
    inter = np.asarray(intersected).astype(np.uint8)
    bits = (inter[:, 0] | (inter[:, 1] << 1) | (inter[:, 2] << 2)).astype(np.uint8)[:, None]
    return {"vertices": verts, "intersected": bits}
