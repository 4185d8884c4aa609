#!/usr/bin/env python3
"""What the Blender pass's sandbox (ingest/sandbox.py) costs: the launcher alone, and one Blender pass (dump only)
run as `trellis2-worker ingest` runs it (sandboxed) against the same pass started directly.

Run from the repository root with the worker's Python:
    $(bin/venv-path)/bin/python bench/sandbox_bench.py [--asset trimesh/Duck.glb] [--repeats 3]
It prints the protections the kernel gave, median seconds of each variant, and the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "batch-containers" / "worker" / "src"
sys.path.insert(0, str(SRC))

from trellis2_worker.ingest.discovery import discover  # noqa: E402
from trellis2_worker.ingest.pipeline import run_blender_pass  # noqa: E402


def _seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--asset", default="trimesh/Duck.glb", help="a path under ../shared/assets/real")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    real = REPO.parent / "shared" / "assets" / "real"
    rel = Path(args.asset)
    root = real / rel.parts[0]
    (asset,) = discover(root, [Path(*rel.parts[1:]).as_posix()], use_manifest=False).assets
    env = dict(os.environ, PYTHONPATH=str(SRC))
    tmp = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    try:
        plain = [sys.executable, "-c", "pass"]
        launcher = [sys.executable, str(SRC / "trellis2_worker/ingest/sandbox.py"), "--write", str(tmp), "--", *plain]
        t_plain = _seconds(lambda: subprocess.run(plain, check=True, env=env), args.repeats)
        t_launch = _seconds(lambda: subprocess.run(launcher, check=True, env=env, capture_output=True),
                            args.repeats)
        (tmp / "logs").mkdir()
        results = []

        def sandboxed():
            shutil.rmtree(tmp / "dump", ignore_errors=True)
            results.append(run_blender_pass(asset, tmp / "dump", None, render_size=64, render_samples=1,
                                            threads=os.cpu_count() or 1, timeout_s=600, memory_mb=8192,
                                            log_path=tmp / "logs" / "a.log", root=root))

        def direct():
            shutil.rmtree(tmp / "dump", ignore_errors=True)
            subprocess.run([sys.executable, "-m", "trellis2_worker.ingest.blender_pass", "--input", str(asset.path),
                            "--format", asset.format, "--root", str(root), "--dump-dir", str(tmp / "dump"),
                            "--result", str(tmp / "direct.json")], check=True, env=env, capture_output=True)

        t_sandboxed = _seconds(sandboxed, args.repeats)
        t_direct = _seconds(direct, args.repeats)
        assert all(r.get("ok") for r in results), results
        print(f"protections: {results[-1]['sandbox']}")
        print(f"python -c pass: {t_plain:.3f} s direct, {t_launch:.3f} s through the launcher")
        print(f"Blender pass on {args.asset} (dump only): {t_direct:.2f} s direct, {t_sandboxed:.2f} s sandboxed "
              f"(median of {args.repeats})")
        print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
