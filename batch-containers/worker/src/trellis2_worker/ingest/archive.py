"""Safe extraction of a user's zip, reading the same entries from the same bytes as Java's zip inspection.

Java (Prepare) priced and checked the archive from its central directory; this module applies the same rules
(archive_rules.json, and the same end-of-central-directory rule) to its own reading of that directory, so an archive
built to look different to the two readers is refused rather than extracted differently. The directory is parsed
here by hand because zipfile silently accepts what the inspection refuses (several end records, data before the
archive, names cut at a NUL); zipfile then only decompresses, and its listing must match ours entry for entry.
Every limit is checked from the declared sizes before anything is inflated; the bytes written are counted too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import tempfile
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from trellis2_worker.errors import InputError, WorkerError
from trellis2_worker.ingest.rules import (
    MAX_ARCHIVE_BYTES,
    MAX_CENTRAL_DIRECTORY_BYTES,
    MAX_ENTRIES,
    MAX_NAME_BYTES,
    MAX_NAME_PART_BYTES,
    MAX_UNCOMPRESSED_BYTES,
    RULES,
    is_ignored,
    name_parts,
    object_format,
)

MB = 1024 * 1024
GB = 1024 * MB
_CHUNK = 1 << 20
_EOCD_SIG = b"PK\x05\x06"
_EOCD_LEN = 22
_MAX_COMMENT = 0xFFFF
_ZIP64_LOCATOR_SIG = 0x07064B50
_ZIP64_EOCD_SIG = 0x06064B50
_CEN_SIG = 0x02014B50
_MAX_LISTED = 20
_METHODS = {int(k): v for k, v in RULES["compression_methods"].items()}


@dataclass(frozen=True)
class Entry:
    """One central-directory record, as Java's inspection reads it."""

    name: str  # as decoded (UTF-8 when flagged, else CP437), backslashes kept
    raw_name: bytes
    made_by: int
    flags: int
    method: int
    crc: int
    compressed_size: int
    uncompressed_size: int
    external_attr: int
    header_offset: int

    @property
    def canonical(self) -> str:
        return "/".join(name_parts(self.name))

    @property
    def is_dir(self) -> bool:
        return self.name.replace("\\", "/").endswith("/")

    @property
    def is_symlink(self) -> bool:
        # Unix (3) and macOS (19) keep st_mode in the high 16 bits.
        return (self.made_by >> 8) in (3, 19) and stat.S_ISLNK(self.external_attr >> 16)


@dataclass(frozen=True)
class Listing:
    """What the archive's central directory says: the facts Prepare recorded for the job to check again."""

    entries: list[Entry]
    archive_bytes: int
    declared_bytes: int
    zip64: bool

    @property
    def objects(self) -> list[str]:
        """The 3D object files (canonical paths, sorted) Java's inspection counts for a raw archive."""
        return sorted(e.canonical for e in self.entries
                      if not e.is_dir and not is_ignored(e.name) and object_format(e.canonical))


def _corrupt(why: str) -> InputError:
    return InputError(f"archive is damaged: {why}")


def printable(name: str) -> str:
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in name[:200])


def _find_eocd(tail: bytes) -> int:
    """The one end-of-central-directory record whose comment runs exactly to the end of the file; refuses archives
    with a second such record, or one hidden in the comment (two readers could then pick different ones)."""
    candidates = []
    i = tail.rfind(_EOCD_SIG)
    while i >= 0:
        if i + _EOCD_LEN <= len(tail) and i + _EOCD_LEN + struct.unpack_from("<H", tail, i + 20)[0] == len(tail):
            candidates.append(i)
        i = tail.rfind(_EOCD_SIG, 0, i)
    if not candidates:
        raise InputError("not a zip archive, or it is truncated: no end-of-central-directory record at its end")
    if len(candidates) > 1 or _EOCD_SIG in tail[candidates[0] + _EOCD_LEN:]:
        raise InputError("archive has more than one end-of-central-directory record; refusing an ambiguous archive")
    return candidates[0]


