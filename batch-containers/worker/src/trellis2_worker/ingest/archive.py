"""Safe extraction of a user's zip: the Java inspection's limits enforced again on the bytes actually written.

The Java side (Prepare) checked the central directory; headers can lie, so here every entry is decompressed through a
counter and extraction stops the moment the running total passes the uncompressed cap, whatever the headers claim.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from trellis2_worker.errors import InputError

from trellis2_worker.ingest.rules import MAX_ARCHIVE_BYTES, MAX_ENTRIES, MAX_UNCOMPRESSED_BYTES, is_ignored

MB = 1024 * 1024
_CHUNK = 1 << 20


def _entry_name(info: zipfile.ZipInfo) -> str:
    # Zips written on Windows may use backslashes; treat them as separators so `..\\x` cannot slip through.
    return info.filename.replace("\\", "/")


def _check_name(name: str) -> None:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InputError(f"archive entry has an absolute path: {name}")
    if ".." in PurePosixPath(name).parts:
        raise InputError(f"archive entry escapes the archive with '..': {name}")
    if "\x00" in name:
        raise InputError(f"archive entry name holds a NUL byte: {name!r}")


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def extract_zip(
    zip_path: str | os.PathLike,
    dest: str | os.PathLike,
    max_archive_bytes: int = MAX_ARCHIVE_BYTES,
    max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES,
    max_entries: int = MAX_ENTRIES,
) -> list[str]:
    """Extracts `zip_path` under `dest` and returns the extracted files' relative POSIX paths, sorted.

    Refuses (InputError) archives that are too big, corrupt, encrypted, or hold absolute paths, `..` or symlinks;
    skips hidden files and `__MACOSX/`."""
    zip_path, dest = Path(zip_path), Path(dest)
    size = zip_path.stat().st_size
    if size > max_archive_bytes:
        raise InputError(f"archive is {size / MB:.0f} MB, more than the {max_archive_bytes // MB} MB limit")
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise InputError(f"not a readable zip archive: {exc}") from exc
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written = 0
    files: list[str] = []
    with archive:
        infos = archive.infolist()
        if len(infos) > max_entries:
            raise InputError(f"archive holds {len(infos)} entries, more than the {max_entries} limit")
        # Check every name first, so a hostile archive is refused before anything is written.
        for info in infos:
            name = _entry_name(info)
            _check_name(name)
            if _is_symlink(info):
                raise InputError(f"archive entry is a symbolic link: {name}")
            if info.flag_bits & 0x1:
                raise InputError(f"archive entry is encrypted: {name}")
        for info in infos:
            name = _entry_name(info)
            if info.is_dir() or name.endswith("/") or is_ignored(name):
                continue
            target = (root / name).resolve()
            if root not in target.parents:
                raise InputError(f"archive entry escapes the archive: {name}")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as src, open(target, "wb") as out:
                    while True:
                        chunk = src.read(_CHUNK)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > max_uncompressed_bytes:
                            raise InputError(
                                f"archive expands to more than the {max_uncompressed_bytes // MB} MB limit"
                                " (stopped while extracting)"
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as exc:
                if isinstance(exc, OSError) and not isinstance(exc, (EOFError,)) and exc.errno is not None:
                    raise  # a local disk problem, not the archive's fault
                raise InputError(f"corrupt archive entry {name}: {exc}") from exc
            files.append(PurePosixPath(name).as_posix())
    return sorted(set(files))
