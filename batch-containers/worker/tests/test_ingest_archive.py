"""Safe extraction, discovery and manifest.csv: what a user sending a zip (or an attacker) would notice."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from trellis2_worker.errors import InputError
from trellis2_worker.ingest import discover, extract_zip, ingest
from trellis2_worker.ingest.archive import read_listing
from trellis2_worker.ingest.discovery import object_key, preflight, sha256_file
from trellis2_worker.ingest.rules import object_format

import hostile_zips

MB = 1024 * 1024
TRIANGLE_OBJ = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def _zip(path: Path, entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Hostile archives


def test_zip_bomb_is_refused_from_its_declared_sizes_before_inflating(tmp_path):
    # 12 MB of zeros compresses to a few KB; with a 5 MB cap nothing is inflated or written at all.
    archive = _zip(tmp_path / "bomb.zip", {"a.obj": TRIANGLE_OBJ, "big/zeros.bin": b"\0" * (12 * MB)})
    assert archive.stat().st_size < 100_000
    dest = tmp_path / "out"
    with pytest.raises(InputError, match="would unpack to .*, over the .* limit"):
        extract_zip(archive, dest, max_uncompressed_bytes=5 * MB)
    assert not [p for p in dest.rglob("*") if p.is_file()]


def test_headers_that_understate_sizes_do_not_get_past_the_cap(tmp_path):
    """Patch the declared uncompressed size down to 100 bytes: the lie is caught, not trusted."""
    archive = _zip(tmp_path / "liar.zip", {"a.obj": TRIANGLE_OBJ, "zeros.bin": b"\0" * (8 * MB)})
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("zeros.bin")
    # local header: uncompressed size at offset 22; central directory entry: at offset 24
    struct.pack_into("<I", data, info.header_offset + 22, 100)
    central = data.find(b"PK\x01\x02" + data[info.header_offset + 4:info.header_offset + 6], 0)
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46:central + 46 + name_len] == b"zeros.bin":
            struct.pack_into("<I", data, central + 24, 100)
        central = data.find(b"PK\x01\x02", central + 4)
    archive.write_bytes(bytes(data))
    dest = tmp_path / "out"
    with pytest.raises(InputError):
        extract_zip(archive, dest, max_uncompressed_bytes=1 * MB)
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 1 * MB


@pytest.mark.parametrize("name", ["../escape.obj", "a/../../escape.obj", "/abs/escape.obj", "C:/win/escape.obj",
                                  "a\\..\\..\\escape.obj"])
def test_path_escapes_are_refused_before_anything_is_written(tmp_path, name):
    archive = _zip(tmp_path / "evil.zip", {"ok.obj": TRIANGLE_OBJ, name: TRIANGLE_OBJ})
    dest = tmp_path / "deep" / "out"
    with pytest.raises(InputError, match="absolute path|points outside the archive"):
        extract_zip(archive, dest)
    assert not list(dest.rglob("*.obj"))
    assert not (tmp_path / "escape.obj").exists() and not (tmp_path / "deep" / "escape.obj").exists()


def test_symlink_entries_are_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.obj", TRIANGLE_OBJ)
        info = zipfile.ZipInfo("link.obj")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out")


def test_corrupt_archives_are_a_clear_input_error(tmp_path):
    good = _zip(tmp_path / "good.zip", {"a.obj": TRIANGLE_OBJ * 2000}).read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="zip"):
        extract_zip(truncated, tmp_path / "o1")
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"this is not a zip file at all" * 10)
    with pytest.raises(InputError, match="zip"):
        extract_zip(garbage, tmp_path / "o2")
    # A flipped byte inside the compressed data: CRC or inflate error, reported as a corrupt entry.
    damaged = bytearray(good)
    damaged[60] ^= 0xFF
    (tmp_path / "damaged.zip").write_bytes(bytes(damaged))
    with pytest.raises(InputError, match="archive member 'a.obj' is damaged"):
        extract_zip(tmp_path / "damaged.zip", tmp_path / "o3")


def test_archive_over_the_size_limit_is_refused_without_opening_it(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"a.obj": TRIANGLE_OBJ})
    with pytest.raises(InputError, match="limit"):
        extract_zip(archive, tmp_path / "out", max_archive_bytes=10)


def test_hidden_files_and_macosx_folders_are_ignored(tmp_path):
    archive = _zip(tmp_path / "a.zip", {
        "models/chair.OBJ": TRIANGLE_OBJ,
        "__MACOSX/models/._chair.OBJ": b"resource fork",
        "models/.hidden.obj": TRIANGLE_OBJ + b"v 2 2 2\n",
        ".git/config.obj": TRIANGLE_OBJ,
    })
    files = extract_zip(archive, tmp_path / "out")
    assert files == ["models/chair.OBJ"]
    found = discover(tmp_path / "out", files)
    assert [(a.local_path, a.format) for a in found.assets] == [("models/chair.OBJ", "obj")]


def test_archive_without_any_3d_object_is_an_input_error(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"readme.txt": b"hello", "image.png": b"\x89PNG"})
    with pytest.raises(InputError, match="no supported 3D object"):
        ingest(str(archive), tmp_path / "out", render=False)


# ---------------------------------------------------------------------------------------------------------------
# Discovery and manifest


def test_discovery_is_sorted_case_insensitive_and_counts_identical_files_once(tmp_path):
    root = tmp_path / "root"
    files = {"b/Shape.GLB": b"glb-bytes", "a/shape.stl": b"stl", "a/copy.stl": b"stl", "notes.txt": b"x",
             "c/model.Blend": b"blend", "c/part.ply": b"ply", "c/thing.fbx": b"fbx"}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    found = discover(root)
    assert [a.local_path for a in found.assets] == ["a/copy.stl", "b/Shape.GLB", "c/model.Blend", "c/part.ply",
                                                    "c/thing.fbx"]
    assert found.assets[0].duplicates == ["a/shape.stl"]
    assert found.assets[0].sha256 == sha256_file(root / "a/shape.stl")
    assert [a.format for a in found.assets] == ["stl", "glb", "blend", "ply", "fbx"]


def test_gltf_key_includes_its_buffers_so_different_objects_are_not_merged(tmp_path):
    gltf = b'{"asset": {"version": "2.0"}, "buffers": [{"uri": "data.bin", "byteLength": 4}]}'
    for folder, buf in (("one", b"AAAA"), ("two", b"BBBB"), ("three", None)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "m.gltf").write_bytes(gltf)
        if buf:
            (tmp_path / folder / "data.bin").write_bytes(buf)
    found = discover(tmp_path)
    assert len({a.sha256 for a in found.assets}) == 3
    missing = next(a for a in found.assets if a.local_path == "three/m.gltf")
    assert "missing buffer" in preflight(missing, tmp_path)
    # A glb is self-contained: its key is exactly the sha256 of its bytes.
    (tmp_path / "x.glb").write_bytes(b"glTF....")
    assert object_key(tmp_path / "x.glb", "glb", tmp_path) == sha256_file(tmp_path / "x.glb")


def test_gltf_and_obj_references_outside_the_archive_are_refused(tmp_path):
    (tmp_path / "m.gltf").write_text('{"buffers": [{"uri": "../../etc/passwd"}]}')
    (tmp_path / "m.obj").write_text("mtllib ../outside.mtl\n" + TRIANGLE_OBJ.decode())
    found = discover(tmp_path)
    reasons = {a.local_path: preflight(a, tmp_path) for a in found.assets}
    assert "outside the archive" in reasons["m.gltf"]
    assert "outside the archive" in reasons["m.obj"]


def test_ascii_fbx_gets_a_clear_reason(tmp_path):
    (tmp_path / "box.fbx").write_text("; FBX 7.4.0 project file\nFBXHeaderExtension: {}\n")
    (asset,) = discover(tmp_path).assets
    assert "ASCII FBX" in preflight(asset, tmp_path)


def test_manifest_limits_the_set_copies_its_columns_and_reports_missing_paths(tmp_path):
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(["file", "aesthetic_score", "caption", "size"])
    writer.writerow(["models/a.obj", "6.5", "a red chair", "big"])
    writer.writerow(["./models\\b.obj", "5.0", "a table", "small"])
    writer.writerow(["models/gone.obj", "7", "never uploaded", ""])
    writer.writerow(["models/readme.txt", "", "", ""])
    archive = _zip(tmp_path / "a.zip", {
        "manifest.csv": manifest.getvalue().encode(),
        "models/a.obj": TRIANGLE_OBJ,
        "models/b.obj": TRIANGLE_OBJ + b"v 5 5 5\n",
        "models/c.obj": TRIANGLE_OBJ + b"v 9 9 9\n",  # not named: left out
        "models/readme.txt": b"hi",
    })
    files = extract_zip(archive, tmp_path / "out")
    found = discover(tmp_path / "out", files)
    assert [a.local_path for a in found.assets] == ["models/a.obj", "models/b.obj"]
    assert found.manifest_missing == ["models/gone.obj"]
    assert found.manifest_unsupported == ["models/readme.txt"]
    # 'size' is a column ingest writes itself: the manifest's is kept under a prefix rather than overwriting it.
    assert found.extra_columns == ["aesthetic_score", "caption", "manifest_size"]
    assert found.assets[0].extra == {"aesthetic_score": "6.5", "caption": "a red chair", "manifest_size": "big"}


def test_manifest_without_a_file_column_is_an_input_error(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,score\na.obj,1\n")
    (tmp_path / "a.obj").write_bytes(TRIANGLE_OBJ)
    with pytest.raises(InputError, match="'file' column"):
        discover(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# The hostile archives Java's inspection runs too (tests/hostile_archives.json): the same bytes, the same answer


@pytest.mark.parametrize("case", hostile_zips.cases(), ids=lambda c: c["id"])
def test_shared_hostile_archive(tmp_path, case):
    if case.get("slow") and not os.environ.get("TRELLIS2_SLOW_TESTS"):
        pytest.skip("a large archive: TRELLIS2_SLOW_TESTS=1 runs it")
    data = hostile_zips.build(case)
    assert hostile_zips.sha256(data) == case["sha256"], "the recipe's archive changed: both builders must agree"
    archive = tmp_path / "case.zip"
    archive.write_bytes(data)
    dest = tmp_path / "out"
    expect = case["expect"]
    if "refused" in expect:
        with pytest.raises(InputError, match=re.escape(expect["refused"])):
            extract_zip(archive, dest)
        assert not [p for p in dest.rglob("*") if p.is_file()], "refused only after writing"
        return
    listing = read_listing(archive)
    assert (listing.objects, len(listing.entries), listing.declared_bytes) == (
        expect["objects"], expect["entries"], expect["declared_bytes"])
    if "extract_refused" in expect:
        with pytest.raises(InputError, match=re.escape(expect["extract_refused"])):
            extract_zip(archive, dest)
    else:
        files = extract_zip(archive, dest, expect={"entries": expect["entries"],
                                                   "declared_bytes": expect["declared_bytes"],
                                                   "objects": expect["objects"]})
        assert [f for f in files if object_format(f)] == expect["objects"]


def test_every_refusal_is_one_line_without_a_local_path(tmp_path):
    for case in hostile_zips.cases():
        if case.get("slow"):
            continue  # the big one is in the table above; its refusal is one short line too
        archive = tmp_path / f"{case['id']}.zip"
        archive.write_bytes(hostile_zips.build(case))
        try:
            extract_zip(archive, tmp_path / "out" / case["id"])
        except InputError as exc:
            assert "\n" not in str(exc) and str(tmp_path) not in str(exc), case["id"]


def test_an_archive_other_than_the_inspected_one_is_refused(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"a.obj": TRIANGLE_OBJ, "b.obj": TRIANGLE_OBJ + b"v 1 1 1\n"})
    inspected = read_listing(archive)
    record = {"entries": len(inspected.entries), "declared_bytes": inspected.declared_bytes,
              "objects": inspected.objects}
    assert extract_zip(archive, tmp_path / "ok", expect=record) == ["a.obj", "b.obj"]
    for change, phrase in (({"entries": 3}, "2 entries, not 3"),
                           ({"declared_bytes": 1}, "declared bytes, not 1"),
                           ({"objects": ["a.obj", "c.obj"]}, "different 3D objects")):
        with pytest.raises(InputError, match=re.escape(phrase)):
            extract_zip(archive, tmp_path / "no", expect={**record, **change})
        assert not (tmp_path / "no").exists()


def test_a_clash_the_file_system_finds_is_an_input_error(tmp_path):
    # 'X' and 'x' are two names to the archive and on Linux; a folder already standing where a file goes is not.
    archive = _zip(tmp_path / "a.zip", {"a.obj": TRIANGLE_OBJ, "x": b"file"})
    dest = tmp_path / "out"
    (dest / "x").mkdir(parents=True)
    with pytest.raises(InputError, match="entry 'x' is both a file and a folder") as err:
        extract_zip(archive, dest)
    assert str(tmp_path) not in str(err.value)


def _record(archive: Path) -> dict:
    listing = read_listing(archive)
    return {"bytes": archive.stat().st_size, "sha256": sha256_file(archive), "entries": len(listing.entries),
            "declared_bytes": listing.declared_bytes, "objects": listing.objects}


def test_recorded_input_is_the_inspected_archive_or_exit_2(tmp_path, capsys):
    from trellis2_worker.cli import main
    from trellis2_worker.ingest import recorded_input

    archive = _zip(tmp_path / "a.zip", {"a.obj": TRIANGLE_OBJ})
    record = tmp_path / "input.json"
    record.write_text(json.dumps(_record(archive)))
    with recorded_input(str(archive), str(record)) as local:
        assert Path(local).read_bytes() == archive.read_bytes()
    # The server (or the bucket) now holds another archive with the same name: refused before any work, exit 2.
    _zip(archive, {"a.obj": TRIANGLE_OBJ, "b.obj": TRIANGLE_OBJ + b"v 3 3 3\n"})
    report = tmp_path / "report.json"
    code = main(["preprocess", "--input", str(archive), "--input-record", str(record), "--resolution", "512",
                 "--base", "tiny", "--output", str(tmp_path / "ds.zip"), "--report", str(report)])
    assert code == 2
    error = json.loads(report.read_text())["error"]
    assert "is not the archive inspected when the request was made" in error
    assert not (tmp_path / "ds.zip").exists()
    # Same bytes and size, but Prepare recorded other objects (a record for another archive): refused too.
    record.write_text(json.dumps({**_record(archive), "objects": ["a.obj"]}))
    with pytest.raises(InputError, match="different 3D objects"):
        with recorded_input(str(archive), str(record)):
            pass
    # A user's preprocessed dataset handed to a training job is pinned the same way.
    code = main(["train", "--dataset", str(archive), "--dataset-record", str(tmp_path / "input.json"),
                 "--denoiser", "geometry", "--base", "tiny", "--output", str(tmp_path / "g.safetensors"),
                 "--report", str(report)])
    assert code == 2 and "different 3D objects" in json.loads(report.read_text())["error"]
