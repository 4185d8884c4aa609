#!/usr/bin/env python
"""O-Voxel conversion benchmark: time and peak RSS per resolution and phase (dual grid, PBR voxels, .vxz write and
read), on the worst-case mesh of docs/data-formats.md#reference-converter-speed (a UV-textured sphere filling the
cube plus an open wavy plane, about 180k triangles) and on real assets, plus the multi-worker speed-up.

    PY=$(bin/venv-path)/bin/python
    PYTHONPATH=batch-containers/worker/src $PY bench/ovoxel_bench.py                 # 256, 512, 1024
    PYTHONPATH=batch-containers/worker/src $PY bench/ovoxel_bench.py --res 512 --skip-real --workers 2

Each resolution runs in a fresh process so that its peak RSS is its own (numba kernels load from the on-disk cache
first, untimed). Times are CPU seconds of the process (like the reference's clock() prints; robust on a shared
machine), wall seconds in brackets; write = both files (lzma compresses streams on up to 2 threads, so
its CPU time adds the threads up). Reference converter (C++, single-threaded, same class of 2-core machine,
docs/data-formats.md#reference-converter-speed):
256: 0.9 s + 0.7 s, write 1.9 s, read 0.15 s; 512: 3.7 s + 3.3 s, write 9 s, read 0.36 s, peak 0.55 GB (dual grid);
1024: 18.7 s + 11.6 s, write 63 s, read 1.15 s, peak 1.3 GB (dual grid).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# docs/data-formats.md#reference-converter-speed: dual grid, PBR, write, read (s); peak RSS of the dual grid step (GB)
REFERENCE = {
    256: (0.9, 0.7, 1.9, 0.15, None),
    512: (3.7, 3.3, 9.0, 0.36, 0.55),
    1024: (18.7, 11.6, 63.0, 1.15, 1.3),
}
REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "assets" / "real"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------ inputs

def worst_case_dump(out: Path) -> Path:
    """UV sphere (200 x 400 quads, checker texture) filling the cube + a 100 x 100 open wavy plane: 180k triangles."""
    from PIL import Image

    nlat, nlon = 200, 400
    th = np.linspace(0, np.pi, nlat + 1)
    ph = np.linspace(0, 2 * np.pi, nlon + 1)
    T, P = np.meshgrid(th, ph, indexing="ij")
    sv = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3) * 0.5
    suv = np.stack([P / (2 * np.pi), 1 - T / np.pi], -1).reshape(-1, 2)
    idx = np.arange((nlat + 1) * (nlon + 1)).reshape(nlat + 1, nlon + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    sf = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    n = 100
    xs = np.linspace(-1 / 3, 1 / 3, n + 1)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    pv = np.stack([X, Y, 0.11 + 0.055 * np.sin(9 * X) * np.cos(9 * Y)], -1).reshape(-1, 3)
    pidx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = pidx[:-1, :-1], pidx[1:, :-1], pidx[1:, 1:], pidx[:-1, 1:]
    pf = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    v = np.concatenate([sv, pv]).astype(np.float32)
    f = np.concatenate([sf, pf + len(sv)])
    uvs = np.concatenate([suv[sf], np.zeros((len(pf), 3, 2))]).astype(np.float32)
    has_uv = np.concatenate([np.ones(len(sf), bool), np.zeros(len(pf), bool)])
    mat_ids = np.concatenate([np.zeros(len(sf), np.int32), np.full(len(pf), -1, np.int32)])
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "mesh.npz", vertices=v, faces=f, uvs=uvs, has_uv=has_uv, mat_ids=mat_ids)
    chk = ((np.arange(512)[:, None] // 32 + np.arange(512)[None, :] // 32) % 2).astype(np.uint8)
    img = np.stack([chk * 200 + 30, chk * 60 + 90, 255 - chk * 200], -1).astype(np.uint8)
    Image.fromarray(img).save(out / "checker.png")
    mat = {"baseColorFactor": [1, 1, 1, 1], "alphaFactor": 1.0, "metallicFactor": 0.3, "roughnessFactor": 0.7,
           "alphaMode": "OPAQUE", "alphaCutoff": 0.5, "alphaTexture": None, "metallicTexture": None,
           "roughnessTexture": None,
           "baseColorTexture": {"image": "checker.png", "interpolation": "Linear", "extension": "REPEAT"}}
    (out / "materials.json").write_text(json.dumps([mat]))
    return out


def real_dump(path: Path, out: Path) -> Path:
    """A real file as an ingest dump, read with trimesh (glTF Y-up -> Z-up, textures stored bottom row first)."""
    import trimesh
    from PIL import Image

    scene = trimesh.load(str(path), force="scene")
    vs, fs, uvs, hu, mids, mats, imgs, off = [], [], [], [], [], [], {}, 0
    for node in scene.graph.nodes_geometry:
        tf, gname = scene.graph[node]
        g = scene.geometry[gname]
        if not isinstance(g, trimesh.Trimesh) or not len(g.faces):
            continue
        v = trimesh.transformations.transform_points(g.vertices, tf)
        vs.append(np.stack([v[:, 0], -v[:, 2], v[:, 1]], 1))
        fs.append(g.faces + off)
        off += len(v)
        uv = getattr(g.visual, "uv", None)
        ok = uv is not None and len(uv) == len(g.vertices)
        uvs.append(np.asarray(uv, np.float32)[g.faces] if ok else np.zeros((len(g.faces), 3, 2), np.float32))
        hu.append(np.full(len(g.faces), ok))
        mids.append(np.full(len(g.faces), len(mats), np.int32))
        m = {"baseColorFactor": [1, 1, 1, 1], "alphaFactor": 1.0, "metallicFactor": 1.0, "roughnessFactor": 1.0,
             "alphaMode": "OPAQUE", "alphaCutoff": 0.5, "baseColorTexture": None, "alphaTexture": None,
             "metallicTexture": None, "roughnessTexture": None}
        mat = getattr(g.visual, "material", None)
        if mat is not None and getattr(mat, "baseColorTexture", None) is not None:
            name = f"m{len(mats)}_bc.png"
            imgs[name] = mat.baseColorTexture.convert("RGB").transpose(Image.FLIP_TOP_BOTTOM)
            m["baseColorTexture"] = {"image": name, "interpolation": "Linear", "extension": "REPEAT"}
        if mat is not None and getattr(mat, "metallicRoughnessTexture", None) is not None:
            mr = np.asarray(mat.metallicRoughnessTexture.convert("RGB"))[::-1]
            for key, ch in (("metallicTexture", 2), ("roughnessTexture", 1)):
                name = f"m{len(mats)}_{key}.png"
                imgs[name] = Image.fromarray(np.ascontiguousarray(mr[:, :, ch]), mode="L")
                m[key] = {"image": name, "interpolation": "Linear", "extension": "REPEAT"}
        mats.append(m)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "mesh.npz", vertices=np.concatenate(vs).astype(np.float32), faces=np.concatenate(fs),
             uvs=np.concatenate(uvs), has_uv=np.concatenate(hu), mat_ids=np.concatenate(mids))
    (out / "materials.json").write_text(json.dumps(mats))
    for k, im in imgs.items():
        im.save(out / k)
    return out


# ------------------------------------------------------------------------------------------------ one run

class _Clock:
    def __init__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()

    def lap(self):
        return time.process_time() - self.cpu, time.perf_counter() - self.wall


def _warm():
    from trellis2_worker.ovoxel import convert_dump, normalized_dump, read_vxz
    from trellis2_worker.ovoxel.dump import MeshDump
    from trellis2_worker.ovoxel.vxz import encode_vxz

    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    d = normalized_dump(MeshDump(v, f, np.zeros((4, 3, 2), np.float32), np.zeros(4, bool), np.full(4, -1, np.int32)))
    ov = convert_dump(d, 32)
    read_vxz(encode_vxz(ov.coords, ov.shape))


def child(dump_dir: str, res: int, phases: str) -> dict:
    """Runs in a fresh process: the phases for one resolution; times and the peak RSS after each phase."""
    from trellis2_worker.ovoxel import (dual_grid_attrs, load_dump, mesh_to_flexible_dual_grid, normalized_dump,
                                        pbr_voxels, read_vxz, write_vxz)

    _warm()
    out = {"res": res, "base_rss_mb": round(peak_mb(), 1)}
    dump = normalized_dump(load_dump(dump_dir))
    out["faces"] = int(len(dump.faces))
    clock = _Clock()
    coords, dual, inter = mesh_to_flexible_dual_grid(dump.vertices, dump.faces, res)
    shape = dual_grid_attrs(coords, dual, inter, res)
    out["dual_grid_s"], out["dual_grid_wall_s"] = clock.lap()
    out["voxels"] = int(len(coords))
    out["dual_grid_peak_mb"] = round(peak_mb(), 1)
    del dual, inter
    if "pbr" in phases:
        clock = _Clock()
        pbr = pbr_voxels(dump, coords, res)
        out["pbr_s"], out["pbr_wall_s"] = clock.lap()
        out["pbr_peak_mb"] = round(peak_mb(), 1)
    if "io" in phases:
        with tempfile.TemporaryDirectory() as td:
            clock = _Clock()
            write_vxz(Path(td) / "dg.vxz", coords, shape)
            if "pbr" in phases:
                write_vxz(Path(td) / "pbr.vxz", coords, pbr)
            out["write_s"], out["write_wall_s"] = clock.lap()
            out["vxz_bytes"] = os.path.getsize(Path(td) / "dg.vxz")
            clock = _Clock()
            read_vxz(Path(td) / "dg.vxz")
            out["read_dg_s"], out["read_dg_wall_s"] = clock.lap()
            out["io_peak_mb"] = round(peak_mb(), 1)
    return out


def run_child(dump_dir: Path, res: int, phases: str) -> dict:
    cmd = [sys.executable, __file__, "--child", str(dump_dir), "--res", str(res), "--phases", phases]
    r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if r.returncode:
        raise SystemExit(f"child failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _convert_for_pool(dump_dir: str, res: int) -> float:
    from trellis2_worker.ovoxel import convert_dump, load_dump, normalized_dump

    t = time.perf_counter()
    convert_dump(normalized_dump(load_dump(dump_dir)), res)
    return time.perf_counter() - t


def speedup(dump_dir: Path, res: int, copies: int, workers: int) -> dict:
    """Assets converted in parallel processes (how `voxelize --workers N` runs): throughput vs one process."""
    import multiprocessing as mp

    res_ = {}
    for w in sorted({1, workers}):
        with ProcessPoolExecutor(max_workers=w, mp_context=mp.get_context("spawn")) as ex:
            list(ex.map(_convert_for_pool, [str(dump_dir)] * w, [32] * w))  # start + load kernels, untimed
            t = time.perf_counter()
            list(ex.map(_convert_for_pool, [str(dump_dir)] * copies, [res] * copies))
            res_[w] = time.perf_counter() - t
    return {"copies": copies, "res": res, "seconds": res_, "speedup": res_[1] / res_[max(res_)]}


def fmt(x, nd=2):
    return "-" if x is None else f"{x:.{nd}f}"


def cw(r, key):
    return f"{r[key]:.2f} [{r[key.replace('_s', '_wall_s')]:.1f}]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", default="256,512,1024")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--dumps", help="an ingest output folder: also time its dumps/<sha>/ (instead of the trimesh "
                                    "conversions of ../shared/assets/real)")
    ap.add_argument("--workers", type=int, default=0, help="also measure the speed-up with this many processes")
    ap.add_argument("--child")
    ap.add_argument("--phases", default="pbr,io")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, int(args.res), args.phases)))
        return
    resolutions = [int(r) for r in args.res.split(",")]
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        worst = worst_case_dump(td / "worst")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print("\nworst case (UV sphere filling the cube + open wavy plane, 180k triangles), one process:")
        print(f"{'res':>5} {'voxels':>9} | {'dual grid s':>13} {'(ref)':>5} | {'PBR s':>13} {'(ref)':>5} | "
              f"{'write s':>13} {'(ref)':>5} | {'read s':>12} {'(ref)':>5} | {'peak MB dual grid':>17} {'(ref)':>5} |"
              f" {'peak MB all':>11}")
        for res in resolutions:
            dg = run_child(worst, res, "")            # the dual grid alone: its own peak RSS
            full = run_child(worst, res, "pbr,io")
            ref = REFERENCE.get(res, (None,) * 5)
            print(f"{res:>5} {full['voxels']:>9,} | {cw(dg, 'dual_grid_s'):>13} {fmt(ref[0], 1):>5} | "
                  f"{cw(full, 'pbr_s'):>13} {fmt(ref[1], 1):>5} | {cw(full, 'write_s'):>13} {fmt(ref[2], 1):>5} | "
                  f"{cw(full, 'read_dg_s'):>12} {fmt(ref[3]):>5} | {dg['dual_grid_peak_mb']:>17.0f} "
                  f"{fmt(ref[4] and ref[4] * 1000, 0):>5} | {full['io_peak_mb']:>11.0f}", flush=True)
        if not args.skip_real:
            print("\nreal assets, one process:")
            dumps = []
            if args.dumps:
                dumps = [(p.name[:12], p) for p in sorted((Path(args.dumps) / "dumps").iterdir())
                         if (p / "mesh.npz").is_file()]
            else:
                for name, rel in (("Duck", "trimesh/Duck.glb"), ("BoxTextured", "trimesh/BoxTextured.glb"),
                                  ("DamagedHelmet", "damaged-helmet/DamagedHelmet.gltf")):
                    if (REAL / rel).is_file():
                        dumps.append((name, real_dump(REAL / rel, td / name)))
            print(f"{'asset':>14} {'faces':>7} {'res':>5} {'voxels':>9} | {'dual grid s':>13} {'PBR s':>13} "
                  f"{'write s':>13} {'read s':>12} | {'peak MB':>7}")
            for name, d in dumps:
                for res in resolutions:
                    r = run_child(d, res, "pbr,io")
                    print(f"{name:>14} {r['faces']:>7,} {res:>5} {r['voxels']:>9,} | {cw(r, 'dual_grid_s'):>13} "
                          f"{cw(r, 'pbr_s'):>13} {cw(r, 'write_s'):>13} {cw(r, 'read_dg_s'):>12} | "
                          f"{r['io_peak_mb']:>7.0f}", flush=True)
        if args.workers > 1:
            res = 512 if 512 in resolutions else resolutions[0]
            s = speedup(worst, res, copies=2 * args.workers, workers=args.workers)
            print(f"\nworkers: {s['copies']} worst-case conversions (dual grid + PBR) at {res}: "
                  + ", ".join(f"{w} process(es) {t:.1f} s" for w, t in s["seconds"].items())
                  + f"; speed-up {s['speedup']:.2f}x with {args.workers} workers on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
