#!/usr/bin/env python
"""Sharded preprocessing against one process, on real assets: N array children at once plus `merge`, against one
`preprocess` of the same archive; the merged zip must be the one-process zip, byte for byte.

Each command is its own process with its own fresh cache (as separate Batch instances would be); the children get
AWS_BATCH_JOB_ARRAY_INDEX as Batch sets it. Prints per process the wall time and peak RSS, the load average before
and the highest seen while the children ran, and whether the zips and every member are identical.

    PY=$(bin/venv-path)/bin/python
    flock /tmp/team/heavy.lock nice $PY bench/shard_bench.py        # Duck, BoxTextured, monkey; 3 shards; tiny, 512, 128²
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "assets" / "real"
WORKER = REPO / "bin" / "trellis2-worker"
ASSETS = ["trimesh/Duck.glb", "trimesh/BoxTextured.glb", "trimesh/monkey.glb"]


def start(cmd: list[str], log: Path, env: dict | None = None) -> tuple[subprocess.Popen, float, object]:
    out = open(log, "w")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}), time.perf_counter(), out


def finish(proc, t0, out, watch_load: list | None = None) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS MiB) of a started process."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if watch_load is not None:
            watch_load.append(os.getloadavg()[0])
        time.sleep(0.5)
    out.close()
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss / 1024


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def big_merge(tmp: Path, shards: int, objects: int, tokens: int) -> None:
    """Peak RSS of `merge` over large synthetic shards (the dataset writer's own output, random latents): what it
    holds does not grow with the dataset, since members are streamed."""
    import hashlib

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(REPO / "batch-containers" / "worker" / "src"))
    from trellis2_worker.dataset import DatasetStager, layout

    rng = np.random.default_rng(0)
    renders = tmp / "big-renders"
    renders.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (64, 64, 4), dtype=np.uint8), "RGBA").save(renders / "000.png")
    (renders / "transforms.json").write_text(json.dumps({"frames": [{"file_path": "000.png"}]}))
    files = [f"obj{i:04d}.glb" for i in range(shards * objects)]
    (tmp / "big-plan.json").write_text(json.dumps({"objects": [{"file": f} for f in files]}))
    for s in range(shards):
        stager = DatasetStager(tmp / f"big-stage-{s}", 1024, "tiny", {}, {}, "bench")
        mine = files[s * objects:(s + 1) * objects]
        for f in mine:
            coords = np.stack(np.unravel_index(rng.choice(64 ** 3, tokens, replace=False), (64,) * 3), 1)
            feats = rng.standard_normal((tokens, 32)).astype(np.float32)
            stager.add_object(hashlib.sha256(f.encode()).hexdigest(), np.zeros(layout.SS_LATENT_SHAPE, np.float32),
                              (feats, coords), (feats, coords), renders, {"local_path": f})
        stager.finish(tmp / f"big-{s}.zip")
        (tmp / f"big-{s}.json").write_text(json.dumps({"objects_succeeded": len(mine), "shard": {"shard": f"{s}/{shards}"}}))
    size = sum((tmp / f"big-{s}.zip").stat().st_size for s in range(shards))
    t = start([str(WORKER), "merge", "--plan", str(tmp / "big-plan.json"), "--shard-count", str(shards),
               "--resolution", "1024", "--base", "tiny", "--shard-outputs", str(tmp / "big-{shard}.zip"),
               "--shard-reports", str(tmp / "big-{shard}.json"), "--output", str(tmp / "big-merged.zip"),
               "--report", str(tmp / "big-merged.json")], tmp / "big-merge.log")
    code, wall, rss = finish(*t)
    print(f"big merge: {shards} shards, {size / 2**20:.0f} MiB of shard zips, largest member "
          f"{tokens * 32 * 4 / 2**20:.1f} MiB: exit {code}, {wall:.1f} s wall, peak RSS {rss:.0f} MiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", nargs="+", default=ASSETS, help="paths under ../shared/assets/real")
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--base", default="tiny")
    ap.add_argument("--resolution", default="512")
    ap.add_argument("--render-size", default="128")
    ap.add_argument("--child-threads", default=None,
                    help="OMP/MKL threads of each child, as the local runner gives its shards (default: as inherited)")
    ap.add_argument("--keep", default=None, help="keep the runs' files in this directory")
    ap.add_argument("--big-merge", type=int, default=0, metavar="OBJECTS",
                    help="only: merge synthetic shards of OBJECTS objects each (peak memory against dataset size)")
    ap.add_argument("--tokens", type=int, default=50_000, help="latent tokens an object in --big-merge")
    args = ap.parse_args()

    tmp = Path(args.keep or tempfile.mkdtemp(prefix="shard-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    if args.big_merge:
        big_merge(tmp, args.shards, args.big_merge, args.tokens)
        return 0
    raw = tmp / "raw.zip"
    with zipfile.ZipFile(raw, "w") as zf:
        for rel in args.assets:
            zf.write(REAL / rel, Path(rel).name)
    # As Prepare writes it: the zip's paths in path order, no sha256.
    plan = tmp / "plan.json"
    plan.write_text(json.dumps({"objects": [{"file": n} for n in sorted(Path(r).name for r in args.assets)]}))
    common = ["--input", str(raw), "--resolution", args.resolution, "--base", args.base,
              "--render-size", args.render_size]
    print(f"load before: {os.getloadavg()}")

    t = start([str(WORKER), "preprocess", *common, "--output", str(tmp / "one.zip"), "--report", str(tmp / "one.json"),
               "--cache-dir", str(tmp / "cache-one")], tmp / "one.log")
    load_one: list[float] = []
    code, wall_one, rss_one = finish(*t, watch_load=load_one)
    print(f"1 process: exit {code}, {wall_one:.1f} s wall, peak RSS {rss_one:.0f} MiB, "
          f"highest 1-min load {max(load_one, default=0):.2f}")

    threads = {"OMP_NUM_THREADS": args.child_threads, "MKL_NUM_THREADS": args.child_threads} if args.child_threads else {}
    children = [start([str(WORKER), "preprocess", *common, "--objects-from", str(plan),
                       "--shard-count", str(args.shards), "--output", str(tmp / "shard-{shard}.zip"),
                       "--report", str(tmp / "shard-{shard}.json"), "--cache-dir", str(tmp / f"cache-{i}")],
                      tmp / f"shard-{i}.log", {"AWS_BATCH_JOB_ARRAY_INDEX": str(i), **threads}) for i in range(args.shards)]
    t0 = time.perf_counter()
    load: list[float] = []
    results = [finish(*c, watch_load=load) for c in children]
    wall_children = time.perf_counter() - t0
    for i, (code, wall, rss) in enumerate(results):
        print(f"shard {i}: exit {code}, {wall:.1f} s wall, peak RSS {rss:.0f} MiB")
    t = start([str(WORKER), "merge", "--plan", str(plan), "--shard-count", str(args.shards), "--resolution",
               args.resolution, "--base", args.base, "--shard-outputs", str(tmp / "shard-{shard}.zip"),
               "--shard-reports", str(tmp / "shard-{shard}.json"), "--output", str(tmp / "merged.zip"),
               "--report", str(tmp / "merged.json")], tmp / "merge.log")
    code, wall_merge, rss_merge = finish(*t)
    print(f"merge: exit {code}, {wall_merge:.1f} s wall, peak RSS {rss_merge:.0f} MiB")
    print(f"{args.shards} children at once {wall_children:.1f} s + merge {wall_merge:.1f} s = "
          f"{wall_children + wall_merge:.1f} s against 1 process {wall_one:.1f} s; highest 1-min load while the "
          f"children ran {max(load, default=0):.2f}, after: {os.getloadavg()}")

    one, merged = members(tmp / "one.zip"), members(tmp / "merged.zip")
    same_zip = (tmp / "one.zip").read_bytes() == (tmp / "merged.zip").read_bytes()
    differing = sorted(n for n in one.keys() | merged.keys() if one.get(n) != merged.get(n))
    print(f"zip bytes identical: {same_zip}; members: {len(one)}, differing: {differing[:5] or 'none'}")
    print(f"files in {tmp}")
    return 0 if same_zip and not differing else 1


if __name__ == "__main__":
    sys.exit(main())