def _entry_problem(e: Entry) -> str | None:
    name = e.name.replace("\\", "/")
    shown = printable(name)
    if not name:
        return "an entry has an empty name"
    if "\x00" in name:
        return f"entry '{shown}' has a NUL character in its name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        return f"entry '{shown}' has an absolute path"
    if ".." in name.split("/"):
        return f"entry '{shown}' points outside the archive ('..' in its path)"
    if e.is_symlink:
        return f"entry '{shown}' is a symbolic link"
    if e.flags & 0x1:
        return f"entry '{shown}' is encrypted"
    if e.method not in _METHODS:
        return f"entry '{shown}' uses compression method {e.method}; supported: {', '.join(_METHODS.values())}"
    encoded = e.canonical.encode("utf-8")
    if len(encoded) > MAX_NAME_BYTES or any(len(p.encode("utf-8")) > MAX_NAME_PART_BYTES for p in name_parts(name)):
        return (f"entry '{shown}' has a name too long for the file system (over {MAX_NAME_PART_BYTES} bytes a part or "
                f"{MAX_NAME_BYTES} in all)")
    return None


def _check_entries(entries: list[Entry]) -> None:
    problems = [p for p in (_entry_problem(e) for e in entries) if p]
    if problems:
        shown = problems[:_MAX_LISTED]
        if len(problems) > _MAX_LISTED:
            shown.append(f"... and {len(problems) - _MAX_LISTED} more unsafe entries")
        raise InputError("; ".join(shown))
    seen: set[str] = set()
    files: dict[str, str] = {}
    folders: set[str] = set()
    for e in entries:
        canonical = e.canonical
        if canonical in seen:
            raise InputError(f"archive holds two entries named '{printable(canonical)}' (duplicate entry name)")
        seen.add(canonical)
        parts = canonical.split("/")
        folders.update("/".join(parts[:k]) for k in range(1, len(parts)))
        if e.is_dir:
            folders.add(canonical)
        else:
            files[canonical] = e.name
    for name in sorted(set(files) & folders):
        raise InputError(f"entry '{printable(name)}' is both a file and a folder in the archive")


