"""The .vxz format: the golden files read exactly, our files are byte-identical to the reference writer's, and an
independent reader written here from the format's description alone (docs/data-formats.md#vxz) reads what
we write."""

from __future__ import annotations

import io
import json
import lzma
import struct
import zlib

import numpy as np
import pytest

from trellis2_worker.ovoxel import read_vxz, read_vxz_info, write_vxz
from trellis2_worker.ovoxel.vxz import encode_vxz


# ---------------------------------------------------------------- a second reader, from the format text only

def _spec_decompress(blob: bytes, algo: str) -> bytes:
    if algo == "lzma":
        return lzma.LZMADecompressor(format=lzma.FORMAT_RAW,
                                     filters=[{"id": lzma.FILTER_LZMA2, "preset": 9}]).decompress(blob)
    if algo == "deflate":
        return zlib.decompress(blob, -15)
    assert algo == "none"
    return blob


def _spec_read(data: bytes):
    assert data[:3] == b"VXZ" and data[3] == 0
    (bin_start,) = struct.unpack(">I", data[4:8])
    head = json.loads(data[8:bin_start])
    depth = head["chunk_size"].bit_length() - 1
    coords, cols = [], {name: [] for name, _ in head["attr"]}
    for chunk in head["chunks"]:
        base = bin_start + chunk["ptr"][0]

        def stream(key):
            off, length = chunk[key]
            return _spec_decompress(data[base + off: base + off + length], head["compression"])

        svo = stream("svo")
        pos = 0
        leaves = []

        def visit(level, prefix):  # pre-order, children by ascending octant, leaves own no bytes
            nonlocal pos
            node = svo[pos]
            pos += 1
            for i in range(8):
                if node >> i & 1:
                    if level == depth - 1:
                        leaves.append((prefix << 3) | i)
                    else:
                        visit(level + 1, (prefix << 3) | i)

        visit(0, 0)
        assert pos == len(svo)
        for code in leaves:
            xyz = [0, 0, 0]
            for lvl in range(depth):  # each triplet is (x, y, z), x most significant
                trip = (code >> (3 * lvl)) & 7
                xyz[0] |= (trip >> 2 & 1) << lvl
                xyz[1] |= (trip >> 1 & 1) << lvl
                xyz[2] |= (trip & 1) << lvl
            coords.append([xyz[a] + chunk["idx"][a] * head["chunk_size"] for a in range(3)])
        assert head["attr_interleave"] == "as_is"
        for name, chs in head["attr"]:
            cols[name].append(np.frombuffer(stream(name), np.uint8).reshape(len(leaves), chs))
    return head, np.array(coords, np.int64).reshape(-1, 3), {k: np.concatenate(v) for k, v in cols.items()}


# ---------------------------------------------------------------- tests

def _golden(shared_dir, name):
    return shared_dir / "fixtures" / "ovoxel-golden" / name


@pytest.mark.parametrize("name", ["dg_256.vxz", "pbr_256.vxz"])
def test_golden_files_read_exactly_and_rewrite_byte_identically(shared_dir, name):
    raw = _golden(shared_dir, name).read_bytes()
    coords, attrs = read_vxz(_golden(shared_dir, name))
    head, ref_coords, ref_attrs = _spec_read(raw)
    assert coords.dtype == np.int32 and coords.shape == (head["num_voxel"], 3)
    np.testing.assert_array_equal(coords, ref_coords)
    assert list(attrs) == [k for k, _ in head["attr"]]
    for k in ref_attrs:
        assert attrs[k].dtype == np.uint8
        np.testing.assert_array_equal(attrs[k], ref_attrs[k])
    # Writing what we read gives back the very same bytes (header, chunking, lzma stream), in any input order.
    perm = np.random.default_rng(0).permutation(len(coords))
    assert encode_vxz(coords[perm], {k: v[perm] for k, v in attrs.items()}) == raw


def test_read_vxz_info_is_the_header(shared_dir):
    info = read_vxz_info(_golden(shared_dir, "dg_256.vxz"))
    assert info["num_voxel"] == 344352
    assert info["attr"] == [["vertices", 3], ["intersected", 1]]
    assert info["compression"] == "lzma" and info["compression_level"] == 9 and info["filter"] == "none"


def test_multi_chunk_file_we_write_is_read_by_the_independent_reader(tmp_path):
    rng = np.random.default_rng(1)
    # Spread over several 256³ chunks, with voxels on chunk borders, and attributes with 1 and 3 channels.
    coords = np.unique(rng.integers(0, 700, size=(5000, 3)), axis=0)
    coords = np.concatenate([coords, [[255, 255, 255], [256, 0, 0], [0, 0, 0], [767, 511, 256]]])
    coords = np.unique(coords, axis=0)[rng.permutation(len(np.unique(coords, axis=0)))]
    attrs = {"rgb": rng.integers(0, 256, (len(coords), 3), dtype=np.uint8),
             "flag": rng.integers(0, 256, (len(coords), 1), dtype=np.uint8)}
    path = tmp_path / "x.vxz"
    write_vxz(path, coords, attrs)
    head, c2, a2 = _spec_read(path.read_bytes())
    assert head["num_voxel"] == len(coords) and len(head["chunks"]) > 1
    assert [c["idx"] for c in head["chunks"]] == sorted(c["idx"] for c in head["chunks"])
    # Same voxels with the same attributes, in the format's read order.
    ours = {tuple(c): (tuple(attrs["rgb"][i]), attrs["flag"][i, 0]) for i, c in enumerate(coords)}
    theirs = {tuple(c): (tuple(a2["rgb"][i]), a2["flag"][i, 0]) for i, c in enumerate(c2)}
    assert ours == theirs
    # Our reader agrees with it, order included, and a round trip is exact.
    c3, a3 = read_vxz(path)
    np.testing.assert_array_equal(c3, c2)
    for k in attrs:
        np.testing.assert_array_equal(a3[k], a2[k])
    assert read_vxz_info(path)["num_voxel"] == len(coords)
    buf = io.BytesIO()
    write_vxz(buf, c3, a3)
    assert buf.getvalue() == path.read_bytes()


@pytest.mark.parametrize("compression", ["deflate", "none"])
def test_other_compressions_round_trip(compression):
    coords = np.array([[3, 1, 2], [0, 0, 0], [300, 2, 9]])
    attrs = {"a": np.array([[1], [2], [3]], np.uint8)}
    data = encode_vxz(coords, attrs, compression=compression)
    c, a = read_vxz(data)
    _, c_spec, _ = _spec_read(data)
    np.testing.assert_array_equal(c, c_spec)
    assert {tuple(x): int(y) for x, y in zip(c, a["a"][:, 0])} == {(3, 1, 2): 1, (0, 0, 0): 2, (300, 2, 9): 3}


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(ValueError):
        read_vxz(b"PLY\x00\x00\x00\x00\x08")
    with pytest.raises(ValueError):
        encode_vxz(np.zeros((2, 3), int), {"a": np.zeros((2, 1), np.float32)})
