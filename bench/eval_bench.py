#!/usr/bin/env python
"""What the evaluation costs: seconds for the mesh metrics (`trellis2-worker evaluate`) at a sample count, on meshes
of the sizes a generation gives, and the share of that spent sampling, in the KD-trees, and projecting onto faces.

    $PY bench/eval_bench.py                    # 100k samples; a 20k-face sphere against a 5k-face box-ish mesh
    $PY bench/eval_bench.py --samples 20000 --faces 200000

Prints the load average with the figures: on a shared machine the KD-tree queries slow down with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "batch-containers" / "worker" / "src"))


def _sphere(faces: int):
    import trimesh

    # an icosphere has 20·4^k faces: the smallest k reaching the asked count
    k = 0
    while 20 * 4**k < faces:
        k += 1
    return trimesh.creation.icosphere(subdivisions=k, radius=0.45)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--faces", type=int, default=20_000, help="faces of the predicted mesh (rounded up)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import numpy as np
    import trimesh

    from trellis2_worker.evaluate import metrics

    pred = _sphere(args.faces)
    gt = trimesh.creation.box(extents=(0.8, 0.8, 0.8)).subdivide().subdivide()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"on {os.cpu_count()} cores; pred {len(pred.faces)} faces, gt {len(gt.faces)} faces, "
          f"{args.samples} samples per surface")
    walls, parts = [], []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        p_pts, p_f = metrics.surface_samples(pred, args.samples, r)
        g_pts, g_f = metrics.surface_samples(gt, args.samples, r + 1000)
        t1 = time.perf_counter()
        metrics.nearest_surface(p_pts, gt, g_pts, g_f)
        metrics.nearest_surface(g_pts, pred, p_pts, p_f)
        t2 = time.perf_counter()
        m = metrics.mesh_metrics(pred, gt, samples=args.samples, seed=r)
        t3 = time.perf_counter()
        walls.append(t3 - t2)
        parts.append((t1 - t0, t2 - t1))
    sample_s, nearest_s = np.median(np.array(parts), axis=0)
    print(f"mesh_metrics: median {np.median(walls):.2f} s (min {min(walls):.2f}) over {args.repeats} runs; "
          f"of which sampling {sample_s:.2f} s, nearest-surface both ways {nearest_s:.2f} s")
    print(f"  chamfer_l1 {m['chamfer_l1']:.4f}  F@0.01 {m['fscore']['0.01']:.3f}  F@0.02 {m['fscore']['0.02']:.3f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
