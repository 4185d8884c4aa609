"""`trellis2-worker voxelize`: the O-Voxel stage alone, on the output folder of `ingest`.

Writes, per resolution R, OUT/dual_grid_R/<sha>.vxz and OUT/pbr_voxels_R/<sha>.vxz (the data toolkit's layout and
attributes) and a metadata.csv in each folder (dual_grid_converted, dual_grid_size / pbr_voxelized, num_pbr_voxels).
Assets already converted (a readable .vxz header) are kept, as the toolkit does."""

from __future__ import annotations

import csv
import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..errors import InputError, one_line

RESOLUTIONS = (256, 512, 1024)  # what TRELLIS.2 trains on; smaller powers of two are accepted for quick looks


def register(subparsers) -> None:
    p = subparsers.add_parser("voxelize", help="convert ingest dumps to O-Voxel .vxz files (dual grid + PBR)")
    p.add_argument("--input", required=True, help="folder written by `ingest` (holds dumps/<sha>/mesh.npz)")
    p.add_argument("--resolution", default="512", help="256, 512 or 1024, or a comma list (default 512)")
    p.add_argument("--out", required=True, help="output folder (may be the input folder)")
    p.add_argument("--workers", type=int, default=1, help="assets converted in parallel (processes)")
    p.add_argument("--no-pbr", action="store_true", help="only the dual grid")
    p.add_argument("--report", help="write the JSON report here too")
    p.set_defaults(func=run)


def _parse_resolutions(text: str) -> list[int]:
    try:
        res = sorted({int(x) for x in str(text).split(",") if x.strip()}, reverse=True)
    except ValueError:
        raise InputError(f"--resolution must be integers, got {text!r}") from None
    bad = [r for r in res if r < 16 or r > 1024 or r & (r - 1)]
    if not res or bad:
        raise InputError(f"--resolution must be powers of two from 16 to 1024 (TRELLIS.2 uses {RESOLUTIONS}), "
                         f"got {text!r}")
    return res


def find_dumps(input_dir: Path) -> list[tuple[str, Path]]:
    root = input_dir / "dumps"
    if not root.is_dir():
        raise InputError(f"{input_dir} has no dumps/ folder (run `trellis2-worker ingest` first)")
    found = sorted((d.name, d) for d in root.iterdir() if (d / "mesh.npz").is_file())
    if not found:
        raise InputError(f"{root} holds no dumps (<sha>/mesh.npz)")
    return found


def convert_one(sha: str, dump_dir: str, out_dir: str, resolutions: list[int], with_pbr: bool) -> dict:
    """Convert one asset at every resolution; never raises (the failure is the record's `error`)."""
    from .convert import convert_dump
    from .dump import load_dump, normalized_dump
    from .vxz import read_vxz_info, write_vxz

    rec: dict = {"sha256": sha}
    out = Path(out_dir)
    try:
        dump = None
        for res in resolutions:
            dg_path = out / f"dual_grid_{res}" / f"{sha}.vxz"
            pbr_path = out / f"pbr_voxels_{res}" / f"{sha}.vxz"
            try:
                n_dg = read_vxz_info(dg_path)["num_voxel"]
                n_pbr = read_vxz_info(pbr_path)["num_voxel"] if with_pbr else None
                rec[str(res)] = {"num_voxels": n_dg, "num_pbr_voxels": n_pbr, "reused": True}
                continue
            except (OSError, ValueError, KeyError):
                pass
            if dump is None:
                t = time.perf_counter()
                dump = normalized_dump(load_dump(dump_dir))
                rec["load_s"] = round(time.perf_counter() - t, 3)
                rec["num_faces"] = int(len(dump.faces))
            ov = convert_dump(dump, res, with_pbr=with_pbr)
            t = time.perf_counter()
            dg_path.parent.mkdir(parents=True, exist_ok=True)
            write_vxz(dg_path, ov.coords, ov.shape)
            if with_pbr:
                pbr_path.parent.mkdir(parents=True, exist_ok=True)
                write_vxz(pbr_path, ov.coords, ov.pbr)
            timings = {k: round(v, 3) for k, v in ov.timings.items()}
            timings["write_s"] = round(time.perf_counter() - t, 3)
            rec[str(res)] = {"num_voxels": int(len(ov.coords)),
                             "num_pbr_voxels": int(len(ov.coords)) if with_pbr else None, **timings}
    except Exception as exc:  # noqa: BLE001 - one bad asset must not stop the others; it is reported
        rec["error"] = f"{type(exc).__name__}: {one_line(exc)}" if not isinstance(exc, InputError) else one_line(exc)
    rec["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return rec


def _write_metadata(out: Path, res: int, records: list[dict], with_pbr: bool) -> None:
    ok = [r for r in records if str(res) in r and "error" not in r]
    targets = [("dual_grid", ["sha256", "dual_grid_converted", "dual_grid_size"], "num_voxels")]
    if with_pbr:
        targets.append(("pbr_voxels", ["sha256", "pbr_voxelized", "num_pbr_voxels"], "num_pbr_voxels"))
    for prefix, cols, key in targets:
        d = out / f"{prefix}_{res}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "metadata.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in ok:
                w.writerow([r["sha256"], True, r[str(res)][key]])


def run(args) -> dict:
    input_dir = Path(args.input)
    out = Path(args.out)
    resolutions = _parse_resolutions(args.resolution)
    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    dumps = find_dumps(input_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    jobs = [(sha, str(d), str(out), resolutions, not args.no_pbr) for sha, d in dumps]
    if args.workers == 1 or len(jobs) == 1:
        records = [convert_one(*j) for j in jobs]
    else:
        # spawn: a clean interpreter per worker (numba kernels load from the on-disk cache)
        with ProcessPoolExecutor(max_workers=min(args.workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
            records = list(ex.map(convert_one, *zip(*jobs)))
    for res in resolutions:
        _write_metadata(out, res, records, not args.no_pbr)
    failed = [{"sha256": r["sha256"], "reason": r["error"]} for r in records if "error" in r]
    report = {
        "command": "voxelize",
        "resolutions": resolutions,
        "objects": len(records),
        "succeeded": len(records) - len(failed),
        "failed": failed,
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "workers": args.workers,
        "per_object": records,
    }
    print(f"voxelize: {report['succeeded']}/{report['objects']} converted at {resolutions} "
          f"in {report['elapsed_s']} s -> {out}")
    for f in failed:
        print(f"  failed {f['sha256']}: {f['reason']}")
    if not report["succeeded"]:
        raise InputError(f"no asset could be voxelised: {failed[0]['reason']}")
    return report