def read_listing(zip_path: str | os.PathLike, max_archive_bytes: int = MAX_ARCHIVE_BYTES,
                 max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES, max_entries: int = MAX_ENTRIES) -> Listing:
    """The central directory, read and judged by the same rules as Java's inspection (InputError when refused)."""
    with open(zip_path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_archive_bytes:
            raise InputError(f"archive is {size // MB:,} MB, over the {max_archive_bytes // MB} MB limit")
        if size < _EOCD_LEN:
            raise InputError(f"not a zip archive ({size} bytes; truncated?)")
        tail_len = min(size, _EOCD_LEN + _MAX_COMMENT + 20)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = _find_eocd(tail)
        disk, cd_disk, _, entries, cd_size, cd_offset = struct.unpack_from("<HHHHII", tail, at + 4)
        eocd_pos = size - tail_len + at
        zip64 = at >= 20 and struct.unpack_from("<I", tail, at - 20)[0] == _ZIP64_LOCATOR_SIG
        if zip64:
            z64_pos = struct.unpack_from("<Q", tail, at - 20 + 8)[0]
            if z64_pos + 56 > eocd_pos:
                raise _corrupt("the ZIP64 end-of-central-directory locator points outside the file")
            f.seek(z64_pos)
            z = f.read(56)
            if struct.unpack_from("<I", z, 0)[0] != _ZIP64_EOCD_SIG:
                raise _corrupt("no ZIP64 end-of-central-directory record where the locator points")
            disk, cd_disk = struct.unpack_from("<II", z, 16)
            entries, cd_size, cd_offset = struct.unpack_from("<QQQ", z, 32)
            eocd_pos = z64_pos
        elif entries == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
            raise _corrupt("the archive needs ZIP64 records but has none (truncated?)")
        if disk != 0 or cd_disk != 0:
            raise InputError("split (multi-part) zip archives are not supported; send a single .zip")
        if entries > max_entries:
            raise InputError(f"archive holds {entries} entries, more than the {max_entries} limit")
        if cd_size > MAX_CENTRAL_DIRECTORY_BYTES:
            raise InputError(f"the archive's central directory is over {MAX_CENTRAL_DIRECTORY_BYTES // MB} MB; "
                             "too many entries")
        if cd_offset + cd_size != eocd_pos:
            raise _corrupt("the central directory does not end where the end-of-central-directory record begins")
        if entries * 46 > cd_size:
            raise _corrupt(f"the archive claims {entries} entries but its central directory is too small")
        f.seek(cd_offset)
        cd = f.read(cd_size)
    listing = _parse_directory(cd, entries, size, zip64)
    if listing.declared_bytes > max_uncompressed_bytes:
        raise InputError(f"archive would unpack to {listing.declared_bytes / GB:.1f} GB, over the "
                         f"{max_uncompressed_bytes / GB:g} GB limit")
    return listing


def _parse_directory(cd: bytes, count: int, size: int, zip64: bool) -> Listing:
    out: list[Entry] = []
    p = 0
    for index in range(count):
        if p + 46 > len(cd):
            raise _corrupt("the central directory ends in the middle of an entry")
        (sig, made_by, _, flags, method, _, _, crc, comp, uncomp, name_len, extra_len, comment_len, _, _, external,
         offset) = struct.unpack_from("<IHHHHHHIIIHHHHHII", cd, p)
        if sig != _CEN_SIG:
            raise _corrupt(f"central directory entry {index} is damaged")
        raw = cd[p + 46:p + 46 + name_len]
        extra = cd[p + 46 + name_len:p + 46 + name_len + extra_len]
        p += 46 + name_len + extra_len + comment_len
        if p > len(cd):
            raise _corrupt("the central directory ends in the middle of an entry")
        if flags & 0x800:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"entry '{printable(raw.decode('utf-8', 'replace'))}' has a name that is not "
                                 "valid UTF-8") from None
        else:
            name = raw.decode("cp437")
        # ZIP64 extended information: only the saturated 32-bit fields are present, in this order.
        q = 0
        while q + 4 <= len(extra):
            kind, length = struct.unpack_from("<HH", extra, q)
            if q + 4 + length > len(extra):
                break
            if kind == 0x0001:
                r, end = q + 4, q + 4 + length
                if uncomp == 0xFFFFFFFF and r + 8 <= end:
                    uncomp, r = struct.unpack_from("<Q", extra, r)[0], r + 8
                if comp == 0xFFFFFFFF and r + 8 <= end:
                    comp, r = struct.unpack_from("<Q", extra, r)[0], r + 8
                if offset == 0xFFFFFFFF and r + 8 <= end:
                    offset = struct.unpack_from("<Q", extra, r)[0]
            q += 4 + length
        if uncomp >= 1 << 63 or comp >= 1 << 63 or offset >= 1 << 63:
            raise _corrupt(f"entry '{printable(name)}' has an impossible size or offset")
        out.append(Entry(name, raw, made_by, flags, method, crc, comp, uncomp, external, offset))
    if p != len(cd):
        raise _corrupt(f"the central directory holds more than the {count} entries it announces")
    _check_entries(out)
    return Listing(out, size, sum(e.uncompressed_size for e in out), zip64)


def check_expected(listing: Listing, expect: dict | None) -> None:
    """Refuses an archive whose directory is not the one Prepare inspected (its record: entries, declared_bytes and,
    for a raw archive, objects)."""
    if not expect:
        return
    differences = []
    if "entries" in expect and expect["entries"] != len(listing.entries):
        differences.append(f"{len(listing.entries)} entries, not {expect['entries']}")
    if "declared_bytes" in expect and expect["declared_bytes"] != listing.declared_bytes:
        differences.append(f"{listing.declared_bytes} declared bytes, not {expect['declared_bytes']}")
    if expect.get("objects") is not None and sorted(expect["objects"]) != listing.objects:
        differences.append(f"{len(listing.objects)} different 3D objects, not the {len(expect['objects'])} inspected")
    if differences:
        raise InputError("the archive is not the one inspected when the request was made: it holds "
                         + "; ".join(differences))


