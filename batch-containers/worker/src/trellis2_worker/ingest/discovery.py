"""Which files in an extracted archive are 3D objects, their sha256 keys, and the optional manifest.csv.

Also the cheap checks that give a clear reason before Blender is started: a glTF's buffers must exist inside the
archive, an FBX must be binary (Blender's importer refuses ASCII FBX), OBJ material libraries must stay inside.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from trellis2_worker.errors import InputError
from trellis2_worker.ingest.rules import SUPPORTED_FORMATS, is_ignored, object_format

MANIFEST = "manifest.csv"
# Columns the ingest stage itself writes; a manifest column of the same name is kept under a `manifest_` prefix.
RESERVED_COLUMNS = {
    "sha256", "file_identifier", "local_path", "format", "size", "mesh_dumped", "pbr_dumped", "cond_rendered",
    "num_faces", "num_vertices", "num_materials", "num_basecolor_tex", "num_metallic_tex", "num_roughness_tex",
    "num_alpha_tex", "ingest_error",
}
_FBX_BINARY_MAGIC = b"Kaydara FBX Binary  \x00"


@dataclass
class Asset:
    sha256: str
    local_path: str  # relative POSIX path inside the archive
    format: str
    size: int
    path: Path  # where it lies on disk now
    duplicates: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)  # manifest columns


@dataclass
class Discovery:
    assets: list[Asset]
    manifest_missing: list[str]  # paths manifest.csv names that are not in the archive
    manifest_unsupported: list[str]  # paths it names that are not a supported 3D format
    extra_columns: list[str]
    skipped: list[dict]  # {file, reason} for files never considered (symlinks in a directory input)


def file_format(name: str) -> str | None:
    return object_format(name)  # the extensions are archive_rules.json's, as Java's inspection counts them


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dependencies(path: Path, fmt: str) -> list[str]:
    """The files a multi-file object refers to, as written in it (relative to its folder): a .gltf's buffers and
    images, an .obj's material libraries and their textures. Unreadable files have none (the importer says why)."""
    refs: list[str] = []
    try:
        if fmt == "gltf":
            doc = json.loads(path.read_bytes())
            for kind in ("buffers", "images"):
                for item in (doc.get(kind) or []) if isinstance(doc, dict) else []:
                    uri = item.get("uri") if isinstance(item, dict) else None
                    if uri and not uri.startswith("data:"):
                        refs.append(urllib.parse.unquote(uri))
        elif fmt == "obj":
            for lib in _obj_mtllibs(path):
                refs.append(lib)
                mtl = path.parent / lib
                if mtl.is_file():
                    refs += [str(PurePosixPath(lib).parent / t) for t in _mtl_textures(mtl)]
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    return refs


def object_key(path: Path, fmt: str, root: Path) -> str:
    """The object's sha256: of the file's bytes; for a .gltf/.obj that refers to other files, of the file's bytes
    followed by each referenced file's name and bytes (or a 'missing' mark), so two objects that share a main
    file but not their buffers or textures get different keys and are not merged."""
    refs = dependencies(path, fmt)
    if not refs:
        return sha256_file(path)
    digest = hashlib.sha256(path.read_bytes())
    for ref in sorted(set(refs)):
        target = path.parent / ref
        digest.update(b"\0" + ref.encode() + b"\0")
        ok = _inside(root, target) and target.is_file()
        digest.update(sha256_file(target).encode() if ok else b"missing")
    return digest.hexdigest()


def _obj_mtllibs(path: Path) -> list[str]:
    libs = []
    with open(path, "rb") as f:
        for raw in f:
            if raw.startswith(b"mtllib"):
                libs += raw[6:].decode("utf-8", errors="replace").split()
    return libs


def _mtl_textures(mtl: Path) -> list[str]:
    textures = []
    with open(mtl, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", errors="replace").strip()
            if line.lower().startswith(("map_", "bump", "disp", "decal", "refl", "norm")):
                parts = line.split()
                if len(parts) >= 2:
                    textures.append(parts[-1].replace("\\", "/"))  # Windows-written .mtl files use backslashes
    return textures


def list_files(root: Path) -> tuple[list[str], list[dict]]:
    """Relative POSIX paths of the regular files under root (hidden ones and __MACOSX skipped), sorted;
    symlinks are not followed and are listed as skipped."""
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not is_ignored((rel_dir / d).as_posix()))
        for name in filenames:
            rel = (rel_dir / name).as_posix()
            if is_ignored(rel):
                continue
            if (Path(dirpath) / name).is_symlink():
                skipped.append({"file": rel, "reason": "symbolic link, not followed"})
                continue
            files.append(rel)
    return sorted(files), skipped


