#!/usr/bin/env python
"""CPU attention under autograd: SDPA as the models call it (its own kernel choice: the fused flash kernel on CPU)
against SDPA's math backend, forward + backward.

The flows train on CPU only with the tiny base (tests, demo, local runs); this is why models/transformer.py leaves the
kernel to SDPA there. Shapes are the tiny flows': the SS flow's 4096 tokens with one head, the SLat flows' few
thousand tokens with two heads, and their cross-attention to 1029 DINOv3 tokens. Both run in one process,
interleaved, best of `--reps`; the ratio is math time over default time.

    PY=$(bin/venv-path)/bin/python
    $PY bench/attention_bench.py                # torch's default thread count
    $PY bench/attention_bench.py --threads 1    # one thread per process, as the local runner gives parallel jobs
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# (batch, heads, queries, keys, head dim, what)
SHAPES = [
    (1, 1, 4096, 4096, 32, "SS flow self-attention, 1 object"),
    (8, 1, 4096, 4096, 32, "SS flow self-attention, 8 objects"),
    (1, 1, 4096, 1029, 32, "SS flow cross-attention"),
    (1, 2, 1029, 1029, 32, "SLat self-attention, 1029 tokens"),
    (1, 2, 2380, 2380, 32, "SLat self-attention, 2380 tokens"),
    (1, 2, 5768, 5768, 32, "SLat self-attention, 5768 tokens"),
    (1, 2, 5768, 1029, 32, "SLat cross-attention"),
]


def step(backend, q, k, v) -> float:
    """One forward + backward; `backend` None is SDPA's own choice, as models/transformer.py calls it."""
    for t in (q, k, v):
        t.grad = None
    t0 = time.perf_counter()
    with sdpa_kernel(backend) if backend is not None else contextlib.nullcontext():
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    (o * o).sum().backward()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpus {os.cpu_count()}, "
          f"load avg {os.getloadavg()[0]:.1f}; forward + backward, best of {args.reps}")
    print(f"{'shape (B, H, Lq, Lk, D)':28s} {'math s':>8s} {'default s':>9s} {'ratio':>6s} {'max |diff|':>10s}  what")
    for b, h, lq, lk, d, what in SHAPES:
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(b, lq, h, d, generator=gen, requires_grad=True)
        k = torch.randn(b, lk, h, d, generator=gen, requires_grad=True)
        v = torch.randn(b, lk, h, d, generator=gen, requires_grad=True)
        best = {SDPBackend.MATH: float("inf"), None: float("inf")}
        grads = {}
        for _ in range(args.reps):
            for backend in best:
                best[backend] = min(best[backend], step(backend, q, k, v))
                grads[backend] = [t.grad.clone() for t in (q, k, v)]
        diff = max(float((a - c).abs().max()) for a, c in zip(grads[SDPBackend.MATH], grads[None]))
        m, f = best[SDPBackend.MATH], best[None]
        print(f"{str((b, h, lq, lk, d)):28s} {m:8.3f} {f:9.3f} {m / f:6.2f} {diff:10.2e}  {what}")


if __name__ == "__main__":
    main()