def _same_reading(listing: Listing, infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) != len(listing.entries):
        raise _corrupt(f"zip readers disagree on its entries ({len(infos)} against {len(listing.entries)})")
    for info, e in zip(infos, listing.entries):
        if (info.orig_filename != e.name or info.header_offset != e.header_offset
                or info.file_size != e.uncompressed_size or info.compress_size != e.compressed_size):
            raise _corrupt(f"zip readers disagree on entry '{printable(e.name)}'")


def _input_fault(exc: OSError, name: str) -> InputError | None:
    """An OSError that the archive's content caused (one clear line, no local path), else None (a disk fault)."""
    if exc.errno == errno.ENAMETOOLONG:
        return InputError(f"entry '{printable(name)}' has a name too long for the file system")
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return InputError(f"entry '{printable(name)}' is both a file and a folder in the archive")
    return None


def extract_zip(
    zip_path: str | os.PathLike,
    dest: str | os.PathLike,
    max_archive_bytes: int = MAX_ARCHIVE_BYTES,
    max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES,
    max_entries: int = MAX_ENTRIES,
    expect: dict | None = None,
) -> list[str]:
    """Extracts `zip_path` under `dest` and returns the extracted files' relative POSIX paths, sorted.

    Refuses (InputError) what Java's inspection refuses, before writing anything: too big (declared sizes), too
    many entries, ambiguous end records, absolute paths, `..`, symlinks, encryption, duplicate names, file/folder
    clashes, names too long; and, given `expect` (Prepare's record), an archive other than the one inspected.
    Damaged members (bad CRC) are refused while extracting. Hidden files and `__MACOSX/` are skipped."""
    zip_path, dest = Path(zip_path), Path(dest)
    listing = read_listing(zip_path, max_archive_bytes, max_uncompressed_bytes, max_entries)
    check_expected(listing, expect)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise _corrupt(f"not readable as a zip ({exc.__class__.__name__})") from None
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    written = 0
    files: list[str] = []
    with archive:
        infos = archive.infolist()
        _same_reading(listing, infos)
        for info, e in zip(infos, listing.entries):
            name = e.canonical
            if e.is_dir or is_ignored(e.name):
                continue
            target = root / name
            if root not in target.parents:  # cannot happen after the name checks; kept as the last line of defence
                raise InputError(f"entry '{printable(name)}' escapes the archive")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > max_uncompressed_bytes:  # cannot happen unless the headers lied
                            raise InputError(f"archive unpacks to more than the {max_uncompressed_bytes / GB:g} GB "
                                             "limit (stopped while extracting)")
                        out.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                raise InputError(f"archive member '{printable(name)}' is damaged: {_why(exc)}") from None
            except OSError as exc:
                fault = _input_fault(exc, name)
                if fault is None:
                    raise  # a local disk problem, not the archive's fault: retryable
                raise fault from None
            files.append(name)
    return sorted(files)


def _why(exc: BaseException) -> str:
    text = str(exc)
    if "CRC" in text:
        return "its checksum (CRC-32) does not match"
    if isinstance(exc, zlib.error):
        return "its compressed data cannot be inflated"
    return text.split(":")[0] if text else type(exc).__name__


@contextlib.contextmanager
def recorded_input(uri: str, record_uri: str | None):
    """The job's input as the bytes Prepare inspected: with Prepare's record (requests/<id>/input.json: bytes,
    sha256, entries, declared_bytes, objects), the input is fetched once into a temporary directory, checked against
    the record (InputError, exit 2, when it is not the same archive) and its local path yielded; without a record
    the URI itself. The dataset key Prepare chose is the sha256 checked here, so the cache holds what was hashed."""
    if not record_uri:
        yield uri
        return
    from trellis2_worker import storage

    try:
        record = json.loads(storage.read_bytes(record_uri, max_bytes=512 * MB))
    except ValueError as exc:
        raise WorkerError(f"Prepare's input record is not JSON: {exc}") from None
    work = Path(tempfile.mkdtemp(prefix="trellis2-recorded-"))
    try:
        local = storage.open_input(uri, work, expect=record)
        if local.is_file():
            check_expected(read_listing(local), record)
        yield str(local)
    finally:
        shutil.rmtree(work, ignore_errors=True)