def _normalise(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def read_manifest(root: Path) -> tuple[list[dict], list[str]] | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if "file" not in columns:
        raise InputError(f"{MANIFEST} has no 'file' column (its columns: {', '.join(columns) or 'none'})")
    rows = []
    for raw in reader:
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if row.get("file"):
            rows.append(row)
    return rows, [c for c in columns if c and c != "file"]


def discover(root: Path, files: list[str] | None = None, use_manifest: bool = True) -> Discovery:
    """Supported objects under root, in path order, one per distinct content (sha256); see module doc."""
    root = Path(root)
    skipped: list[dict] = []
    if files is None:
        files, skipped = list_files(root)
    manifest = read_manifest(root) if use_manifest else None
    missing: list[str] = []
    unsupported: list[str] = []
    extras: dict[str, dict[str, str]] = {}
    extra_columns: list[str] = []
    if manifest is not None:
        rows, columns = manifest
        extra_columns = [c if c not in RESERVED_COLUMNS else f"manifest_{c}" for c in columns]
        present = set(files)
        lower = {f.lower(): f for f in files}
        wanted = []
        for row in rows:
            name = _normalise(row["file"])
            actual = name if name in present else lower.get(name.lower())
            if actual is None:
                missing.append(name)
                continue
            if file_format(actual) is None:
                unsupported.append(name)
                continue
            wanted.append(actual)
            extras[actual] = {
                (c if c not in RESERVED_COLUMNS else f"manifest_{c}"): row.get(c, "") for c in columns
            }
        candidates = sorted(set(wanted))
    else:
        candidates = [f for f in files if file_format(f) is not None]

    by_sha: dict[str, Asset] = {}
    assets: list[Asset] = []
    for rel in candidates:
        path = root / rel
        sha = object_key(path, file_format(rel), root)
        if sha in by_sha:
            by_sha[sha].duplicates.append(rel)
            continue
        asset = Asset(sha, rel, file_format(rel), path.stat().st_size, path, extra=extras.get(rel, {}))
        by_sha[sha] = asset
        assets.append(asset)
    return Discovery(assets, missing, unsupported, extra_columns, skipped)


# ----------------------------------------------------------------------------------------------------------------
# Pre-flight checks


def _inside(root: Path, target: Path) -> bool:
    root, target = root.resolve(), target.resolve()
    return target == root or root in target.parents


def preflight(asset: Asset, root: Path) -> str | None:
    """A one-line reason this asset cannot be imported, found without Blender; None when it looks importable."""
    if asset.format == "fbx":
        with open(asset.path, "rb") as f:
            head = f.read(len(_FBX_BINARY_MAGIC))
        if head != _FBX_BINARY_MAGIC:
            return "unsupported ASCII FBX: Blender imports binary FBX only (re-export it as binary FBX)"
    elif asset.format == "gltf":
        return _check_gltf(asset.path, root)
    elif asset.format == "obj":
        return _check_obj(asset.path, root)
    return None


def _check_gltf(path: Path, root: Path) -> str | None:
    try:
        doc = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not a valid glTF JSON file: {exc}"
    if not isinstance(doc, dict):
        return "not a valid glTF JSON file: top level is not an object"
    for kind in ("buffers", "images"):
        for item in doc.get(kind) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if not uri or uri.startswith("data:"):
                continue
            target = path.parent / urllib.parse.unquote(uri)
            if not _inside(root, target):
                return f"glTF {kind[:-1]} refers outside the archive: {uri}"
            if kind == "buffers" and not target.is_file():
                return f"missing buffer: {uri} (referenced by {path.name}) is not in the archive"
    return None


def _check_obj(path: Path, root: Path) -> str | None:
    for lib in _obj_mtllibs(path):
        mtl = path.parent / lib
        if not _inside(root, mtl):
            return f"OBJ material library refers outside the archive: {lib}"
        if mtl.is_file():
            for tex in _mtl_textures(mtl):
                if not _inside(root, mtl.parent / tex):
                    return f"OBJ material refers to a texture outside the archive: {tex}"
    return None
