#!/usr/bin/env python
"""What the evaluation costs: seconds for the mesh metrics (`trellis2-worker evaluate`) at a sample count, on meshes
of the sizes a generation gives, and the share of that spent sampling, in the KD-trees, and projecting onto faces;
with --stages, the seconds the end-of-run evaluation adds to a training job of each stage, tiny base on CPU: the
fixed-noise flow loss on training and held-out objects, and the held-out generations (base, adapter, EMA) with their
metrics and the preview panel.

    $PY bench/eval_bench.py                    # 100k samples; a 20k-face sphere against a subdivided box
    $PY bench/eval_bench.py --samples 20000 --faces 200000
    $PY bench/eval_bench.py --stages [--ema]   # 10 objects of 500 tokens (1 held out), --eval-objects 4

Prints the load average with the figures: on a shared machine the KD-tree queries slow down with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "batch-containers" / "worker" / "src"), str(ROOT / "batch-containers" / "worker" / "tests")]


def _sphere(faces: int):
    import trimesh

    # an icosphere has 20·4^k faces: the smallest k reaching the asked count
    k = 0
    while 20 * 4**k < faces:
        k += 1
    return trimesh.creation.icosphere(subdivisions=k, radius=0.45)


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def stages(args) -> None:
    import tempfile

    from train_helpers import make_dataset

    from trellis2_worker.models import load_base
    from trellis2_worker.train import TrainRequest, train

    import torch

    torch.set_num_threads(args.threads)  # the tiny flows gain nothing from more; on a shared machine they thrash
    base = load_base("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp) / "dataset.zip", [args.tokens] * args.objects, base=base)
        print(f"load average {_loadavg()} on {os.cpu_count()} cores; {args.objects} objects of {args.tokens} tokens, "
              f"--eval-objects {args.eval_objects}, tiny base, CPU, {args.threads} torch thread(s)", flush=True)
        for stage in args.stage:
            for ema in (0.0, 0.999) if args.ema else (0.0,):
                out = Path(tmp) / f"{stage}-{ema}"
                report = train(TrainRequest(dataset=str(dataset), denoiser=stage, resolution=512, rank=8,
                                            learning_rate=1e-3, training_steps=2, output=str(out / "a.safetensors"),
                                            base="tiny", batch_size=2, progress=False, device="cpu",
                                            eval_objects=args.eval_objects, ema_decay=ema,
                                            eval_samples=args.samples), base=base)
                m = report["metrics"]
                sets = f"{m['train_objects_flow_loss']['objects']} trained"
                if "held_out" in m:
                    sets += f" + {m['held_out']['flow_loss']['objects']} held-out"
                gen = m.get("held_out", {}).get("generation", {})
                print(f"  {stage:17s} {'EMA' if ema else 'raw'}: flow-loss evaluation {m['evaluation_s']:6.2f} s "
                      f"({sets} objects), held-out generations {gen.get('generation_s', float('nan')):6.2f} s "
                      f"({gen.get('objects', 0)} objects × {len(gen.get('mean', {}))} variants, "
                      f"{gen.get('samples', '-')} samples), training step {report_step_s(out):.2f} s", flush=True)
    print(f"load average after: {_loadavg()}")


def report_step_s(out: Path) -> float:
    import json

    log = [json.loads(x) for x in (out / "a.loss.jsonl").read_text().splitlines()]
    return log[-1]["seconds"] / len(log)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--faces", type=int, default=20_000, help="faces of the predicted mesh (rounded up)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="time the end-of-run evaluation of each training stage")
    ap.add_argument("--objects", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=500)
    ap.add_argument("--eval-objects", type=int, default=4)
    ap.add_argument("--stage", nargs="+", default=["sparse_structure", "geometry", "texture"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ema", action="store_true", help="also with an EMA (one more adapted pass per object)")
    args = ap.parse_args()
    if args.stages:
        return stages(args)

    import numpy as np
    import trimesh

    from trellis2_worker.evaluate import metrics

    pred = _sphere(args.faces)
    gt = trimesh.creation.box(extents=(0.8, 0.8, 0.8)).subdivide().subdivide()
    print(f"load average {_loadavg()} on {os.cpu_count()} cores; pred {len(pred.faces)} faces, "
          f"gt {len(gt.faces)} faces, "
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
    print(f"load average after: {_loadavg()}")


if __name__ == "__main__":
    main()
