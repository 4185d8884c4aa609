"""`preprocess`: raw assets → the preprocessed dataset zip, or a preprocessed zip validated and passed through.

Flow for raw assets: ingest (safe extraction, discovery, Blender dumps, condition renders) → per object: exact unit-cube
normalisation, O-Voxel dual grid and PBR voxels at the request's resolution, the 64³ SS occupancy, the three encoders →
dataset zip. Each finished object is cached under `cache_dir/<base fingerprint>/<resolution>/<sha256>/`, so a rerun
after a crash only redoes what is missing.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from trellis2_worker import __version__, progress
from trellis2_worker.errors import InputError
from trellis2_worker.dataset import (
    DatasetStager, classify_archive, layout, save_sparse_latent, save_ss_latent, validate_dataset,
)
from trellis2_worker.latents.plan import base_model_id
from trellis2_worker.latents.encode import EncodingError, encode_pbr, encode_shape, encode_ss, for_device
from trellis2_worker.ovoxel import ss_occupancy

log = logging.getLogger(__name__)

# `Base.load` keys of the three encoders (models API).
ENCODER_KEYS = {"ss": "sparse_structure_encoder", "shape": "shape_slat_encoder", "pbr": "tex_slat_encoder"}
DEFAULT_RENDER_SIZE = 1024  # the reference renders condition views at 1024²
ENCODER_NAMES = {"ss": layout.SS_ENCODER_NAME, "shape": layout.SHAPE_ENCODER_NAME, "pbr": layout.TEX_ENCODER_NAME}


def default_cache_dir() -> Path:
    env = os.environ.get("TRELLIS2_PREPROCESS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trellis2-lora" / "preprocess"


def _say(text: str) -> None:
    print(f"preprocess: {text}", file=sys.stderr, flush=True)


def _device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------------------------- one object


def encode_object(dump_dir: Path, resolution: int, encoders: dict, device="cpu") -> dict:
    """O-Voxels and latents of one ingested object. Returns the latents, voxel counts and per-phase seconds."""
    from trellis2_worker.ovoxel import convert_dump, load_dump, normalized_dump, pbr_voxels

    times = {}
    t = time.perf_counter()
    try:
        # the exact unit-cube normalisation (docs/data-formats.md#normalisation)
        dump = normalized_dump(load_dump(dump_dir))
    except InputError as exc:  # one object's bad dump fails that object, not the run
        raise EncodingError(str(exc)) from None
    times["load_s"] = time.perf_counter() - t

    t = time.perf_counter()
    shape_vox = convert_dump(dump, resolution, with_pbr=False)
    coords = shape_vox.coords
    times["ovoxel_dual_grid_s"] = time.perf_counter() - t
    if len(coords) == 0:
        raise EncodingError("the mesh gives no surface voxels")
    t = time.perf_counter()
    try:
        pbr_vox = pbr_voxels(dump, coords, resolution)  # row-aligned to the dual grid's voxels
    except (InputError, ValueError) as exc:  # a texture missing from the dump, a voxel set that differs
        raise EncodingError(f"PBR voxels: {exc}") from None
    attrs = np.concatenate([pbr_vox[k] for k in ("base_color", "metallic", "roughness", "alpha")], axis=1)
    times["ovoxel_pbr_s"] = time.perf_counter() - t

    t = time.perf_counter()
    occ = ss_occupancy(dump.vertices, dump.faces)
    times["ss_occupancy_s"] = time.perf_counter() - t

    t = time.perf_counter()
    shape = encode_shape(encoders["shape"], coords, shape_vox.shape["vertices"], shape_vox.shape["intersected"], device)
    times["encode_shape_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pbr = encode_pbr(encoders["pbr"], coords, attrs, device)
    # Both encoders downsample the same coords the same way, so the latents pair row by row
    # (docs/data-formats.md#latent-files).
    if not np.array_equal(pbr[1], shape[1]):
        raise EncodingError("the PBR latent's coords differ from the shape latent's")
    times["encode_pbr_s"] = time.perf_counter() - t
    t = time.perf_counter()
    ss_z = encode_ss(encoders["ss"], occ, device)
    times["encode_ss_s"] = time.perf_counter() - t
    grid = resolution // layout.LATENT_DOWNSAMPLE
    if len(shape[1]) == 0 or shape[1].min() < 0 or shape[1].max() >= grid:
        raise EncodingError(f"shape latent is empty or falls outside the {grid}^3 latent grid")
    return {
        "ss": ss_z,
        "shape": shape,
        "pbr": pbr,
        "stats": {"dual_grid_size": int(len(coords)), "num_pbr_voxels": int(len(attrs)), "ss_cells": int(len(occ))},
        "times": times,
    }


# --------------------------------------------------------------------------------------------- cache


class ObjectCache:
    """Finished objects by sha256 for one (base fingerprint, resolution); a `done.json` marks an object complete."""

    def __init__(self, root: Path, fingerprint: str, resolution: int):
        self.dir = Path(root) / fingerprint / str(resolution)
        self.resolution = resolution

    def _obj(self, sha: str) -> Path:
        return self.dir / sha

    def get(self, sha: str) -> dict | None:
        d = self._obj(sha)
        try:
            done = json.loads((d / "done.json").read_text())
            with np.load(d / "ss.npz", allow_pickle=False) as f:
                ss = f["z"]
            with np.load(d / "shape.npz", allow_pickle=False) as f:
                shape = (f["feats"], f["coords"])
            with np.load(d / "pbr.npz", allow_pickle=False) as f:
                pbr = (f["feats"], f["coords"])
        except (OSError, ValueError, KeyError):
            return None  # absent or half-written: redo the object
        return {"ss": ss, "shape": shape, "pbr": pbr, "stats": done.get("stats", {}), "times": done.get("times", {})}

    def put(self, sha: str, result: dict) -> None:
        d = self._obj(sha)
        d.mkdir(parents=True, exist_ok=True)
        save_ss_latent(d / "ss.npz", result["ss"])
        save_sparse_latent(d / "shape.npz", *result["shape"])
        save_sparse_latent(d / "pbr.npz", *result["pbr"])
        tmp = d / "done.json.partial"
        tmp.write_text(json.dumps({"stats": result["stats"], "times": result["times"]}))
        tmp.replace(d / "done.json")  # last: marks the object complete


# On CPU the encoders' float sums depend on how many threads split them (the last bit of ~6 % of a shape latent's
# values between 1 and 2 threads), and a local shard gets fewer threads than a one-shard run. On one thread an
# object's latents are the same bytes in any shard, whatever the shard count or the machine's cores.
CPU_ENCODE_THREADS = 1


class _encode_threads:
    def __init__(self, device: str):
        self.device, self.before = device, None

    def __enter__(self):
        import torch

        if self.device == "cpu":
            self.before = torch.get_num_threads()
            torch.set_num_threads(CPU_ENCODE_THREADS)

    def __exit__(self, *exc):
        import torch

        if self.before is not None:
            torch.set_num_threads(self.before)


def base_fingerprint(model_id: str, checkpoints: dict) -> str:
    h = hashlib.sha256(json.dumps({"base": model_id, "checkpoints": checkpoints}, sort_keys=True).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------- command


def reuse_dataset(local: Path, resolution: int, base_model: str, allow_other_base: bool) -> dict:
    summary = validate_dataset(local, resolution, base_model, allow_other_base)
    return {
        "kind": "preprocessed",
        "reused": True,
        "resolution": summary["resolution"],
        "base_model": summary["base_model"],
        "objects_found": summary["objects"],
        "objects_succeeded": summary["objects"],
        "objects_failed": 0,
        "failed": [],
        "tokens": summary["tokens"],
    }


def preprocess(
    input_uri: str,
    resolution: int,
    base: str,
    output_uri: str,
    render_size: int | None = None,
    workers: int = 1,
    cache_dir: str | Path | None = None,
    allow_other_base: bool = False,
    work_dir: str | Path | None = None,
    objects_from: str | None = None,
    shard: str | None = None,
) -> dict:
    """The `preprocess` command; returns the report. `objects_from` (a plan) and `shard` ("I/N"): plan.py. With a
    shard, objects that all fail give a report with zero objects and no dataset instead of an error."""
    from trellis2_worker import storage

    if resolution not in layout.RESOLUTIONS:
        raise InputError(f"resolution must be one of {list(layout.RESOLUTIONS)}, got {resolution}")
    if shard is not None and objects_from is None:
        raise InputError("--shard needs --objects-from (the plan the shards are cut from)")
    only = None
    if objects_from is not None:
        from trellis2_worker.latents.plan import shard_objects

        only = shard_objects(objects_from, shard)
    t_start = time.perf_counter()
    own_work = work_dir is None
    work = Path(work_dir or tempfile.mkdtemp(prefix="trellis2-preprocess-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        local = storage.open_input(input_uri, work / "input")
        kind = classify_archive(local)
        if kind == "mixed":
            raise InputError("archive mixes raw 3D assets with a preprocessed dataset; send one or the other")
        if kind == "dataset":
            if only is not None:
                raise InputError("--objects-from applies to raw assets, not to a preprocessed dataset")
            base_id = base_model_id(base)
            report = reuse_dataset(local, resolution, base_id, allow_other_base)
            if local.is_dir():
                raise InputError("a preprocessed dataset must be given as a .zip to be passed through")
            storage.upload_file(local, output_uri)  # unchanged bytes: the same dataset key downstream
        else:
            # A shard whose objects all failed still succeeds (exit 0): one shard's bad objects must not fail the
            # array job; the merge decides whether the run fails (when no object survives anywhere).
            report = _preprocess_raw(local, resolution, base, output_uri, render_size, workers, cache_dir, work, only,
                                     allow_empty=shard is not None)
            if only is not None:
                report["shard"] = {"plan": objects_from, "shard": shard or "0/1", "objects": len(only)}
        report["output"] = output_uri if report["objects_succeeded"] else None
        report["seconds"] = round(time.perf_counter() - t_start, 3)
        # run details live here, never in the dataset (its bytes depend only on its objects)
        report["created_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return report
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def _quality_of(row: dict, notes: dict) -> dict:
    """A report entry's quality part: measured values, flags, and the Blender pass's warnings (when any)."""
    from trellis2_worker.ingest.quality import flags_in

    out = {"flags": flags_in(row)}
    if notes.get("quality"):
        out["quality"] = notes["quality"]
    if notes.get("warnings"):
        out["warnings"] = notes["warnings"]
    return out


def _preprocess_raw(local: Path, resolution, base, output_uri, render_size, workers, cache_dir, work: Path,
                    only: dict[str, str | None] | None = None, allow_empty: bool = False) -> dict:
    from trellis2_worker import storage
    from trellis2_worker.latents import _ingest
    import torch

    from trellis2_worker.models import load_base

    render_size = render_size or DEFAULT_RENDER_SIZE
    cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    icache = _ingest.IngestCache(cache_root, render_size)
    ing = _ingest.run(local, work / "ingest", icache, render_size=render_size, workers=workers, only=only)
    timings["ingest_s"] = time.perf_counter() - t
    failed = list(ing["failed"])

    t = time.perf_counter()
    _say(f"loading the encoders of the {base} base")
    base_obj = load_base(base)
    device = _device()
    encoders = {k: for_device(base_obj.load(key, device=device), device) for k, key in ENCODER_KEYS.items()}
    checkpoints = {key: base_obj.checkpoint_sha256(key) for key in ENCODER_KEYS.values()}
    timings["load_models_s"] = time.perf_counter() - t
    # fp16 blocks on GPU as in the reference; float32 copies on CPU (see encode.for_device): part of the cache key
    precision = {k: str(next(m.parameters()).dtype).replace("torch.", "") for k, m in encoders.items()}
    precision = {k: ("mixed float16" if any(p.dtype == torch.float16 for p in encoders[k].parameters()) else v)
                 for k, v in precision.items()}
    # the thread count is part of the key: latents encoded before the encoders ran on one CPU thread differ in bits
    threads = {"cpu_threads": CPU_ENCODE_THREADS} if device == "cpu" else {}
    cache = ObjectCache(cache_root, base_fingerprint(base_obj.model_id, {**checkpoints, "precision": precision, **threads}),
                        resolution)

    encoder_info = {
        k: {"name": ENCODER_NAMES[k], "key": ENCODER_KEYS[k], "checkpoint_sha256": checkpoints[ENCODER_KEYS[k]],
            "precision": precision[k], "device": device}
        for k in ENCODER_KEYS
    }
    encoder_info["ss"].update(grid=layout.SS_GRID, occupancy_of_resolution=1024, latent_shape=list(layout.SS_LATENT_SHAPE))
    for k in ("shape", "pbr"):
        encoder_info[k].update(resolution=resolution, latent_channels=None, sample_posterior=False)
    encoder_info["ss"]["sample_posterior"] = False
    stager = DatasetStager(work / "dataset", resolution, base_obj.model_id, checkpoints, encoder_info, __version__)

    phase_totals: dict[str, float] = {}
    per_object, cached, channels = [], 0, set()
    bar = progress.counter(len(ing["objects"]), f"encode (O-Voxel {resolution}, {device})", "object")
    for sha, row in ing["objects"].items():
        name = row.get("local_path", sha)
        result = cache.get(sha)
        from_cache = result is not None
        if from_cache:
            cached += 1
        else:
            log.info("encoding %s (%s)", name, sha[:12])
            try:
                with _encode_threads(device):
                    result = encode_object(icache.obj(sha) / "dump", resolution, encoders, device)
            except EncodingError as exc:
                failed.append({"file": name, "reason": f"O-Voxel/encoding failed: {exc}"})
                bar.write(f"encode: {name}: FAILED: {exc}", file=sys.stderr)
                bar.set_postfix(failed=len(failed), cached=cached)
                bar.update(1)
                continue
            cache.put(sha, result)
            for k, v in result["times"].items():
                phase_totals[k] = phase_totals.get(k, 0.0) + v
        # the quality columns always (an empty quality_flags says "none"), the others when set
        meta = {k: v for k, v in row.items() if k not in ("format", "size", "ingest_error")
                and (v not in ("", None) or k in layout.QUALITY_COLUMNS)}
        meta.update(dual_grid_converted=True, dual_grid_size=result["stats"].get("dual_grid_size"), pbr_voxelized=True,
                    num_pbr_voxels=result["stats"].get("num_pbr_voxels"))
        entry = stager.add_object(sha, result["ss"], result["shape"], result["pbr"], icache.obj(sha) / "renders", meta)
        channels |= {result["shape"][0].shape[1], result["pbr"][0].shape[1]}
        per_object.append({
            "sha256": sha, "file": name, "shape_tokens": entry["shape_tokens"], "pbr_tokens": entry["pbr_tokens"],
            "voxels": result["stats"].get("dual_grid_size"), "ss_cells": result["stats"].get("ss_cells"),
            "blender_s": ing["seconds"].get(sha), "seconds": {k: round(v, 3) for k, v in result["times"].items()},
            "from_cache": from_cache,
            **_quality_of(row, ing["notes"].get(sha, {})),
        })
        bar.set_postfix(failed=len(failed), cached=cached)
        bar.update(1)
    bar.close()

    if not per_object and not allow_empty:
        reasons = "; ".join(f"{f.get('file')}: {f.get('reason')}" for f in failed[:5])
        raise InputError(f"no object could be preprocessed ({ing['found']} found){': ' + reasons if reasons else ''}")
    if per_object:
        if len(channels) != 1:
            raise RuntimeError(f"the encoders gave latents with different channel counts: {sorted(channels)}")
        latent_channels = channels.pop()
        for k in ("shape", "pbr"):
            encoder_info[k]["latent_channels"] = latent_channels
        stager.info["encoders"] = encoder_info

        t = time.perf_counter()
        out_zip = work / "preprocessed.zip"
        _say(f"writing the dataset ({len(per_object)} objects)")
        stager.finish(out_zip)
        _say(f"uploading the dataset ({out_zip.stat().st_size / 2**20:.1f} MiB)")
        storage.upload_file(out_zip, output_uri)
        timings["write_dataset_s"] = time.perf_counter() - t
        _say(f"dataset written in {timings['write_dataset_s']:.0f} s: {len(per_object)} of {ing['found']} objects, "
             f"{len(failed)} failed")
    else:  # a shard whose objects all failed: no dataset; the merge reads the failures from the report
        _say(f"no dataset written: all {ing['found']} objects of this shard failed")
    timings.update(phase_totals)
    blender = [s for s in ing["seconds"].values() if s is not None]
    flagged = [{"file": o["file"], "flags": o["flags"]} for o in per_object if o.get("flags")]
    from trellis2_worker.ingest.pipeline import summary_lines

    for line in summary_lines(flagged):  # the end-of-run summary: what is kept but of doubtful value
        _say(line)
    return {
        "kind": "raw",
        "reused": False,
        "resolution": resolution,
        "base_model": base_obj.model_id,
        "render_size": render_size,
        "objects_found": ing["found"],
        "objects_succeeded": len(per_object),
        "objects_failed": len(failed),
        "failed": failed,
        "flagged": flagged,  # kept but of doubtful value (docs/rendering.md#data-quality)
        "objects": per_object,
        "other_files": ing["other_files"],  # every other file of the input and what became of it
        "objects_from_cache": {"ingest": ing["cached"], "latents": cached},
        "tokens": {o["sha256"]: {"shape": o["shape_tokens"], "pbr": o["pbr_tokens"]} for o in per_object},
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "blender_seconds_per_object": round(sum(blender) / len(blender), 3) if blender else None,
        "blender_sandbox": ing.get("sandbox", []),  # which protections the Blender passes ran under
        "device": device,
    }
