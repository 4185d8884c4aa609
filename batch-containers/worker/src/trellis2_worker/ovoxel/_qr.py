"""Float32 column-pivoting Householder QR solve of small (2x2, 3x3) systems, in the operation order of Eigen 3.4's
`ColPivHouseholderQR` (as the reference converter calls it).

Why: the QEF systems are ill-conditioned along the surface (only the 1e-2 regulariser pins the tangent directions),
so the reference's dual vertices carry float32 rounding of several /255 steps there. Reproducing its bytes needs the
same rounding, not a more accurate solve."""

from __future__ import annotations

import numba as nb
import numpy as np

F32 = np.float32
_EPS = np.float32(np.finfo(np.float32).eps)
_TINY = np.float32(np.finfo(np.float32).tiny)


@nb.njit(cache=True, error_model="numpy")
def _seq_sqnorm(a, col, start, n):
    # dynamic-size reduction: left to right
    s = a[start, col] * a[start, col]
    for i in range(start + 1, n):
        s = s + a[i, col] * a[i, col]
    return s


@nb.njit(cache=True, error_model="numpy")
def cpqr_solve(A, b, n, out):
    """Solve A x = b (A float32 n x n, n = 2 or 3; overwritten) into `out` (float32)."""
    norms_u = np.empty(3, dtype=np.float32)
    norms_d = np.empty(3, dtype=np.float32)
    hcoef = np.zeros(3, dtype=np.float32)
    trans = np.empty(3, dtype=np.int64)
    tmp = np.empty(3, dtype=np.float32)
    for k in range(n):
        # fixed-size column norm: Eigen's unrolled reduction pairs the last two terms first
        if n == 3:
            sq = A[0, k] * A[0, k] + (A[1, k] * A[1, k] + A[2, k] * A[2, k])
        else:
            sq = A[0, k] * A[0, k] + A[1, k] * A[1, k]
        norms_d[k] = np.sqrt(sq)
        norms_u[k] = norms_d[k]
    mx = norms_u[0]
    for k in range(1, n):
        if norms_u[k] > mx:
            mx = norms_u[k]
    t = mx * _EPS
    threshold_helper = (t * t) / F32(n)
    downdate_thr = np.sqrt(_EPS)
    nonzero = n
    for k in range(n):
        big = k
        bv = norms_u[k]
        for j in range(k + 1, n):
            if norms_u[j] > bv:
                bv = norms_u[j]
                big = j
        big_sq = bv * bv
        if nonzero == n and big_sq < threshold_helper * F32(n - k):
            nonzero = k
        trans[k] = big
        if big != k:
            for i in range(n):
                tt = A[i, k]
                A[i, k] = A[i, big]
                A[i, big] = tt
            tt = norms_u[k]
            norms_u[k] = norms_u[big]
            norms_u[big] = tt
            tt = norms_d[k]
            norms_d[k] = norms_d[big]
            norms_d[big] = tt
        # Householder vector of A[k:, k]
        c0 = A[k, k]
        tail_sq = F32(0.0) if k == n - 1 else _seq_sqnorm(A, k, k + 1, n)
        if tail_sq <= _TINY:
            tau = F32(0.0)
            beta = c0
            for i in range(k + 1, n):
                A[i, k] = F32(0.0)
        else:
            beta = np.sqrt(c0 * c0 + tail_sq)
            if c0 >= F32(0.0):
                beta = -beta
            den = c0 - beta
            for i in range(k + 1, n):
                A[i, k] = A[i, k] / den
            tau = (beta - c0) / beta
        hcoef[k] = tau
        A[k, k] = beta
        # apply it to the remaining columns A[k:, k+1:]
        if k + 1 < n:
            if n - k == 1:
                for j in range(k + 1, n):
                    A[k, j] = A[k, j] * (F32(1.0) - tau)
            elif tau != F32(0.0):
                for j in range(k + 1, n):
                    s = A[k + 1, k] * A[k + 1, j]
                    for i in range(k + 2, n):
                        s = s + A[i, k] * A[i, j]
                    tmp[j] = s + A[k, j]
                for j in range(k + 1, n):
                    A[k, j] = A[k, j] - tau * tmp[j]
                for j in range(k + 1, n):
                    for i in range(k + 1, n):
                        A[i, j] = A[i, j] - tmp[j] * (tau * A[i, k])
        # downdate the remaining column norms
        for j in range(k + 1, n):
            if norms_u[j] != F32(0.0):
                tt = abs(A[k, j]) / norms_u[j]
                tt = (F32(1.0) + tt) * (F32(1.0) - tt)
                if tt < F32(0.0):
                    tt = F32(0.0)
                r = norms_u[j] / norms_d[j]
                t2 = tt * (r * r)
                if t2 <= downdate_thr:
                    if k + 1 < n:
                        norms_d[j] = np.sqrt(_seq_sqnorm(A, j, k + 1, n))
                    else:
                        norms_d[j] = F32(0.0)
                    norms_u[j] = norms_d[j]
                else:
                    norms_u[j] = norms_u[j] * np.sqrt(tt)
    # permutation from the transpositions
    perm = np.empty(3, dtype=np.int64)
    for i in range(n):
        perm[i] = i
    for k in range(n):
        tk = trans[k]
        tt = perm[k]
        perm[k] = perm[tk]
        perm[tk] = tt
    if nonzero == 0:
        for i in range(n):
            out[i] = F32(0.0)
        return
    c = np.empty(3, dtype=np.float32)
    for i in range(n):
        c[i] = b[i]
    # c = Q^T b: reflections H_0, H_1, ... in order
    for k in range(nonzero):
        tau = hcoef[k]
        if n - k == 1:
            c[k] = c[k] * (F32(1.0) - tau)
        elif tau != F32(0.0):
            s = A[k + 1, k] * c[k + 1]
            for i in range(k + 2, n):
                s = s + A[i, k] * c[i]
            s = s + c[k]
            c[k] = c[k] - tau * s
            for i in range(k + 1, n):
                c[i] = c[i] - s * (tau * A[i, k])
    # back substitution, column oriented
    for i in range(nonzero - 1, -1, -1):
        if c[i] != F32(0.0):
            c[i] = c[i] / A[i, i]
            for s_ in range(i):
                c[s_] = c[s_] - c[i] * A[s_, i]
    for i in range(nonzero):
        out[perm[i]] = c[i]
    for i in range(nonzero, n):
        out[perm[i]] = F32(0.0)
