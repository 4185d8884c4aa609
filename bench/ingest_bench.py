#!/usr/bin/env python3
"""Seconds per asset and peak memory of the Blender pass (dump + 16 condition renders) on the real assets.

Run from the repository root with the worker's Python:
    $(bin/venv-path)/bin/python bench/ingest_bench.py [--sizes 512 1024] [--samples 32] [--assets ...]

Each asset's pass is started by ingest's own run_blender_pass, the launch `trellis2-worker ingest` makes: inside
the sandbox (ingest/sandbox.py: Landlock, no network), with the same environment, memory cap and timeout, so the
figures are production's. It runs from a fresh forked helper, whose children's rusage is then that one pass's:
peak resident memory and CPU seconds of the Blender process. bench/sandbox_bench.py says what the sandbox costs. The reference point: users of the reference toolkits report about 35 hours per 1,000
models for rendering (150 views each, TRELLIS v1), i.e. ~126 s per model, ~0.84 s per view.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "batch-containers" / "worker" / "src"))

from trellis2_worker.ingest.discovery import discover  # noqa: E402
from trellis2_worker.ingest.pipeline import DEFAULT_TIMEOUT_S, default_memory_mb, run_blender_pass  # noqa: E402

DEFAULT_ASSETS = ["trimesh/Duck.glb", "damaged-helmet/DamagedHelmet.gltf", "assimp/OBJ/spider.obj"]


def _measured_pass(kwargs: dict) -> dict:
    """In a fresh process: its only child is the pass (the launcher execs Blender in place)."""
    result = run_blender_pass(**kwargs)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {**result, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu_seconds": usage.ru_utime + usage.ru_stime}


def run_one(path: Path, real: Path, size: int, samples: int, views: int, threads: int, denoise: str,
            work: Path) -> dict:
    root = real / path.relative_to(real).parts[0]  # the asset's folder of the real assets, as its archive
    (asset,) = discover(root, [path.relative_to(root).as_posix()], use_manifest=False).assets
    name = f"{asset.sha256}_{size}"
    kwargs = dict(asset=asset, dump_dir=work / f"dump_{name}", render_dir=work / f"r_{name}", render_size=size,
                  render_samples=samples, threads=threads, timeout_s=DEFAULT_TIMEOUT_S,
                  memory_mb=default_memory_mb(1), log_path=work / "logs" / f"{name}.log", views=views,
                  denoise=denoise, root=root)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as helper:
        return helper.submit(_measured_pass, kwargs).result()


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
          f"{args.threads} threads, {os.cpu_count()} CPUs, CPU rendering, started as ingest starts it")
    print("# wall seconds depend on what else runs on the machine; CPU seconds (user+sys of the Blender process)"
          " do much less")
    print(f"{'asset':42s} {'size':>5s} {'total s':>8s} {'dump s':>7s} {'render s':>8s} {'s/view':>7s} "
          f"{'CPU s':>7s} {'CPU s/16 views':>14s} {'peak MB':>8s}")
    totals: dict[int, list[float]] = {s: [] for s in args.sizes}
    sandboxes: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        for size in args.sizes:
            for rel in args.assets:
                r = run_one(real / rel, real, size, args.samples, args.views, args.threads, args.denoise, Path(tmp))
                sandboxes.add(r.get("sandbox", "not reported"))
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
    print(f"# sandbox: {'; '.join(sorted(sandboxes))}")
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
