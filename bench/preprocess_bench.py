#!/usr/bin/env python
"""Preprocessing time per object, by phase, and peak memory: `trellis2-worker preprocess` on real assets.

Runs the real command in-process on a zip of assets from ../shared/assets/real (fresh cache, so nothing is reused),
then prints one row per object: voxels at the resolution, Blender pass (dump + condition renders, wall time of its
child process), O-Voxel dual grid, PBR voxels, SS occupancy, and each encoder; plus peak RSS of this process (O-Voxel and
encoders) and of the largest Blender child.

    PY=$(bin/venv-path)/bin/python
    PYTHONPATH=batch-containers/worker/src $PY bench/preprocess_bench.py                      # default asset set
    PYTHONPATH=batch-containers/worker/src $PY bench/preprocess_bench.py --assets trimesh/Duck.glb --render-size 512
    PYTHONPATH=batch-containers/worker/src $PY bench/preprocess_bench.py --all --render-size 128   # every real file

The first object also pays numba compilation of the O-Voxel kernels (cached on disk afterwards); run twice for warm
figures (`--runs 2` reruns with a fresh object cache, numba cache kept).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "assets" / "real"

# One asset per format, with their side files; sizes from 66 k to ~1 M surface voxels at 512.
DEFAULT_ASSETS = [
    "assimp/STL/triangle.stl",
    "assimp/PLY/float-color.ply",
    "assimp/OBJ/spider.obj",
    "assimp/glTF2/ClearCoat-glTF/ClearCoatTest.gltf",
    "trimesh/monkey.glb",
    "trimesh/Duck.glb",
]
SIDE_FILES = {
    "assimp/OBJ/spider.obj": ["spider.mtl", "SpiderTex.jpg", "drkwood2.jpg", "engineflare1.jpg", "wal67ar_small.jpg",
                              "wal69ar_small.jpg"],
    "assimp/glTF2/ClearCoat-glTF/ClearCoatTest.gltf": ["ClearCoatTest.bin", "ClearCoatLabels.png", "PartialCoating.png",
                                                       "PartialCoating_Alpha.png", "PlasticWrap_normals.jpg",
                                                       "RibsNormal.png", "RoughnessStripes.png"],
    "damaged-helmet/DamagedHelmet.gltf": ["DamagedHelmet.bin", "Default_albedo.jpg", "Default_AO.jpg",
                                          "Default_emissive.jpg", "Default_metalRoughness.jpg", "Default_normal.jpg"],
    "assimp/glTF2/BoxTextured-glTF/BoxTextured.gltf": ["BoxTextured0.bin", "CesiumLogoFlat.png"],
}
PHASES = [
    ("blender_s", "Blender"),
    ("ovoxel_dual_grid_s", "dual grid"),
    ("ovoxel_pbr_s", "PBR vox"),
    ("ss_occupancy_s", "SS occ"),
    ("encode_shape_s", "enc shape"),
    ("encode_pbr_s", "enc PBR"),
    ("encode_ss_s", "enc SS"),
]


def build_zip(assets: list[str] | None, path: Path) -> None:
    """A zip of `assets` and their side files, or of every file under ../shared/assets/real when None."""
    with zipfile.ZipFile(path, "w") as zf:
        if assets is None:
            for p in sorted(SHARED.rglob("*")):
                if p.is_file() and p.name != "SOURCES.md":
                    zf.write(p, p.relative_to(SHARED).as_posix())
            return
        for rel in assets:
            zf.write(SHARED / rel, rel)
            for side in SIDE_FILES.get(rel, []):
                zf.write(SHARED / Path(rel).parent / side, (Path(rel).parent / side).as_posix())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", nargs="*", default=DEFAULT_ASSETS, help="paths under ../shared/assets/real")
    ap.add_argument("--all", action="store_true", help="every file of ../shared/assets/real (broken ones included)")
    ap.add_argument("--resolution", type=int, default=512, choices=(512, 1024))
    ap.add_argument("--base", default="tiny")
    ap.add_argument("--render-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1, help="repeat with a fresh object cache (numba stays compiled)")
    ap.add_argument("--json", default=None, help="also write the raw reports here")
    args = ap.parse_args()

    from trellis2_worker.latents.preprocess import preprocess

    import torch

    reports = []
    with tempfile.TemporaryDirectory(prefix="preprocess-bench-") as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw.zip"
        build_zip(None if args.all else args.assets, raw)
        for run in range(args.runs):
            t0 = time.perf_counter()
            rep = preprocess(str(raw), args.resolution, args.base, str(tmp / f"out{run}.zip"),
                             render_size=args.render_size, workers=args.workers, cache_dir=tmp / f"cache{run}")
            wall = time.perf_counter() - t0
            reports.append(rep)
            print(f"\nrun {run + 1}: {rep['objects_succeeded']}/{rep['objects_found']} objects, {wall:.1f} s wall, "
                  f"resolution {args.resolution}, base {args.base}, renders {args.render_size}², "
                  f"device {rep['device']}, torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
                  f"load avg {os.getloadavg()[0]:.1f}")
            head = f"{'object':48s} {'voxels':>8s} " + " ".join(f"{n:>9s}" for _, n in PHASES) + f" {'total':>8s}"
            print(head)
            totals = {k: 0.0 for k, _ in PHASES}
            for o in rep["objects"]:
                sec = dict(o["seconds"], blender_s=o.get("blender_s") or 0.0)
                vals = [sec.get(k, 0.0) for k, _ in PHASES]
                for (k, _), v in zip(PHASES, vals):
                    totals[k] += v
                print(f"{o['file'][-48:]:48s} {o['voxels']:>8d} " + " ".join(f"{v:9.2f}" for v in vals)
                      + f" {sum(vals):8.2f}")
            n = max(1, len(rep["objects"]))
            print(f"{'mean per object':48s} {'':>8s} " + " ".join(f"{totals[k] / n:9.2f}" for k, _ in PHASES)
                  + f" {sum(totals.values()) / n:8.2f}")
            for f in rep["failed"]:
                print(f"failed: {f['file']}: {f['reason']}")
            print("other phases (s):", {k: v for k, v in rep["timings"].items() if k in ("ingest_s", "load_models_s", "write_dataset_s")})
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak RSS: this process (O-Voxel + encoders) {self_mb:.0f} MB; largest Blender child {child_mb:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
