#!/usr/bin/env python3
"""Seconds per asset and peak memory of the Blender pass (dump + 16 condition renders) on the real assets.

Run from the repository root with the worker's Python:
    $(bin/venv-path)/bin/python bench/ingest_bench.py [--sizes 512 1024] [--samples 32] [--assets ...]

Each asset runs in its own process exactly as `trellis2-worker ingest` runs it; the peak resident memory is that
process's (wait4 rusage). The reference point: users of the reference toolkits report about 35 hours per 1,000
models for rendering (150 views each, TRELLIS v1), i.e. ~126 s per model, ~0.84 s per view.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "batch-containers" / "worker" / "src"))

from trellis2_worker.ingest.discovery import file_format, object_key  # noqa: E402
from trellis2_worker.render import seed_for  # noqa: E402

DEFAULT_ASSETS = ["trimesh/Duck.glb", "damaged-helmet/DamagedHelmet.gltf", "assimp/OBJ/spider.obj"]


def run_one(path: Path, root: Path, size: int, samples: int, views: int, threads: int, denoise: str,
            work: Path) -> dict:
    fmt = file_format(path.name)
    sha = object_key(path, fmt, root)
    result_path = work / f"{sha}_{size}.json"
    cmd = [sys.executable, "-m", "trellis2_worker.ingest.blender_pass", "--input", str(path), "--format", fmt,
           "--dump-dir", str(work / f"dump_{sha}_{size}"), "--render-dir", str(work / f"r_{sha}_{size}"),
           "--render-size", str(size), "--render-samples", str(samples), "--views", str(views),
           "--seed", str(seed_for(sha)), "--threads", str(threads), "--denoise", denoise,
           "--result", str(result_path)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "batch-containers" / "worker" / "src"))
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.time() - started
    result = json.loads(result_path.read_text()) if result_path.is_file() else {"ok": False, "reason": status}
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", default=str(REPO.parent / "shared" / "assets" / "real"))
    parser.add_argument("--assets", nargs="*", default=DEFAULT_ASSETS, help="paths relative to --real")
    parser.add_argument("--sizes", nargs="*", type=int, default=[512, 1024])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--denoise", default="accurate", choices=("accurate", "fast", "off"))
    args = parser.parse_args()
    real = Path(args.real)
    print(f"# Blender pass: {args.views} views, {args.samples} Cycles samples, denoise={args.denoise}, "
          f"{args.threads} threads, {os.cpu_count()} CPUs, CPU rendering")
    print("# wall seconds depend on what else runs on the machine; CPU seconds (user+sys of the Blender process)"
          " do much less")
    print(f"{'asset':42s} {'size':>5s} {'total s':>8s} {'dump s':>7s} {'render s':>8s} {'s/view':>7s} "
          f"{'CPU s':>7s} {'CPU s/16 views':>14s} {'peak MB':>8s}")
    totals: dict[int, list[float]] = {s: [] for s in args.sizes}
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        for size in args.sizes:
            for rel in args.assets:
                r = run_one(real / rel, real, size, args.samples, args.views, args.threads, args.denoise, Path(tmp))
                if not r.get("ok"):
                    print(f"{rel:42s} {size:5d} FAILED: {r.get('reason')}")
                    continue
                # Scale the render part to the 16 views ingest makes, when fewer were asked for to save time.
                per_view_cpu = r["cpu_seconds"] * r["render_seconds"] / r["seconds"] / args.views
                cpu16 = r["cpu_seconds"] * (1 - r["render_seconds"] / r["seconds"]) + 16 * per_view_cpu
                totals[size].append(r["seconds"] + (16 - args.views) * r["render_seconds"] / args.views)
                print(f"{rel:42s} {size:5d} {r['seconds']:8.1f} {r['dump_seconds']:7.1f} {r['render_seconds']:8.1f} "
                      f"{r['render_seconds'] / args.views:7.2f} {r['cpu_seconds']:7.1f} {cpu16:14.1f} "
                      f"{r['peak_rss_mb']:8.0f}", flush=True)
    for size, values in totals.items():
        if values:
            mean = sum(values) / len(values)
            note = "" if args.views >= 16 else (f" (extrapolated from {args.views} view(s), whose first one also "
                                                   "builds the scene: an upper bound)")
            print(f"# size {size}: mean {mean:.1f} wall s per asset for 16 views -> {mean * 1000 / 3600:.1f} h per "
                  f"1,000 assets on this machine{note}; reference report: ~35 h per 1,000 at 150 views")
    return 0


if __name__ == "__main__":
    sys.exit(main())
