"""Builds the archives that tests/hostile_archives.json describes, byte for byte as Java's HostileZips does.

Both sides' tests build every case from that one recipe file and must give the same answer on it; the recipe's
sha256 of each archive shows the two builders wrote the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

CASES_FILE = Path(__file__).with_name("hostile_archives.json")


def cases() -> list[dict]:
    return json.loads(CASES_FILE.read_text("utf-8"))["cases"]


def _entries(case: dict):
    for spec in case.get("entries", []):
        for i in range(spec.get("repeat", 1)):
            if "name_hex" in spec:
                name = bytes.fromhex(spec["name_hex"])
            else:
                name = spec["name"].replace("{i}", str(i)).encode("utf-8")
            if "text" in spec:
                data = spec["text"].encode("utf-8")
            elif "hex" in spec:
                data = bytes.fromhex(spec["hex"])
            else:
                data = b"\0" * spec.get("zeros", 0)
            yield spec, name, data


def build(case: dict) -> bytes:
    out = bytearray()
    central = bytearray()
    count = 0
    all_zip64 = case.get("zip64", False)
    for spec, name, data in _entries(case):
        offset = len(out)
        crc = zlib.crc32(data) ^ (0xFFFFFFFF if spec.get("bad_crc") else 0)
        claimed = spec.get("claimed", len(data))
        flags = (0x800 if spec.get("utf8", True) else 0) | spec.get("flags", 0)
        method = spec.get("method", 0)
        big = all_zip64 or claimed >= 0xFFFFFFFF
        version = 45 if big else 20
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, version, flags, method, 0, 0x21, crc, len(data),
                           claimed & 0xFFFFFFFF, len(name), 0) + name + data
        extra = struct.pack("<HHQQQ", 1, 24, claimed, len(data), offset) if big else b""
        sat = 0xFFFFFFFF
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, (3 << 8) | version, version, flags, method, 0, 0x21,
                               crc, sat if big else len(data), sat if big else claimed, len(name), len(extra), 0, 0,
                               0, spec.get("mode", 0o100644) << 16, sat if big else offset) + name + extra
        count += 1
    cd_offset = len(out)
    out += central
    n = case.get("eocd_entries", count)
    if all_zip64:
        z64 = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, len(central), cd_offset)
        out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
        record = struct.pack("<IHHHHII", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    else:
        record = struct.pack("<IHHHHII", 0x06054B50, 0, 0, n, n, len(central), cd_offset)
    comment = bytes.fromhex(case.get("comment_hex", ""))
    if case.get("hidden_eocd"):
        comment = record + struct.pack("<H", 0)  # a second, complete end record inside the first one's comment
    out += record + struct.pack("<H", len(comment)) + comment
    return bytes.fromhex(case.get("prefix_hex", "")) + bytes(out) + bytes.fromhex(case.get("suffix_hex", ""))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
