"""The `.vxz` sparse-voxel file format of TRELLIS.2's o-voxel toolkit (docs/data-formats.md#vxz), read and written
byte-compatibly.

Layout: b"VXZ" + version 0 + big-endian uint32 `bin_start`, a JSON header, then one blob per chunk of
`chunk_size`³ voxels (lexicographic chunk order). A chunk blob holds the compressed octree structure stream
(one occupancy byte per internal node, pre-order) and one compressed stream per attribute, voxels in Morton order.
"""

from __future__ import annotations

import json
import lzma
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numba as nb
import numpy as np

DEFAULT_LEVEL = {"none": 0, "deflate": 9, "lzma": 9, "zstd": 22}
FILTERS = ("none", "parent", "neighbor")
INTERLEAVES = ("none", "as_is", "all")


# ------------------------------------------------------------------------------------------------ Morton codes

def _spread3(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint32) & np.uint32(0x3FF)
    v = (v * np.uint32(0x00010001)) & np.uint32(0xFF0000FF)
    v = (v * np.uint32(0x00000101)) & np.uint32(0x0F00F00F)
    v = (v * np.uint32(0x00000011)) & np.uint32(0xC30C30C3)
    v = (v * np.uint32(0x00000005)) & np.uint32(0x49249249)
    return v


def _compact3(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint32) & np.uint32(0x49249249)
    v = (v ^ (v >> np.uint32(2))) & np.uint32(0x030C30C3)
    v = (v ^ (v >> np.uint32(4))) & np.uint32(0x0300F00F)
    v = (v ^ (v >> np.uint32(8))) & np.uint32(0x030000FF)
    v = (v ^ (v >> np.uint32(16))) & np.uint32(0x000003FF)
    return v


def morton_encode(local: np.ndarray) -> np.ndarray:
    """3-D Morton code of coords < 1024, x the most significant bit of each triplet."""
    local = np.asarray(local)
    return (_spread3(local[:, 0]) << np.uint32(2)) | (_spread3(local[:, 1]) << np.uint32(1)) | _spread3(local[:, 2])


def morton_decode(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes, dtype=np.uint32)
    out = np.empty((codes.shape[0], 3), dtype=np.int32)
    out[:, 0] = _compact3(codes >> np.uint32(2))
    out[:, 1] = _compact3(codes >> np.uint32(1))
    out[:, 2] = _compact3(codes)
    return out


# ------------------------------------------------------------------------------------------------ octree stream

@nb.njit(cache=True)
def _svo_encode(codes, depth):
    # Worst case one fresh node per level per code, plus the root.
    svo = np.zeros(1 + codes.shape[0] * max(depth - 1, 1), dtype=np.uint8)
    n = 1
    node_at = np.zeros(depth, dtype=np.int64)  # where the current path's node of each level lives
    path = np.zeros(depth, dtype=np.int64)
    digits = np.zeros(depth, dtype=np.int64)
    for i in range(codes.shape[0]):
        code = np.int64(codes[i])
        for j in range(depth):
            digits[j] = (code >> (3 * (depth - 1 - j))) & 7
        start = 0
        if i > 0:
            while start < depth - 1 and digits[start] == path[start]:
                start += 1
        for j in range(start, depth):
            if j > start:
                node_at[j] = n
                n += 1
            svo[node_at[j]] |= np.uint8(1 << digits[j])
            path[j] = digits[j]
    return svo[:n].copy()


@nb.njit(cache=True)
def _svo_count_leaves(svo, depth):
    # Leaves = set bits of the level depth-1 nodes; walk once to find which bytes those are.
    total = 0
    node = np.zeros(depth, dtype=np.int64)
    nxt = np.zeros(depth, dtype=np.int64)
    ptr = 1
    level = 0
    node[0] = svo[0]
    nxt[0] = 0
    while level >= 0:
        if level == depth - 1:
            b = node[level]
            while b:
                total += b & 1
                b >>= 1
            level -= 1
            continue
        bit = nxt[level]
        while bit < 8 and not (node[level] >> bit) & 1:
            bit += 1
        if bit >= 8:
            level -= 1
            continue
        nxt[level] = bit + 1
        if ptr >= svo.shape[0]:
            return -1
        level += 1
        node[level] = svo[ptr]
        nxt[level] = 0
        ptr += 1
    if ptr != svo.shape[0]:
        return -1
    return total


