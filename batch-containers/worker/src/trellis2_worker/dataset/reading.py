"""The preprocessed dataset: read it (`open_dataset`), check it before reuse (`validate_dataset`), write it (`write_dataset_zip`).

A dataset is a zip (or the same tree unzipped) holding `prepared_dataset.json`, `metadata.csv`, the three latent
directories and the condition renders (layout in `layout.py`). It comes back from users, so nothing in it is trusted:
names are checked for escapes, npz files are loaded with `allow_pickle=False`, and only the files the training stages
read are allowed in.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from trellis2_worker.errors import InputError
from trellis2_worker.latents import layout

# Raw 3D formats (and their usual side files) that mark an archive as raw assets rather than a dataset.
RAW_ASSET_SUFFIXES = frozenset(
    ".glb .gltf .obj .mtl .fbx .stl .ply .blend .dae .3ds .abc .usd .usda .usdc .usdz .x3d .wrl .off .vrm".split()
)
PICKLE_SUFFIXES = frozenset(".pkl .pickle .pt .pth .ckpt .joblib .npy".split())
# Harmless clutter from desktop zip tools; skipped, never read.
IGNORED_PARTS = ("__MACOSX",)
IGNORED_NAMES = (".DS_Store", "Thumbs.db")
MAX_UNCOMPRESSED_BYTES = 256 << 30  # refuse zip bombs before reading anything


class SparseLatent(NamedTuple):
    feats: np.ndarray  # float32 (T, C)
    coords: np.ndarray  # int32 (T, 3) on the (R/16)^3 latent grid, in file order


# --------------------------------------------------------------------------------------------- sources


class _Source:
    """Read-only access to the dataset's files by their path inside the dataset (posix, no prefix)."""

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ZipSource(_Source):
    def __init__(self, path: Path):
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"{path.name} is not a readable zip archive: {exc}") from None
        members = check_member_names(self._zip.infolist())
        self._prefix = _dataset_prefix(members)
        self._names = {m[len(self._prefix):]: m for m in members if m.startswith(self._prefix)}
        self._outside = [m for m in members if not m.startswith(self._prefix)]

    def names(self) -> list[str]:
        return sorted(self._names)

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(self._names[name])
        except KeyError:
            raise FileNotFoundError(name) from None

    def close(self) -> None:
        self._zip.close()


class _DirSource(_Source):
    def __init__(self, root: Path):
        self._root = root.resolve()
        names = []
        for p in sorted(self._root.rglob("*")):
            rel = p.relative_to(self._root).as_posix()
            if p.is_symlink():
                raise InputError(f"dataset entry {rel} is a symbolic link; links are not allowed")
            if p.is_file() and not _ignored(rel):
                names.append(rel)
        self._prefix = _dataset_prefix(names)
        self._names = {n[len(self._prefix):]: n for n in names if n.startswith(self._prefix)}
        self._outside = [n for n in names if not n.startswith(self._prefix)]

    def names(self) -> list[str]:
        return sorted(self._names)

    def read(self, name: str) -> bytes:
        try:
            return (self._root / self._names[name]).read_bytes()
        except KeyError:
            raise FileNotFoundError(name) from None


def _ignored(name: str) -> bool:
    parts = name.split("/")
    return any(p in IGNORED_PARTS for p in parts) or parts[-1] in IGNORED_NAMES


def check_member_names(infos: Iterable[zipfile.ZipInfo]) -> list[str]:
    """File member names of a user zip, refusing path escapes, links and zip bombs (directories and clutter dropped)."""
    names, total = [], 0
    for info in infos:
        name = info.filename
        if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\x00" in name:
            raise InputError(f"archive entry {name!r} has an absolute or non-portable path")
        if any(part == ".." for part in name.split("/")):
            raise InputError(f"archive entry {name!r} escapes the archive (path contains '..')")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise InputError(f"archive entry {name!r} is a symbolic link; links are not allowed")
        if info.is_dir() or _ignored(name):
            continue
        total += info.file_size
        if total > MAX_UNCOMPRESSED_BYTES:
            raise InputError("archive expands to more than 256 GiB; refusing it")
        names.append(posixpath.normpath(name))
    return names


def _dataset_prefix(names: list[str]) -> str:
    """'' or 'folder/' when the whole dataset was zipped inside one folder."""
    infos = [n for n in names if posixpath.basename(n) == layout.INFO_FILE]
    if len(infos) > 1:
        raise InputError(f"archive holds {len(infos)} {layout.INFO_FILE} files; expected one dataset")
    if not infos:
        return ""
    head = posixpath.dirname(infos[0])
    if head.count("/") > 0:
        raise InputError(f"{layout.INFO_FILE} is nested too deep ({infos[0]}); expected it at the top or in one folder")
    return head + "/" if head else ""


