"""Which files in an extracted archive are 3D objects, their sha256 keys, and the optional manifest.csv.

Also the cheap checks that give a clear reason before Blender is started: an FBX must be a whole binary FBX (Blender's
importer refuses ASCII FBX; a cut-short or damaged binary one is said to be so), and every file an object refers to must stay inside the archive, checked as its importer resolves
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
from trellis2_worker.ingest.quality import COLUMNS as QUALITY_COLUMNS
from trellis2_worker.ingest.references import Refused, references
from trellis2_worker.ingest.references import check as check_references
from trellis2_worker.ingest.rules import SUPPORTED_FORMATS, is_ignored, object_format

MANIFEST = "manifest.csv"
# The columns of the ingest stage's metadata.csv, in order; a manifest column of the same name is kept under a
# `manifest_` prefix.
METADATA_COLUMNS = [
    "sha256", "file_identifier", "local_path", "format", "size",
    "mesh_dumped", "pbr_dumped", "cond_rendered",
    "num_faces", "num_vertices", "num_materials",
    "num_basecolor_tex", "num_metallic_tex", "num_roughness_tex", "num_alpha_tex",
    *QUALITY_COLUMNS,
    "ingest_error",
]
RESERVED_COLUMNS = frozenset(METADATA_COLUMNS)
_FBX_BINARY_MAGIC = b"Kaydara FBX Binary  \x00"
_FBX_BINARY_PREFIX = b"Kaydara FBX Binary"
_FBX_HEADER_BYTES = 27  # magic (21), 0x1A 0x00, uint32 version


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
    files: list[str] = field(default_factory=list)  # every file of the input considered (relative POSIX paths)


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
    return Discovery(assets, missing, unsupported, extra_columns, skipped, list(files))


# ----------------------------------------------------------------------------------------------------------------
# Pre-flight checks


def preflight(asset: Asset, root: Path) -> str | None:
    """A one-line reason this asset cannot be imported, found without Blender; None when it looks importable.
    Its references must stay inside the archive, checked as its importer resolves them (references.py)."""
    if asset.format == "fbx":
        reason = fbx_problem(asset.path)
        if reason:
            return reason
    return check_references(asset.path, asset.format, root)


def fbx_problem(path: Path) -> str | None:
    """Why an .fbx cannot be imported, said as it is: ASCII FBX (Blender reads binary only), a binary FBX cut short
    or with damaged top-level records (walked from the header, reading only their 13- or 25-byte heads), or not an
    FBX at all; None for a binary FBX whose top-level records are whole."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(1024)
        if not head.startswith(_FBX_BINARY_PREFIX):
            text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
            if text.startswith(b";") or b"FBXHeaderExtension" in head:
                return "unsupported ASCII FBX: Blender imports binary FBX only (re-export it as binary FBX)"
            return "not an FBX file: it has neither the binary nor the ASCII FBX header"
        if len(head) < _FBX_HEADER_BYTES or not head.startswith(_FBX_BINARY_MAGIC):
            return "corrupt binary FBX: its header is cut short or damaged"
        version = int.from_bytes(head[23:27], "little")
        wide = version >= 7500  # 64-bit record offsets from FBX 7.5
        width = 8 if wide else 4
        pos = _FBX_HEADER_BYTES
        while True:
            f.seek(pos)
            rec = f.read(3 * width + 1)
            if len(rec) < 3 * width + 1:
                return f"corrupt binary FBX: cut short at byte {pos} of {size}, before its closing record"
            end = int.from_bytes(rec[:width], "little")
            if end == 0 and not any(rec):
                return None  # the null record that closes the top level
            if end <= pos or end > size:
                return (f"corrupt binary FBX: the record at byte {pos} claims to end at byte {end}, "
                        f"{'past the end of the file' if end > size else 'before it starts'} ({size} bytes)")
            pos = end


# What a file without a 3D extension may be, from its first bytes (a hint in its outcome only: it is not read).
_SNIFF = ((b"glTF", ".glb"), (_FBX_BINARY_PREFIX, ".fbx"), (b"BLENDER", ".blend"), (b"ply\n", ".ply"),
          (b"ply\r\n", ".ply"))


def _looks_like(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return ""
    ext = next((e for magic, e in _SNIFF if head.startswith(magic)), None)
    return f"; its first bytes are those of a {ext} file: name it so to ingest it" if ext else ""


def other_files(files: list[str], found: Discovery, root: Path) -> list[dict]:
    """Every file of the input that is not one of its objects, with what became of it: a companion an object uses
    (a glTF's buffers and images, an OBJ's .mtl and textures), a duplicate, left out by manifest.csv, or not a 3D
    object (its extension, or its lack of one, said). Hidden files and __MACOSX/ never reach this list."""
    objects = {a.local_path for a in found.assets}
    duplicates = {d: a.local_path for a in found.assets for d in a.duplicates}
    used: dict[str, str] = {}
    for a in found.assets:
        try:
            refs = references(a.path, a.format, root)
        except (Refused, OSError):
            continue
        for ref in refs:
            if ref.target is not None:
                try:
                    rel = ref.target.resolve().relative_to(root.resolve()).as_posix()
                except ValueError:
                    continue
                used.setdefault(rel, a.local_path)
    formats = ", ".join(SUPPORTED_FORMATS)
    out = []
    for rel in files:
        if rel in objects:
            continue
        if rel in duplicates:
            note = f"same object as {duplicates[rel]} (ingested once)"
        elif rel in used:
            note = f"used by {used[rel]}"
        elif rel == MANIFEST:
            note = "the manifest"
        elif file_format(rel) is not None:
            note = "not named in manifest.csv: left out"
        else:
            suffix = Path(rel).suffix
            note = (f"not a 3D object: unsupported extension {suffix} (3D formats: {formats})" if suffix else
                    f"not a 3D object: the file has no extension (3D formats: {formats})")
            note += _looks_like(root / rel)
        out.append({"file": rel, "outcome": note})
    return out