@nb.njit(cache=True)
def _svo_decode(svo, depth, count):
    codes = np.empty(count, dtype=np.uint32)
    node = np.zeros(depth, dtype=np.int64)
    nxt = np.zeros(depth, dtype=np.int64)
    prefix = np.zeros(depth, dtype=np.int64)
    ptr = 1
    level = 0
    n = 0
    node[0] = svo[0]
    while level >= 0:
        if level == depth - 1:
            for i in range(8):
                if (node[level] >> i) & 1:
                    codes[n] = np.uint32((prefix[level] << 3) | i)
                    n += 1
            level -= 1
            continue
        bit = nxt[level]
        while bit < 8 and not (node[level] >> bit) & 1:
            bit += 1
        if bit >= 8:
            level -= 1
            continue
        nxt[level] = bit + 1
        node[level + 1] = svo[ptr]
        nxt[level + 1] = 0
        prefix[level + 1] = (prefix[level] << 3) | bit
        ptr += 1
        level += 1
    return codes


def svo_encode(sorted_codes: np.ndarray, depth: int) -> np.ndarray:
    """Octree structure bytes for ascending Morton codes (duplicates collapse)."""
    if sorted_codes.shape[0] == 0:
        return np.zeros(1, dtype=np.uint8)
    return _svo_encode(np.ascontiguousarray(sorted_codes, dtype=np.uint32), depth)


def svo_decode(svo: np.ndarray, depth: int) -> np.ndarray:
    """Ascending Morton codes from octree structure bytes."""
    svo = np.ascontiguousarray(svo, dtype=np.uint8)
    if svo.shape[0] == 0:
        raise ValueError("empty octree stream")
    count = _svo_count_leaves(svo, depth)
    if count < 0:
        raise ValueError("corrupt octree stream: its length does not match its structure")
    return _svo_decode(svo, depth, count)


# ------------------------------------------------------------------------------------------------ compression

def _compress(data: bytes, algo: str, level: int) -> bytes:
    if algo == "none":
        return data
    if algo == "deflate":
        c = zlib.compressobj(level, wbits=-15)
        return c.compress(data) + c.flush()
    if algo == "lzma":
        c = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": level}])
        return c.compress(data) + c.flush()
    if algo == "zstd":
        import zstandard  # optional: only the zstd variant of the format needs it

        return zstandard.ZstdCompressor(level=level, write_checksum=False, write_content_size=True).compress(data)
    raise ValueError(f"unknown compression {algo!r}")


def _decompress(data: bytes, algo: str, level: int) -> bytes:
    if algo == "none":
        return data
    if algo == "deflate":
        d = zlib.decompressobj(wbits=-15)
        return d.decompress(data) + d.flush()
    if algo == "lzma":
        # Preset 9 sets a 64 MiB dictionary, enough for any stream a preset ≤ 9 writer made.
        d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}])
        return d.decompress(data)
    if algo == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data)
    raise ValueError(f"unknown compression {algo!r}")


# ------------------------------------------------------------------------------------------------ write

