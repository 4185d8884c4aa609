"""Which files in an extracted archive are 3D objects, their sha256 keys, and the optional manifest.csv.

Also the cheap checks that give a clear reason before Blender is started: an FBX must be binary (Blender's importer
refuses ASCII FBX), and every file an object refers to must stay inside the archive, checked as its importer resolves
it (references.py), with a glTF's buffers present.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from trellis2_worker.errors import InputError
from trellis2_worker.ingest.references import Refused, references
from trellis2_worker.ingest.references import check as check_references
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


def object_key(path: Path, fmt: str, root: Path) -> str:
    """The object's sha256: of the file's bytes; for a .gltf/.obj that refers to other files, of the file's bytes
    followed by each referenced file's name and bytes (or a 'missing' mark), so two objects that share a main
    file but not their buffers or textures get different keys and are not merged. Only files inside root are read
    (references.py); an object whose references are refused is keyed by its own bytes (preflight says why)."""
    try:
        refs = references(path, fmt, root)
    except (Refused, OSError):
        refs = []
    if not refs:
        return sha256_file(path)
    digest = hashlib.sha256(path.read_bytes())
    targets: dict[str, Path | None] = {}
    for ref in refs:
        if targets.get(ref.name) is None:
            targets[ref.name] = ref.target
    for name in sorted(targets):
        digest.update(b"\0" + name.encode("utf-8", errors="surrogateescape") + b"\0")
        target = targets[name]
        digest.update(sha256_file(target).encode() if target is not None else b"missing")
    return digest.hexdigest()


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


def preflight(asset: Asset, root: Path) -> str | None:
    """A one-line reason this asset cannot be imported, found without Blender; None when it looks importable.
    Its references must stay inside the archive, checked as its importer resolves them (references.py)."""
    if asset.format == "fbx":
        with open(asset.path, "rb") as f:
            head = f.read(len(_FBX_BINARY_MAGIC))
        if head != _FBX_BINARY_MAGIC:
            return "unsupported ASCII FBX: Blender imports binary FBX only (re-export it as binary FBX)"
    return check_references(asset.path, asset.format, root)
