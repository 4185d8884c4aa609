"""`validate_dataset`: every check a dataset passes before it is reused, first problem as an `InputError`."""

from __future__ import annotations

import io
import json
import posixpath
from pathlib import Path

import numpy as np

from trellis2_worker.dataset import layout
from trellis2_worker.dataset.archive import PICKLE_SUFFIXES, RAW_ASSET_SUFFIXES, classify_archive
from trellis2_worker.dataset.reading import Dataset, load_npz, open_dataset
from trellis2_worker.errors import InputError


def validate_dataset(
    path: str | Path,
    resolution: int | None = None,
    base_model: str | None = None,
    allow_other_base: bool = False,
) -> dict:
    """Check a dataset before reuse; raises `InputError` with the first problem, returns a summary otherwise.

    Checks the format version, the resolution and base model against the request, that the archive holds exactly the
    files each training stage reads (no pickles, no raw assets, no stray files, no path escapes), and that each of them
    loads with the right keys, dtypes and shapes (PBR coords equal to the shape coords, token counts as recorded,
    renders decode).
    """
    path = Path(path)
    if not path.is_dir():
        kind = classify_archive(path)
        if kind == "mixed":
            raise InputError("archive mixes raw 3D assets with a preprocessed dataset; send one or the other")
    ds = open_dataset(path)
    with ds:
        if ds.source.outside:
            raise InputError(f"archive has files outside the dataset folder, e.g. {ds.source.outside[0]}")
        names = set(ds.names())
        for n in sorted(names):
            ext = posixpath.splitext(n)[1].lower()
            if ext in PICKLE_SUFFIXES:
                raise InputError(f"archive holds {n}, a pickle-type file; datasets must not contain pickles")
            if ext in RAW_ASSET_SUFFIXES:
                raise InputError("archive mixes raw 3D assets with a preprocessed dataset; send one or the other")
        info = ds.info
        if resolution is not None and ds.resolution != resolution:
            raise InputError(f"dataset was prepared at resolution {ds.resolution}, but the request asks for {resolution}")
        if base_model is not None and ds.base_model != base_model and not allow_other_base:
            raise InputError(
                f"dataset was prepared for base model {ds.base_model!r}, not {base_model!r} "
                "(pass --allow-other-base to use it anyway)"
            )
        expected = layout.expected_files(info)
        missing = sorted(expected - names)
        if missing:
            raise InputError(f"dataset is missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        extra = sorted(names - expected)
        if extra:
            raise InputError(f"dataset holds a file no training stage reads: {extra[0]}")
        rows = {r.get("sha256"): r for r in ds.metadata}
        channels = _latent_channels(info)
        grid = ds.resolution // layout.LATENT_DOWNSAMPLE
        tokens = {}
        for o in info["objects"]:
            sha = o["sha256"]
            _check_ss(ds, sha)
            shape = _check_sparse(ds, layout.shape_path(sha, ds.resolution), o["shape_tokens"], channels["shape"], grid)
            pbr = _check_sparse(ds, layout.pbr_path(sha, ds.resolution), o["pbr_tokens"], channels["pbr"], grid)
            if not np.array_equal(shape, pbr):
                raise InputError(f"{layout.pbr_path(sha, ds.resolution)}: coords differ from the shape latent's")
            _check_renders(ds, sha, o["renders"])
            row = rows.get(sha)
            if row is None:
                raise InputError(f"{layout.METADATA_FILE} has no row for object {sha[:12]}")
            for col, want in (("shape_latent_tokens", o["shape_tokens"]), ("pbr_latent_tokens", o["pbr_tokens"])):
                if _as_int(row.get(col)) != want:
                    raise InputError(f"{layout.METADATA_FILE}: {col} of {sha[:12]} is {row.get(col)!r}, expected {want}")
            tokens[sha] = {"shape": o["shape_tokens"], "pbr": o["pbr_tokens"]}
        return {
            "resolution": ds.resolution,
            "base_model": ds.base_model,
            "objects": len(info["objects"]),
            "tokens": tokens,
            "other_base": base_model is not None and ds.base_model != base_model,
        }


def _as_int(value) -> int | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() else None


def _latent_channels(info: dict) -> dict[str, int]:
    enc = info.get("encoders") or {}
    out = {}
    for kind in ("shape", "pbr"):
        c = (enc.get(kind) or {}).get("latent_channels", 32)
        if not isinstance(c, int) or c <= 0:
            raise InputError(f"{layout.INFO_FILE}: encoders.{kind}.latent_channels is not a positive integer")
        out[kind] = c
    return out


def _check_ss(ds: Dataset, sha: str) -> None:
    name = layout.ss_path(sha)
    d = load_npz(ds.source, name)
    z = d.get("z")
    if z is None or z.dtype != np.float32 or z.shape != layout.SS_LATENT_SHAPE:
        got = "no 'z'" if z is None else f"{z.dtype} {z.shape}"
        raise InputError(f"{name}: expected 'z' float32 {layout.SS_LATENT_SHAPE}, found {got}")
    if not np.isfinite(z).all():
        raise InputError(f"{name}: latent has non-finite values")


def _check_sparse(ds: Dataset, name: str, tokens: int, channels: int, grid: int) -> np.ndarray:
    d = load_npz(ds.source, name)
    feats, coords = d.get("feats"), d.get("coords")
    if feats is None or coords is None:
        raise InputError(f"{name}: expected keys 'feats' and 'coords', found {sorted(d)}")
    if feats.dtype != np.float32 or feats.shape != (tokens, channels):
        raise InputError(f"{name}: expected feats float32 ({tokens}, {channels}), found {feats.dtype} {feats.shape}")
    if coords.dtype != np.uint8 or coords.shape != (tokens, 3):
        raise InputError(f"{name}: expected coords uint8 ({tokens}, 3), found {coords.dtype} {coords.shape}")
    if tokens and int(coords.max()) >= grid:
        raise InputError(f"{name}: coords exceed the {grid}^3 latent grid of this resolution")
    if not np.isfinite(feats).all():
        raise InputError(f"{name}: latent has non-finite values")
    return coords


def _check_renders(ds: Dataset, sha: str, count: int) -> None:
    from PIL import Image

    if count < 1:
        raise InputError(f"object {sha[:12]} has no condition renders")
    try:
        transforms = json.loads(ds.source.read(layout.transforms_path(sha)))
        frames = transforms["frames"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(f"{layout.transforms_path(sha)} is not a transforms file with 'frames'") from None
    if len(frames) != count:
        raise InputError(f"{layout.transforms_path(sha)} lists {len(frames)} views, expected {count}")
    for i in range(count):
        name = layout.render_path(sha, i)
        try:
            with Image.open(io.BytesIO(ds.source.read(name))) as img:
                if img.format != "PNG":
                    raise InputError(f"{name} is a {img.format} image, expected PNG")
                img.load()
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decode failure is the same to the user
            raise InputError(f"{name} does not decode as an image: {exc}") from None
