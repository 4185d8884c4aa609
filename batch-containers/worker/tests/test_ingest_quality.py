"""Data-quality checks before GPU time (ingest/quality.py) and the report saying what became of every input file.

Most tests are on the check functions with synthetic arrays and files. One Blender-backed run (small renders) ingests
the three hostile objects a user would not want to pay GPU time for, built here: a GLB whose material is fully
transparent, a mesh with infinite and NaN coordinates, a glTF that names a texture file the archive lacks; plus a
good object, a file with no extension, one with an unsupported extension and a truncated binary FBX.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from trellis2_worker.ingest import quality
from trellis2_worker.ingest.discovery import discover, fbx_problem, other_files
from trellis2_worker.ingest.pipeline import blender_warnings

FBX_MAGIC = b"Kaydara FBX Binary  \x00\x1a\x00"


def _view(size=32, box=None, rgb=(120, 60, 30), alpha=255, noise=0.0, seed=0):
    img = np.zeros((size, size, 4), np.uint8)
    if box is not None:
        y0, y1, x0, x1 = box
        patch = np.array(rgb, float) + np.random.default_rng(seed).normal(0, noise, (y1 - y0, x1 - x0, 3))
        img[y0:y1, x0:x1, :3] = np.clip(patch, 0, 255).astype(np.uint8)
        img[y0:y1, x0:x1, 3] = alpha
    return img


# ------------------------------------------------------------------------------------------- render checks


def test_empty_renders_are_refused_and_the_reason_says_nothing_is_visible():
    stats = quality.render_stats([_view() for _ in range(16)])
    assert stats == {"views_covered": 0.0, "alpha_coverage": 0.0, "opacity": 0.0, "colour_std": 0.0}
    reason = quality.render_refusal(stats, 16)
    assert reason and "all 16 condition renders are empty" in reason


def test_an_object_seen_in_few_views_is_kept_but_flagged_mostly_transparent():
    views = [_view(box=(8, 24, 8, 24), noise=20, seed=i) if i < 3 else _view() for i in range(16)]
    stats = quality.render_stats(views)
    assert stats["views_covered"] == pytest.approx(3 / 16)
    assert quality.render_refusal(stats, 16) is None
    assert "mostly_transparent" in quality.flags_of(stats)


def test_a_normal_shaded_object_has_no_render_flag():
    views = [_view(box=(4, 28, 6, 26), noise=25, seed=i) for i in range(16)]
    stats = quality.render_stats(views)
    assert stats["views_covered"] == 1.0
    assert stats["alpha_coverage"] == pytest.approx(24 * 20 / 32 ** 2, rel=1e-3)
    assert stats["colour_std"] > 15 and stats["opacity"] == 1.0
    assert quality.flags_of(stats) == []


def test_a_flat_white_silhouette_is_flagged_uniform_colour():
    stats = quality.render_stats([_view(box=(4, 28, 6, 26), rgb=(255, 255, 255)) for _ in range(16)])
    assert stats["colour_std"] == 0.0
    assert quality.flags_of(stats) == ["uniform_colour"]


def test_faint_pixels_count_for_coverage_but_not_for_colour():
    views = [_view(box=(4, 28, 6, 26), rgb=(0, 0, 0), alpha=3) for _ in range(16)]
    stats = quality.render_stats(views)
    assert stats["views_covered"] == 1.0
    assert stats["alpha_coverage"] == pytest.approx(3 / 255 * 24 * 20 / 32 ** 2, rel=1e-3)
    assert stats["opacity"] == pytest.approx(3 / 255, abs=1e-4) and stats["colour_std"] == 0.0
    assert quality.flags_of(stats) == ["mostly_transparent", "uniform_colour"]


# ------------------------------------------------------------------------------------------- geometry checks

CUBE_V = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float32) - 0.5
CUBE_F = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                   [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])


def test_non_finite_coordinates_are_refused_and_counted():
    v = CUBE_V.copy()
    v[0, 0], v[5, 2] = np.inf, np.nan
    reason = quality.geometry_refusal(v, CUBE_F)
    assert reason.startswith("non-finite geometry: 2 of 8 vertices")


def test_triangles_without_area_are_refused_as_degenerate():
    line = np.array([[0, 0, 0], [0.5, 0, 0], [1, 0, 0], [0.25, 0, 0]], np.float32)
    reason = quality.geometry_refusal(line, np.array([[0, 1, 2], [0, 3, 1], [2, 2, 2]]))
    assert reason == "degenerate geometry: none of its 3 triangles has a non-zero area"
    assert quality.geometry_refusal(CUBE_V, CUBE_F) is None


def test_a_plane_is_kept_but_flagged_flat_and_a_cube_is_not():
    plane = CUBE_V * np.array([1, 1, 0.001], np.float32)
    assert quality.geometry_refusal(plane, CUBE_F) is None
    assert quality.flags_of({"flatness": quality.flatness(plane)}) == ["flat"]
    assert quality.flatness(CUBE_V) == pytest.approx(1.0)
    assert quality.flags_of({"flatness": quality.flatness(CUBE_V)}) == []


def test_assess_reads_the_dump_and_renders_and_gives_the_metadata_columns(tmp_path):
    from PIL import Image

    dump, renders = tmp_path / "dump", tmp_path / "renders"
    dump.mkdir()
    renders.mkdir()
    np.savez(dump / "mesh.npz", vertices=CUBE_V, faces=CUBE_F)
    for i in range(16):
        Image.fromarray(_view(box=(4, 28, 6, 26), noise=25, seed=i)).save(renders / f"{i:03d}.png")
    reason, row = quality.assess(dump, renders, images_missing=2)
    assert reason is None
    assert list(row) == list(quality.COLUMNS)
    assert row["images_missing"] == 2 and row["quality_flags"] == "textures_missing"
    assert quality.flags_in(row) == ["textures_missing"]
    for i in range(16):
        Image.fromarray(_view()).save(renders / f"{i:03d}.png")
    reason, row = quality.assess(dump, renders)
    assert reason.startswith("nothing visible") and row == {}


# ------------------------------------------------------------------------------------------- FBX and files


def _fbx_record(name: bytes, start: int, body: bytes = b"") -> bytes:
    head_len = 13 + len(name)
    end = start + head_len + len(body)
    return end.to_bytes(4, "little") + (0).to_bytes(4, "little") + (0).to_bytes(4, "little") + bytes([len(name)]) \
        + name + body


def test_fbx_reasons_say_what_the_file_is(tmp_path):
    version = (7400).to_bytes(4, "little")
    whole = FBX_MAGIC + version
    whole += _fbx_record(b"FBXHeaderExtension", len(whole))
    whole += bytes(13)  # the null record closing the top level
    (tmp_path / "ok.fbx").write_bytes(whole)
    assert fbx_problem(tmp_path / "ok.fbx") is None
    (tmp_path / "cut.fbx").write_bytes(whole[:-13])  # no closing record
    assert fbx_problem(tmp_path / "cut.fbx").startswith("corrupt binary FBX: cut short")
    (tmp_path / "garbage.fbx").write_bytes(FBX_MAGIC + version + b"\xff" * 64)
    reason = fbx_problem(tmp_path / "garbage.fbx")
    assert reason.startswith("corrupt binary FBX") and "ASCII" not in reason
    (tmp_path / "ascii.fbx").write_bytes(b"; FBX 7.4.0 project file\nFBXHeaderExtension:  {\n}\n")
    assert "ASCII FBX" in fbx_problem(tmp_path / "ascii.fbx")
    (tmp_path / "other.fbx").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    assert fbx_problem(tmp_path / "other.fbx").startswith("not an FBX file")


def test_every_file_that_is_not_an_object_is_listed_with_its_outcome(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "box.obj").write_text("mtllib box.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl m\nf 1 2 3\n")
    (tmp_path / "a" / "box.mtl").write_text("newmtl m\nmap_Kd tex.png\n")
    (tmp_path / "a" / "tex.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "a" / "copy.obj").write_text((tmp_path / "a" / "box.obj").read_text())
    (tmp_path / "LICENSE").write_text("MIT")
    (tmp_path / "model").write_bytes(b"glTF\x02\x00\x00\x00")
    (tmp_path / "notes.xyz").write_text("x")
    found = discover(tmp_path)
    listed = {f["file"]: f["outcome"] for f in other_files(found.files, found, tmp_path)}
    assert set(listed) == {"a/box.mtl", "a/tex.png", "a/copy.obj", "LICENSE", "model", "notes.xyz"}
    assert listed["a/box.mtl"] == listed["a/tex.png"] == "used by a/box.obj"
    assert listed["a/copy.obj"].startswith("same object as a/box.obj")
    assert listed["notes.xyz"].startswith("not a 3D object: unsupported extension .xyz")
    assert listed["LICENSE"].startswith("not a 3D object: the file has no extension")
    assert listed["model"].endswith("those of a .glb file: name it so to ingest it")


def test_blender_missing_image_lines_are_kept_once_without_internal_paths(tmp_path):
    root = tmp_path / "extracted"
    log = "\n".join([
        "Read blend: something",
        f"12:00:01 | ERROR: Missing image file (index 0): {root}/sub/albedo.png",
        f"12:00:01 | ERROR: Missing image file (index 0): {root}/sub/albedo.png",
        "Error: Cannot read image: /home/author/textures/wood.jpg",
        "Fra:1 Mem:12M rendering",
    ] + [f"Image tex{i}.png not found" for i in range(30)])
    lines = blender_warnings(log, root)
    assert lines[0] == "ERROR: Missing image file (index 0): sub/albedo.png"
    assert lines[1] == "Error: Cannot read image: wood.jpg"
    assert len(lines) == 10 and len(set(lines)) == 10
    assert not any(str(tmp_path) in ln or "/home/" in ln for ln in lines)


# ------------------------------------------------------------------------------------------- Blender, once

RENDER_SIZE = 24


def _glb_transparent() -> bytes:
    import trimesh

    box = trimesh.creation.box()
    box.visual = trimesh.visual.TextureVisuals(material=trimesh.visual.material.PBRMaterial(
        baseColorFactor=[255, 255, 255, 0], alphaMode="BLEND"))
    return trimesh.Scene(box).export(file_type="glb")


def _glb_with_non_finite() -> bytes:
    """A cube GLB whose positions hold an inf and a NaN (written by hand: trimesh will not export them)."""
    import struct

    v = CUBE_V.copy()
    v[0, 0], v[5, 2] = np.inf, np.nan
    pos, idx = v.astype("<f4").tobytes(), CUBE_F.astype("<u2").tobytes()
    data = pos + idx + bytes(-len(pos + idx) % 4)
    doc = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
           "buffers": [{"byteLength": len(data)}],
           "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(pos)},
                           {"buffer": 0, "byteOffset": len(pos), "byteLength": len(idx)}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 8, "type": "VEC3",
                          "min": [-0.5] * 3, "max": [0.5] * 3},
                         {"bufferView": 1, "componentType": 5123, "count": 36, "type": "SCALAR"}]}
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    return (b"glTF" + struct.pack("<II", 2, 12 + 8 + len(text) + 8 + len(data)) + struct.pack("<I", len(text))
            + b"JSON" + text + struct.pack("<I", len(data)) + b"BIN\0" + data)


def _gltf_with_missing_texture() -> dict[str, bytes]:
    import trimesh
    from PIL import Image

    box = trimesh.creation.box()
    box.visual = trimesh.visual.TextureVisuals(uv=np.random.default_rng(0).random((len(box.vertices), 2)),
                                               image=Image.new("RGB", (4, 4), (200, 30, 30)))
    files = trimesh.Scene(box).export(file_type="gltf")
    doc = json.loads(files.pop("model.gltf"))
    doc["images"] = [{"uri": "textures/albedo.png"}]  # named, and absent from the archive
    doc["materials"][0]["pbrMetallicRoughness"]["baseColorFactor"] = [1.0, 1.0, 1.0, 1.0]
    return {"missing-tex/model.gltf": json.dumps(doc).encode(), **{f"missing-tex/{k}": v for k, v in files.items()}}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    import trimesh

    from trellis2_worker.ingest import ingest

    tmp = tmp_path_factory.mktemp("hostile")
    members = {
        "transparent.glb": _glb_transparent(),
        "infinite.glb": _glb_with_non_finite(),
        **_gltf_with_missing_texture(),
        "good.glb": trimesh.Scene(trimesh.creation.icosphere(subdivisions=1)).export(file_type="glb"),
        "README": b"no extension",
        "notes.xyz": b"unsupported",
        "broken.fbx": FBX_MAGIC + (7400).to_bytes(4, "little") + bytes(range(256)) * 2,
    }
    archive = tmp / "hostile.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    out = tmp / "out"
    report = ingest(str(archive), out, render_size=RENDER_SIZE, render_samples=2, workers=1, timeout_s=300,
                    denoise="off", progress=False)
    return out, report, sorted(members)


def _entries(report) -> dict:
    return {o["file"]: o for o in report["objects"]}


def test_objects_that_teach_nothing_are_refused_with_the_reason(hostile):
    out, report, _ = hostile
    objects = _entries(report)
    assert objects["transparent.glb"]["status"] == "failed"
    assert objects["transparent.glb"]["reason"].startswith("refused: nothing visible")
    assert objects["infinite.glb"]["status"] == "failed"
    assert objects["infinite.glb"]["reason"].startswith("non-finite geometry")
    assert "corrupt binary FBX" in objects["broken.fbx"]["reason"]
    assert "ASCII" not in objects["broken.fbx"]["reason"]
    for name in ("transparent.glb", "infinite.glb"):  # nothing of theirs is left for the later stages
        assert not (out / "dumps" / objects[name]["sha256"]).exists()


def test_objects_of_doubtful_value_are_kept_flagged_and_listed(hostile):
    out, report, _ = hostile
    objects = _entries(report)
    missing = objects["missing-tex/model.gltf"]
    assert missing["status"] == "succeeded"
    assert "textures_missing" in missing["flags"]
    assert missing["quality"]["images_missing"] == 1
    assert missing["quality"]["images_missing_names"] == ["missing-tex/textures/albedo.png"]
    # Blender's own line about it, with the archive-relative name only
    assert any("albedo.png" in w for w in missing["warnings"])
    assert not any(str(out) in w or "/tmp" in w for w in missing["warnings"])
    good = objects["good.glb"]
    assert good["status"] == "succeeded" and good["flags"] == []
    assert good["quality"]["views_covered"] == 1.0 and good["quality"]["colour_std"] > quality.MIN_COLOUR_STD
    assert {"file": "missing-tex/model.gltf", "flags": missing["flags"]} in report["flagged"]
    assert all(f["file"] != "good.glb" for f in report["flagged"])
    import csv

    rows = {r["local_path"]: r for r in csv.DictReader(open(out / "metadata.csv"))}
    assert "textures_missing" in rows["missing-tex/model.gltf"]["quality_flags"].split(";")
    assert rows["good.glb"]["quality_flags"] == "" and float(rows["good.glb"]["views_covered"]) == 1.0


def test_every_file_of_the_archive_is_in_the_report(hostile):
    _, report, members = hostile
    listed = [o["file"] for o in report["objects"]] + [f["file"] for f in report["other_files"]]
    assert sorted(listed) == members
    other = {f["file"]: f["outcome"] for f in report["other_files"]}
    assert "no extension" in other["README"]
    assert "unsupported extension .xyz" in other["notes.xyz"]
    assert other["missing-tex/gltf_buffer_0.bin"] == "used by missing-tex/model.gltf"


def _stl_with_non_finite() -> bytes:
    tris = np.asarray(CUBE_V[CUBE_F], np.float32)  # (12, 3, 3)
    tris[0, 0, 0], tris[3, 1, 2] = np.inf, np.nan
    records = np.zeros(12, dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    records["v"] = tris
    return bytes(80) + (12).to_bytes(4, "little") + records.tobytes()


def test_non_finite_coordinates_in_a_glb_or_stl_are_refused_before_blender(tmp_path):
    # Blender's importers zero such coordinates silently (measured: the dump came back finite, the cube crumpled)
    from trellis2_worker.ingest.discovery import preflight

    (tmp_path / "inf.glb").write_bytes(_glb_with_non_finite())
    (tmp_path / "inf.stl").write_bytes(_stl_with_non_finite())
    import trimesh

    (tmp_path / "ok.glb").write_bytes(trimesh.Scene(trimesh.creation.box()).export(file_type="glb"))
    (tmp_path / "ok.stl").write_bytes(trimesh.creation.box().export(file_type="stl"))
    reasons = {a.local_path: preflight(a, tmp_path) for a in discover(tmp_path).assets}
    assert reasons["inf.glb"] == quality.nonfinite_refusal(2, 8)
    assert reasons["inf.stl"].startswith("non-finite geometry: 2 of 36 vertices")
    assert reasons["ok.glb"] is None and reasons["ok.stl"] is None


def test_non_finite_coordinates_in_an_obj_or_ply_are_refused_before_blender(tmp_path):
    # Blender's OBJ and PLY importers zero an inf or NaN too; the text and binary layouts are read with numpy here
    from trellis2_worker.ingest.discovery import preflight
    import trimesh

    box = trimesh.creation.box()
    obj = box.export(file_type="obj").replace("v 0.50000000", "v inf", 1)
    (tmp_path / "inf.obj").write_text(obj)
    (tmp_path / "ok.obj").write_text(box.export(file_type="obj"))
    for encoding in ("ascii", "binary"):
        bad = box.copy()
        bad.vertices[2] = [np.nan, 0, np.inf]
        (tmp_path / f"inf_{encoding}.ply").write_bytes(bad.export(file_type="ply", encoding=encoding))
        (tmp_path / f"ok_{encoding}.ply").write_bytes(box.export(file_type="ply", encoding=encoding))
    reasons = {a.local_path: preflight(a, tmp_path) for a in discover(tmp_path).assets}
    assert reasons["inf.obj"] == quality.nonfinite_refusal(1, 8)
    assert reasons["inf_ascii.ply"] == quality.nonfinite_refusal(1, 8)
    assert reasons["inf_binary.ply"] == quality.nonfinite_refusal(1, 8)
    assert all(reasons[n] is None for n in ("ok.obj", "ok_ascii.ply", "ok_binary.ply"))