def _as_attr(name: str, value, n: int) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype != np.uint8:
        raise ValueError(f"attribute {name!r} must be uint8, got {a.dtype}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"attribute {name!r} has shape {a.shape}, expected ({n}, C)")
    return a


def encode_vxz(
    coords: np.ndarray,
    attrs: dict[str, np.ndarray],
    chunk_size: int = 256,
    compression: str = "lzma",
    compression_level: int | None = None,
    attr_interleave: str = "as_is",
    num_threads: int | None = None,
) -> bytes:
    """The bytes of a `.vxz` file, identical to what the reference `write_vxz` writes with the same options
    (filter `none`, the only one the data toolkit uses). Streams are compressed on `num_threads` threads
    (default: up to 2; each preset-9 lzma compressor needs about 0.7 GB)."""
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must be (N, 3), got {coords.shape}")
    if coords.shape[0] and (coords.min() < 0):
        raise ValueError("coords must be non-negative")
    n = coords.shape[0]
    attrs = {k: _as_attr(k, v, n) for k, v in attrs.items()}
    if attr_interleave not in INTERLEAVES:
        raise ValueError(f"attr_interleave must be one of {INTERLEAVES}")
    depth = int(round(np.log2(chunk_size)))
    if 1 << depth != chunk_size or depth > 10:
        raise ValueError(f"chunk_size must be a power of two ≤ 1024, got {chunk_size}")
    level = compression_level or DEFAULT_LEVEL[compression]
    coords = coords.astype(np.int64)
    header = {
        "num_voxel": n,
        "chunk_size": chunk_size,
        "filter": "none",
        "compression": compression,
        "compression_level": level,
        "raw_size": n * 3 * 4 + sum(int(v.size) for v in attrs.values()),
        "compressed_size": 0,
        "compress_ratio": 0.0,
        "attr_interleave": attr_interleave,
        "attr": [[k, int(v.shape[1])] for k, v in attrs.items()],
        "chunks": [],
    }
    all_attr = np.concatenate(list(attrs.values()), axis=1) if attrs else np.zeros((n, 0), np.uint8)
    chunk_xyz, local = np.divmod(coords, chunk_size)
    if n:
        uniq, inverse = np.unique(chunk_xyz, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        uniq, inverse = np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    # Group voxels by chunk, then Morton-sort inside each chunk, in one stable lexsort.
    codes = morton_encode(local) if n else np.zeros(0, np.uint32)
    order = np.lexsort((codes, inverse))
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))

    # Every stream is compressed independently, so all of them go through one thread pool (lzma drops the GIL).
    jobs: list[tuple[int, str, bytes]] = []
    for ci in range(len(uniq)):
        sel = order[bounds[ci]:bounds[ci + 1]]
        c_codes = codes[sel]
        jobs.append((ci, "svo", svo_encode(c_codes, depth).tobytes()))
        a = all_attr[sel]
        ch = 0
        for name, chs in header["attr"]:
            if attr_interleave == "none":
                for i in range(chs):
                    jobs.append((ci, f"{name}_{i}", np.ascontiguousarray(a[:, ch + i]).tobytes()))
            elif attr_interleave == "as_is":
                jobs.append((ci, name, np.ascontiguousarray(a[:, ch:ch + chs]).tobytes()))
            ch += chs
        if attr_interleave == "all":
            jobs.append((ci, "attr", np.ascontiguousarray(a).tobytes()))
    # Each preset-9 LZMA compressor holds ~0.7 GB, so by default at most two run at once (peak memory over speed).
    threads = max(1, min(num_threads or min(os.cpu_count() or 1, 2), len(jobs) or 1))
    if threads == 1:
        blobs = [_compress(j[2], compression, level) for j in jobs]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            blobs = list(pool.map(lambda j: _compress(j[2], compression, level), jobs))

    parts: list[bytes] = []
    pos = 0
    ji = 0
    for ci in range(len(uniq)):
        info: dict = {"idx": [int(x) for x in uniq[ci]]}
        off = 0
        start = pos
        while ji < len(jobs) and jobs[ji][0] == ci:
            blob = blobs[ji]
            info[jobs[ji][1]] = [off, len(blob)]
            off += len(blob)
            parts.append(blob)
            ji += 1
        info["ptr"] = [start, off]
        pos += off
        header["chunks"].append(info)
    header["compressed_size"] = pos
    header["compress_ratio"] = header["raw_size"] / pos if pos else 0.0
    js = json.dumps(header).encode()
    return b"VXZ\x00" + struct.pack(">I", len(js) + 8) + js + b"".join(parts)


def write_vxz(file, coords: np.ndarray, attrs: dict[str, np.ndarray], **options) -> int:
    """Write a `.vxz` file (path or binary file object); returns its size in bytes. Options as `encode_vxz`."""
    data = encode_vxz(coords, attrs, **options)
    if isinstance(file, (str, os.PathLike)):
        tmp = Path(str(file) + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, file)
    else:
        file.write(data)
    return len(data)


# ------------------------------------------------------------------------------------------------ read