def classify_names(names: Iterable[str]) -> str:
    """'dataset', 'raw' or 'mixed' from an archive's file names (no content read)."""
    has_dataset = has_raw = False
    for n in names:
        parts = n.split("/")
        if parts[-1] == layout.INFO_FILE or any(p in ("ss_latents", "shape_latents", "pbr_latents") for p in parts):
            has_dataset = True
        if posixpath.splitext(n)[1].lower() in RAW_ASSET_SUFFIXES:
            has_raw = True
    if has_dataset and has_raw:
        return "mixed"
    return "dataset" if has_dataset else "raw"


def classify_archive(path: str | Path) -> str:
    """'dataset', 'raw' or 'mixed' for a local zip or directory."""
    path = Path(path)
    if path.is_dir():
        return classify_names(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    try:
        with zipfile.ZipFile(path) as zf:
            return classify_names(check_member_names(zf.infolist()))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name} is not a readable zip archive: {exc}") from None


# --------------------------------------------------------------------------------------------- reader


def _load_npz(source: _Source, name: str) -> dict[str, np.ndarray]:
    try:
        data = source.read(name)
    except FileNotFoundError:
        raise InputError(f"dataset is missing {name}") from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise InputError(f"{name} holds pickled objects; datasets must not contain pickles") from None
        raise InputError(f"{name} is not a readable npz file: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - zip/format errors of every kind mean the same to the user
        raise InputError(f"{name} is not a readable npz file: {exc}") from None


@dataclass
class Dataset:
    """A preprocessed dataset opened for reading; `objects` are sha256 keys in `prepared_dataset.json` order.

    Loaders return what training consumes: `ss_latent(sha)` float32 (8,16,16,16); `shape_latent(sha)` and
    `pbr_latent(sha)` a `SparseLatent(feats float32 (T,C), coords int32 (T,3))`, rows in file order (the PBR coords
    equal the shape coords row by row); `renders(sha)` the condition views as RGBA PIL images.
    """

    info: dict
    metadata: list[dict]
    _source: _Source

    @property
    def resolution(self) -> int:
        return int(self.info["resolution"])

    @property
    def base_model(self) -> str:
        return str(self.info["base_model"])

    @property
    def objects(self) -> list[str]:
        return [o["sha256"] for o in self.info["objects"]]

    def object_info(self, sha: str) -> dict:
        for o in self.info["objects"]:
            if o["sha256"] == sha:
                return o
        raise KeyError(sha)

    def ss_latent(self, sha: str) -> np.ndarray:
        return _load_npz(self._source, layout.ss_path(sha))["z"].astype(np.float32, copy=False)

    def _sparse(self, name: str) -> SparseLatent:
        d = _load_npz(self._source, name)
        return SparseLatent(d["feats"].astype(np.float32, copy=False), d["coords"].astype(np.int32))

    def shape_latent(self, sha: str) -> SparseLatent:
        return self._sparse(layout.shape_path(sha, self.resolution))

    def pbr_latent(self, sha: str) -> SparseLatent:
        return self._sparse(layout.pbr_path(sha, self.resolution))

    def num_renders(self, sha: str) -> int:
        return int(self.object_info(sha)["renders"])

    def render(self, sha: str, view: int):
        from PIL import Image

        img = Image.open(io.BytesIO(self._source.read(layout.render_path(sha, view))))
        img.load()
        return img

    def renders(self, sha: str) -> list:
        return [self.render(sha, i) for i in range(self.num_renders(sha))]

    def transforms(self, sha: str) -> dict:
        return json.loads(self._source.read(layout.transforms_path(sha)))

    def read_file(self, name: str) -> bytes:
        """Raw bytes of one dataset file by its path inside the dataset."""
        return self._source.read(name)

    def names(self) -> list[str]:
        return self._source.names()

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dataset(path: str | Path) -> Dataset:
    """Open a dataset zip or directory (no deep checks; call `validate_dataset` for untrusted input)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset {path} does not exist")
    source: _Source = _DirSource(path) if path.is_dir() else _ZipSource(path)
    try:
        try:
            info = json.loads(source.read(layout.INFO_FILE))
        except FileNotFoundError:
            raise InputError(f"not a preprocessed dataset: {layout.INFO_FILE} is missing") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{layout.INFO_FILE} is not valid JSON: {exc}") from None
        _check_info(info)
        try:
            text = source.read(layout.METADATA_FILE).decode("utf-8")
        except FileNotFoundError:
            raise InputError(f"dataset is missing {layout.METADATA_FILE}") from None
        except UnicodeDecodeError:
            raise InputError(f"{layout.METADATA_FILE} is not UTF-8 text") from None
        metadata = list(csv.DictReader(io.StringIO(text)))
    except BaseException:
        source.close()
        raise
    return Dataset(info=info, metadata=metadata, _source=source)


def _check_info(info) -> None:
    if not isinstance(info, dict):
        raise InputError(f"{layout.INFO_FILE} must hold a JSON object")
    version = info.get("format_version")
    if version != layout.FORMAT_VERSION:
        raise InputError(
            f"dataset format version {version!r} is not supported (this tool reads version {layout.FORMAT_VERSION})"
        )
    for key in ("resolution", "base_model", "objects"):
        if key not in info:
            raise InputError(f"{layout.INFO_FILE} has no {key!r}")
    if info["resolution"] not in layout.RESOLUTIONS:
        raise InputError(f"dataset resolution {info['resolution']!r} is not one of {list(layout.RESOLUTIONS)}")
    objects = info["objects"]
    if not isinstance(objects, list) or not objects:
        raise InputError(f"{layout.INFO_FILE} lists no objects")
    seen = set()
    for o in objects:
        sha = o.get("sha256") if isinstance(o, dict) else None
        if not isinstance(sha, str) or not layout.SHA_RE.match(sha):
            raise InputError(f"{layout.INFO_FILE} has an object without a valid sha256: {str(o)[:80]}")
        if sha in seen:
            raise InputError(f"{layout.INFO_FILE} lists object {sha[:12]} twice")
        seen.add(sha)
        for key in ("shape_tokens", "pbr_tokens", "renders"):
            if not isinstance(o.get(key), int) or o[key] < 0:
                raise InputError(f"object {sha[:12]} in {layout.INFO_FILE} has no valid {key!r}")


# --------------------------------------------------------------------------------------------- validation


def expected_files(info: dict) -> set[str]:
    """Every file a dataset with this `prepared_dataset.json` must hold, and the only ones it may hold."""
    res = int(info["resolution"])
    names = {layout.INFO_FILE, layout.METADATA_FILE}
    for o in info["objects"]:
        sha = o["sha256"]
        names |= {layout.ss_path(sha), layout.shape_path(sha, res), layout.pbr_path(sha, res), layout.transforms_path(sha)}
        names |= {layout.render_path(sha, i) for i in range(o["renders"])}
    return names


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
        source = ds._source
        outside = getattr(source, "_outside", [])
        if outside:
            raise InputError(f"archive has files outside the dataset folder, e.g. {outside[0]}")
        names = set(source.names())
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
        expected = expected_files(info)
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
    d = _load_npz(ds._source, name)
    z = d.get("z")
    if z is None or z.dtype != np.float32 or z.shape != layout.SS_LATENT_SHAPE:
        got = "no 'z'" if z is None else f"{z.dtype} {z.shape}"
        raise InputError(f"{name}: expected 'z' float32 {layout.SS_LATENT_SHAPE}, found {got}")
    if not np.isfinite(z).all():
        raise InputError(f"{name}: latent has non-finite values")


def _check_sparse(ds: Dataset, name: str, tokens: int, channels: int, grid: int) -> np.ndarray:
    d = _load_npz(ds._source, name)
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
        transforms = json.loads(ds._source.read(layout.transforms_path(sha)))
        frames = transforms["frames"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InputError(f"{layout.transforms_path(sha)} is not a transforms file with 'frames'") from None
    if len(frames) != count:
        raise InputError(f"{layout.transforms_path(sha)} lists {len(frames)} views, expected {count}")
    for i in range(count):
        name = layout.render_path(sha, i)
        try:
            with Image.open(io.BytesIO(ds._source.read(name))) as img:
                if img.format != "PNG":
                    raise InputError(f"{name} is a {img.format} image, expected PNG")
                img.load()
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decode failure is the same to the user
            raise InputError(f"{name} does not decode as an image: {exc}") from None


# --------------------------------------------------------------------------------------------- writer


# Already-compressed members are stored; text is deflated.
_STORED = (".npz", ".png")


def write_dataset_zip(root: str | Path, out: str | Path) -> Path:
    """Zip a staged dataset directory (exactly the files `expected_files` names) into `out`, deterministically."""
    root, out = Path(root), Path(out)
    info = json.loads((root / layout.INFO_FILE).read_text())
    names = sorted(expected_files(info))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name in names:
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_STORED if name.endswith(_STORED) else zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            with open(root / name, "rb") as f:
                zf.writestr(zi, f.read())
    tmp.replace(out)
    return out


def write_metadata_csv(path: str | Path, rows: list[dict]) -> None:
    """metadata.csv with the reference columns first (those any row has), then the other columns in first-seen order."""
    seen: list[str] = []
    for r in rows:
        for k in r:
            if k not in seen:
                seen.append(k)
    cols = [c for c in layout.METADATA_COLUMNS if c in seen] + [c for c in seen if c not in layout.METADATA_COLUMNS]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})


def save_ss_latent(path: str | Path, z: np.ndarray) -> None:
    z = np.asarray(z, dtype=np.float32)
    if z.shape != layout.SS_LATENT_SHAPE:
        raise ValueError(f"SS latent must be {layout.SS_LATENT_SHAPE}, got {z.shape}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _savez_atomic(path, z=z)


def save_sparse_latent(path: str | Path, feats: np.ndarray, coords: np.ndarray) -> None:
    feats = np.asarray(feats, dtype=np.float32)
    coords = np.asarray(coords)
    if feats.ndim != 2 or coords.shape != (feats.shape[0], 3):
        raise ValueError(f"sparse latent shapes do not match: feats {feats.shape}, coords {coords.shape}")
    if coords.size and (coords.min() < 0 or coords.max() > 255):
        raise ValueError("latent coords do not fit uint8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _savez_atomic(path, feats=feats, coords=coords.astype(np.uint8))


def _savez_atomic(path, **arrays) -> None:
    # Written beside and renamed, so a crash never leaves a truncated file that a rerun would take as done.
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    tmp.replace(path)


class DatasetStager:
    """Builds a dataset tree in `root` object by object, then zips it (`finish`)."""

    def __init__(self, root, resolution: int, base_model: str, checkpoints: dict, encoders: dict, tool_version: str):
        if resolution not in layout.RESOLUTIONS:
            raise ValueError(f"resolution must be one of {layout.RESOLUTIONS}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.resolution = resolution
        self.info = {
            "format_version": layout.FORMAT_VERSION,
            "resolution": resolution,
            "base_model": base_model,
            "checkpoints": dict(checkpoints),
            "encoders": dict(encoders),
            "objects": [],
            "tool_version": tool_version,
            "created_at": None,
        }
        self.rows: list[dict] = []

    def add_object(self, sha: str, ss_z, shape: tuple, pbr: tuple, renders_dir, row: dict | None = None) -> dict:
        """Store one object's latents and renders (`renders_dir`: NNN.png views and transforms.json)."""
        import shutil

        if not layout.SHA_RE.match(sha):
            raise ValueError(f"not a sha256: {sha!r}")
        r = self.resolution
        save_ss_latent(self.root / layout.ss_path(sha), ss_z)
        save_sparse_latent(self.root / layout.shape_path(sha, r), *shape)
        save_sparse_latent(self.root / layout.pbr_path(sha, r), *pbr)
        renders_dir = Path(renders_dir)
        views = sorted(p for p in renders_dir.glob("[0-9][0-9][0-9].png"))
        if [p.name for p in views] != [f"{i:03d}.png" for i in range(len(views))] or not views:
            raise ValueError(f"{renders_dir}: condition renders must be 000.png..NNN.png")
        dest = self.root / layout.RENDERS_DIR / sha
        dest.mkdir(parents=True, exist_ok=True)
        for p in views:
            shutil.copyfile(p, dest / p.name)
        shutil.copyfile(renders_dir / layout.TRANSFORMS_FILE, dest / layout.TRANSFORMS_FILE)
        entry = {"sha256": sha, "shape_tokens": int(len(shape[0])), "pbr_tokens": int(len(pbr[0])), "renders": len(views)}
        self.info["objects"].append(entry)
        self.rows.append(
            {
                "sha256": sha,
                **(row or {}),
                "cond_rendered": True,
                "ss_latent_encoded": True,
                "shape_latent_encoded": True,
                "shape_latent_tokens": entry["shape_tokens"],
                "pbr_latent_encoded": True,
                "pbr_latent_tokens": entry["pbr_tokens"],
            }
        )
        return entry

    def finish(self, out_zip, created_at: str | None = None) -> dict:
        import datetime

        if not self.info["objects"]:
            raise ValueError("no objects to write")
        self.info["created_at"] = created_at or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        (self.root / layout.INFO_FILE).write_text(json.dumps(self.info, indent=2) + "\n")
        write_metadata_csv(self.root / layout.METADATA_FILE, self.rows)
        write_dataset_zip(self.root, out_zip)
        return self.info
