"""The dataset's files, read from a zip or from the same tree unzipped, with every name checked before use.

Names are refused when they escape the archive, are links or would expand the archive past the uncompressed cap; the
dataset may sit at the top of the archive or inside one folder. Each file's declared size is checked against its cap
(limits.py) before it is read, and a zip member that does not decompress to what its header says (bad CRC, broken
stream) is refused by name.
"""

from __future__ import annotations

import posixpath
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Iterable

from trellis2_worker.dataset import layout
from trellis2_worker.dataset.limits import MAX_UNCOMPRESSED_BYTES, member_cap
from trellis2_worker.errors import InputError
from trellis2_worker.ingest import rules

# Raw 3D formats and their usual side files: none belongs inside a dataset (validation refuses them). Whether an
# archive *is* raw assets or a dataset is the archive rules' answer (classify_names), the same as Java's inspection.
RAW_ASSET_SUFFIXES = frozenset(
    ".glb .gltf .obj .mtl .fbx .stl .ply .blend .dae .3ds .abc .usd .usda .usdc .usdz .x3d .wrl .off .vrm".split()
)
PICKLE_SUFFIXES = frozenset(".pkl .pickle .pt .pth .ckpt .joblib .npy".split())


class Source:
    """Read-only access to the dataset's files by their path inside the dataset (posix, no prefix).

    `outside` lists the files that sit outside the dataset folder (validation refuses them)."""

    outside: list[str] = []

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def open(self, name: str):
        """The file as a binary stream (same checks as `read`), for copying large members without holding them."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class ZipSource(Source):
    def __init__(self, path: Path):
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"{path.name} is not a readable zip archive: {exc}") from None
        members = check_member_names(self._zip.infolist())
        prefix = _dataset_prefix(members)
        self._names = {m[len(prefix):]: m for m in members if m.startswith(prefix)}
        self._infos = {posixpath.normpath(i.filename): i for i in self._zip.infolist() if not i.is_dir()}
        self.outside = [m for m in members if not m.startswith(prefix)]

    def names(self) -> list[str]:
        return sorted(self._names)

    def read(self, name: str) -> bytes:
        info = self._checked(name)
        try:
            return self._zip.read(info)
        except zipfile.BadZipFile as exc:
            raise _corrupt(info, exc) from None
        except (zlib.error, EOFError):
            raise InputError(f"dataset member {info.filename} is corrupt: its data does not decompress") from None

    def open(self, name: str):
        # a CRC mismatch surfaces as BadZipFile when the stream's end is read (the caller names it)
        return self._zip.open(self._checked(name))

    def _checked(self, name: str) -> zipfile.ZipInfo:
        try:
            info = self._infos[self._names[name]]
        except KeyError:
            raise FileNotFoundError(name) from None
        cap = member_cap(name)
        if info.file_size > cap or info.compress_size > cap:
            raise InputError(f"dataset member {info.filename} declares {max(info.file_size, info.compress_size):,} "
                             f"bytes, over the {cap >> 20} MiB a {_kind(name)} may hold; refusing it unread")
        # Only what the writer uses: deflate output is bounded by the declared size as it is read, while bzip2/lzma
        # decompress a whole compressed chunk at once.
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InputError(f"dataset member {info.filename} uses zip compression method {info.compress_type}; "
                             "datasets are read with stored or deflate members only")
        if info.flag_bits & 0x1:
            raise InputError(f"dataset member {info.filename} is encrypted; datasets must not be")
        return info

    def close(self) -> None:
        self._zip.close()


class DirSource(Source):
    def __init__(self, root: Path):
        self._root = root.resolve()
        names = []
        for p in sorted(self._root.rglob("*")):
            rel = p.relative_to(self._root).as_posix()
            if p.is_symlink():
                raise InputError(f"dataset entry {rel} is a symbolic link; links are not allowed")
            if p.is_file() and not rules.is_ignored(rel):
                names.append(rel)
        prefix = _dataset_prefix(names)
        self._names = {n[len(prefix):]: n for n in names if n.startswith(prefix)}
        self.outside = [n for n in names if not n.startswith(prefix)]

    def names(self) -> list[str]:
        return sorted(self._names)

    def read(self, name: str) -> bytes:
        return self._checked(name).read_bytes()

    def open(self, name: str):
        return open(self._checked(name), "rb")

    def _checked(self, name: str) -> Path:
        try:
            path = self._root / self._names[name]
        except KeyError:
            raise FileNotFoundError(name) from None
        cap, size = member_cap(name), path.stat().st_size
        if size > cap:
            raise InputError(f"dataset file {self._names[name]} is {size:,} bytes, over the {cap >> 20} MiB a "
                             f"{_kind(name)} may hold; refusing it unread")
        return path


def _corrupt(info: zipfile.ZipInfo, exc: Exception) -> InputError:
    why = "its CRC-32 does not match its data" if "CRC" in str(exc) else "its header is damaged"
    return InputError(f"dataset member {info.filename} is corrupt: {why}")


def open_source(path: Path) -> Source:
    return DirSource(path) if path.is_dir() else ZipSource(path)


def _kind(name: str) -> str:
    return name if name in (layout.INFO_FILE, layout.METADATA_FILE) else "dataset file"


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
        if info.is_dir() or rules.is_ignored(name):
            continue
        total += info.file_size
        if total > MAX_UNCOMPRESSED_BYTES:
            raise InputError(f"archive expands to more than {MAX_UNCOMPRESSED_BYTES >> 30} GiB; refusing it")
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
    """'dataset', 'raw' or 'mixed' from an archive's file names (no content read), by the archive rules: a dataset has
    its prepared_dataset.json at most `prepared_dataset_max_depth` parts deep, raw assets have a 3D object file."""
    has_dataset = has_raw = False
    for n in names:
        parts = rules.name_parts(n)
        if parts and parts[-1] == rules.PREPARED_DATASET_FILE and len(parts) <= rules.PREPARED_DATASET_MAX_DEPTH:
            has_dataset = True
        if rules.object_format(n):
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