def _read_bytes(file) -> bytes:
    if isinstance(file, (bytes, bytearray, memoryview)):
        return bytes(file)
    if isinstance(file, (str, os.PathLike)):
        return Path(file).read_bytes()
    return file.read()


def _parse_header(data: bytes) -> tuple[dict, int]:
    if len(data) < 8 or data[:3] != b"VXZ":
        raise ValueError("not a .vxz file (bad magic)")
    if data[3] != 0:
        raise ValueError(f"unsupported .vxz version {data[3]}")
    bin_start = struct.unpack(">I", data[4:8])[0]
    if bin_start < 8 or bin_start > len(data):
        raise ValueError("corrupt .vxz header offset")
    return json.loads(data[8:bin_start].decode("utf-8")), bin_start


def read_vxz_info(file) -> dict:
    """The parsed JSON header (num_voxel, attr, chunks, ...) without decompressing anything."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            head = f.read(8)
            if len(head) < 8 or head[:3] != b"VXZ":
                raise ValueError("not a .vxz file (bad magic)")
            bin_start = struct.unpack(">I", head[4:8])[0]
            return _parse_header(head + f.read(max(bin_start - 8, 0)))[0]
    return _parse_header(_read_bytes(file))[0]


def decode_vxz(data: bytes, num_threads: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    header, bin_start = _parse_header(data)
    if header.get("filter", "none") != "none":
        raise ValueError(f"unsupported .vxz filter {header['filter']!r} (the data toolkit writes 'none')")
    chunk_size = int(header["chunk_size"])
    depth = int(round(np.log2(chunk_size)))
    if 1 << depth != chunk_size:
        raise ValueError("chunk_size must be a power of two")
    algo, level, inter = header["compression"], header["compression_level"], header["attr_interleave"]
    attr_spec = [(str(k), int(c)) for k, c in header["attr"]]
    total_ch = sum(c for _, c in attr_spec)
    blob = memoryview(data)[bin_start:]

    def one(chunk):
        p0, _ = chunk["ptr"]
        streams = {}
        for key, val in chunk.items():
            if key in ("ptr", "idx"):
                continue
            o, ln = val
            streams[key] = np.frombuffer(_decompress(bytes(blob[p0 + o:p0 + o + ln]), algo, level), dtype=np.uint8)
        codes = svo_decode(streams["svo"], depth)
        local = morton_decode(codes)
        m = local.shape[0]
        cols = []
        if inter == "none":
            for k, c in attr_spec:
                for i in range(c):
                    cols.append(streams[f"{k}_{i}"].reshape(m, 1))
            a = np.concatenate(cols, axis=1) if cols else np.zeros((m, 0), np.uint8)
        elif inter == "as_is":
            for k, c in attr_spec:
                cols.append(streams[k].reshape(m, c))
            a = np.concatenate(cols, axis=1) if cols else np.zeros((m, 0), np.uint8)
        elif inter == "all":
            a = streams["attr"].reshape(m, total_ch)
        else:
            raise ValueError(f"unknown attr_interleave {inter!r}")
        return local + np.asarray(chunk["idx"], dtype=np.int32) * chunk_size, a

    chunks = header["chunks"]
    threads = max(1, min(num_threads or min(os.cpu_count() or 1, 4), len(chunks) or 1))
    if threads == 1:
        parts = [one(c) for c in chunks]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(one, chunks))
    if parts:
        coords = np.concatenate([p[0] for p in parts]).astype(np.int32)
        all_attr = np.concatenate([p[1] for p in parts])
    else:
        coords, all_attr = np.zeros((0, 3), np.int32), np.zeros((0, total_ch), np.uint8)
    if coords.shape[0] != header["num_voxel"]:
        raise ValueError(f"corrupt .vxz: {coords.shape[0]} voxels decoded, header says {header['num_voxel']}")
    attrs, ch = {}, 0
    for k, c in attr_spec:
        attrs[k] = np.ascontiguousarray(all_attr[:, ch:ch + c])
        ch += c
    return coords, attrs


def read_vxz(file, num_threads: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(coords int32 (N,3), {name: uint8 (N,C)}) in read order: chunks lexicographic, Morton inside a chunk."""
    return decode_vxz(_read_bytes(file), num_threads=num_threads)
