"""Assets are contained: every file an importer would open must lie inside the archive, checked the way the importer
resolves it, before Blender starts. Each hostile file is built here; nothing is fetched."""

from __future__ import annotations

import builtins
import io
import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from conftest import SHARED
from trellis2_worker.ingest import discover
from trellis2_worker.ingest.discovery import object_key, preflight
from trellis2_worker.ingest.references import MAX_TEXTURE_SIDE, check, mtl_map_path, sniff_format

TRIANGLE_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1 2 3\n"


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height: Pillow reads the size from IHDR without decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 4)
    chunk += struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def _glb(doc: dict, bin_chunk: bytes = b"") -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<I4s", len(js), b"JSON") + js
    if bin_chunk:
        bin_chunk += b"\0" * (-len(bin_chunk) % 4)
        body += struct.pack("<I4s", len(bin_chunk), b"BIN\0") + bin_chunk
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def _gltf(**kinds) -> dict:
    return {"asset": {"version": "2.0"}, **{k: [{"uri": u} for u in v] for k, v in kinds.items()}}


@pytest.fixture
def root(tmp_path):
    """The archive folder, one level below a folder holding files the asset must never reach."""
    from PIL import Image

    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "secret.png")
    (tmp_path / "secret.bin").write_bytes(b"\1" * 64)
    archive = tmp_path / "archive"
    (archive / "models").mkdir(parents=True)
    return archive


def _reason(root: Path, rel: str, data: bytes) -> str | None:
    path = root / rel
    path.write_bytes(data)
    (asset,) = [a for a in discover(root, use_manifest=False).assets if a.local_path == rel]
    return preflight(asset, root)


# ---------------------------------------------------------------------------------------------------------------
# glTF and GLB


@pytest.mark.parametrize("uri", [
    "../../secret.png",  # plain ..
    "..\\..\\secret.png",  # backslashes: the importer turns them into separators
    "%2e%2e/%2E%2E/secret.png",  # URL escapes: the importer unquotes
    "models/../../../secret.png",
    "data:/../../../secret.png",  # a data: URI without ;base64, is read as a path
])
def test_gltf_images_outside_the_archive_are_refused_and_named(root, uri):
    reason = _reason(root, "models/m.gltf", json.dumps(_gltf(images=[uri])).encode())
    assert reason is not None and "image refers outside the archive" in reason


def test_absolute_paths_and_outside_buffers_in_a_glb_are_refused(root):
    # A .glb's own JSON chunk was not checked at all before.
    secret = str(root.parent / "secret.bin")
    for doc, kind in ((_gltf(buffers=[secret]), "buffer"), (_gltf(images=[secret]), "image")):
        reason = _reason(root, "models/m.glb", _glb(doc))
        assert reason is not None and f"{kind} refers outside the archive" in reason


def test_a_json_file_named_glb_is_checked_as_the_importer_reads_it(root):
    # Blender's glTF importer sniffs the bytes: without the glTF magic it reads the file as JSON, whatever its name.
    path = root / "models" / "m.glb"
    path.write_text(json.dumps(_gltf(buffers=["../../secret.bin"])))
    assert sniff_format(path, "glb") == "gltf"
    assert "buffer refers outside the archive" in check(path, "glb", root)


def test_a_file_uri_resolves_inside_as_the_importer_does(root):
    # The importer does not know file: URIs: `file:///x` becomes the relative name `file:/x` inside the folder.
    reason = _reason(root, "models/m.gltf", json.dumps(_gltf(buffers=["file:///etc/passwd"])).encode())
    assert reason.startswith("missing buffer: file:///etc/passwd")


def test_a_symlinked_buffer_pointing_outside_is_refused(root):
    # Directory inputs may hold symlinks; the importer's open() follows them.
    (root / "models" / "b.bin").symlink_to(root.parent / "secret.bin")
    reason = _reason(root, "models/m.gltf", json.dumps(_gltf(buffers=["b.bin"])).encode())
    assert "buffer refers outside the archive: b.bin" in reason


def test_textures_past_the_side_limit_are_refused_from_their_header(root):
    big = _png_header(30000, 30000)
    (root / "models" / "big.png").write_bytes(big)
    reason = _reason(root, "models/m.gltf", json.dumps(_gltf(images=["big.png"])).encode())
    assert f"image big.png is over the {MAX_TEXTURE_SIDE}-pixel side limit" in reason
    (root / "models" / "wide.png").write_bytes(_png_header(MAX_TEXTURE_SIDE + 1, 2))
    reason = _reason(root, "models/w.gltf", json.dumps(_gltf(images=["wide.png"])).encode())
    assert f"is {MAX_TEXTURE_SIDE + 1}x2 pixels, over the {MAX_TEXTURE_SIDE}-pixel side limit" in reason
    # Embedded in the GLB's binary chunk through a buffer view, the same.
    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": len(big)}],
           "bufferViews": [{"buffer": 0, "byteLength": len(big)}], "images": [{"bufferView": 0,
                                                                             "mimeType": "image/png"}]}
    assert "embedded image 0 is over the" in _reason(root, "models/e.glb", _glb(doc, big))
    (root / "models" / "ok.png").write_bytes(_png_header(MAX_TEXTURE_SIDE, 16))
    assert _reason(root, "models/ok.gltf", json.dumps(_gltf(images=["ok.png"])).encode()) is None


# ---------------------------------------------------------------------------------------------------------------
# OBJ and MTL


@pytest.mark.parametrize("line, path", [
    ("map_Kd -o 1 1 1 name with spaces.png", "name with spaces.png"),
    ("map_Kd -o 1 2.png", "2.png"),  # 2.png is not a number: the option takes one value
    ("map_Kd -s 1 1 1 -bm 0.5 -clamp on \"tex.png\"\r", "tex.png"),
    ("  bump -mm 0 1 -imfchan r n.png", "n.png"),
    ("map_Bump -type sphere -t 1 1 1 ../up.png", "../up.png"),
    ("Kd 1 1 1", None),
])
def test_mtl_map_lines_are_tokenised_as_blender_reads_them(line, path):
    assert mtl_map_path(line.encode()) == path


@pytest.mark.parametrize("mtl_line", [
    "map_Kd -s 1 1 1 ../../secret.png",
    "map_Kd -o 1 1 1 ../../sec ret.png",  # the old check looked at the last word only ("ret.png")
    "map_Kd ..\\..\\secret.png",
    "map_Kd /etc/hosts",
    "map_Pr \"../../secret.png\"",
])
def test_mtl_textures_outside_the_archive_are_refused(root, mtl_line):
    (root / "models" / "m.mtl").write_text(f"newmtl a\nKd 1 1 1\n{mtl_line}\n")
    reason = _reason(root, "models/m.obj", ("mtllib m.mtl\nusemtl a\n" + TRIANGLE_OBJ).encode())
    assert reason is not None and "texture outside the archive" in reason


def test_mtllib_takes_the_rest_of_the_line_and_line_continuations(root):
    reason = _reason(root, "models/a.obj", ("mtllib ../../my lib.mtl\n" + TRIANGLE_OBJ).encode())
    assert "material library refers outside the archive: ../../my lib.mtl" in reason
    reason = _reason(root, "models/b.obj", ("mtllib \\\n  ../../x.mtl\n" + TRIANGLE_OBJ).encode())
    assert "material library refers outside the archive" in reason


def test_discovery_never_opens_a_file_outside_the_archive(root, monkeypatch):
    (root.parent / "outside.mtl").write_text("newmtl a\nmap_Kd secret.png\n")
    (root / "models" / "m.obj").write_text("mtllib ../../outside.mtl\n" + TRIANGLE_OBJ)
    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        opened.append(os.path.realpath(file) if isinstance(file, (str, bytes, os.PathLike)) else file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    (asset,) = discover(root, use_manifest=False).assets
    reason = preflight(asset, root)
    outside = [p for p in opened if isinstance(p, str) and not p.startswith(os.path.realpath(root) + "/")]
    assert "outside the archive" in reason and opened and outside == []


def test_obj_keys_follow_the_texture_the_importer_would_load(root):
    (root / "models" / "m.mtl").write_text("newmtl a\nmap_Kd -o 0 0 0 .\\tex.png\n")
    obj = root / "models" / "m.obj"
    obj.write_text("mtllib m.mtl\n" + TRIANGLE_OBJ)
    (root / "models" / "tex.png").write_bytes(_png_header(4, 4))
    first = object_key(obj, "obj", root)
    (root / "models" / "tex.png").write_bytes(_png_header(8, 8))
    assert object_key(obj, "obj", root) != first
    assert preflight(discover(root, use_manifest=False).assets[0], root) is None


def test_a_blend_without_a_blender_header_is_refused(root):
    assert "not a .blend file" in _reason(root, "models/x.blend", b"PK\3\4 not blender")


def test_real_windows_written_obj_and_gltf_pass(shared_dir):
    real = SHARED / "assets/real/assimp"
    for rel, fmt in (("OBJ/spider.obj", "obj"), ("glTF2/ClearCoat-glTF/ClearCoatTest.gltf", "gltf")):
        assert check(real / rel, fmt, real) is None, rel


# ---------------------------------------------------------------------------------------------------------------
# .blend and FBX: built with Blender itself, checked before the file opens (libraries) or inside the pass


_BUILD = """
import sys, bpy
out, secret = sys.argv[1], sys.argv[2]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add()
bpy.ops.wm.save_as_mainfile(filepath=out + "/lib.blend")
# A file linking the cube from lib.blend: the library is read as the file opens.
bpy.ops.wm.read_factory_settings(use_empty=True)
with bpy.data.libraries.load(out + "/lib.blend", link=True) as (src, dst):
    dst.objects = list(src.objects)
for obj in dst.objects:
    bpy.context.scene.collection.objects.link(obj)
bpy.ops.wm.save_as_mainfile(filepath=out + "/linked.blend")
# A cube whose material uses an unpacked image outside the archive, saved in a .blend and exported to FBX.
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add()
mat = bpy.data.materials.new("m")
mat.use_nodes = True
tex = mat.node_tree.nodes.new("ShaderNodeTexImage")
tex.image = bpy.data.images.load(secret)
mat.node_tree.links.new(tex.outputs["Color"], mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
bpy.context.object.data.materials.append(mat)
bpy.ops.wm.save_as_mainfile(filepath=out + "/outside_image.blend", relative_remap=False)  # keeps it absolute
bpy.ops.export_scene.fbx(filepath=out + "/outside_image.fbx", path_mode="ABSOLUTE", embed_textures=False)
bpy.ops.export_scene.fbx(filepath=out + "/relative_outside.fbx", path_mode="RELATIVE", embed_textures=False)
# The same with its texture beside it.
import shutil
shutil.copy(secret, out + "/tex.png")
tex.image.filepath = out + "/tex.png"
bpy.ops.export_scene.fbx(filepath=out + "/inside_image.fbx", path_mode="RELATIVE", embed_textures=False)
# A cube and a text whose font file lies outside (Blender's own fonts folder).
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.mesh.primitive_cube_add()
bpy.ops.object.text_add(location=(0, 0, 2))
font = bpy.utils.system_resource("DATAFILES") + "/fonts/lastresort.woff2"
bpy.context.object.data.font = bpy.data.fonts.load(font)
bpy.ops.wm.save_as_mainfile(filepath=out + "/outside_font.blend", relative_remap=False)
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("blender_built")
    archive = base / "archive"
    archive.mkdir()
    secret = base / "secret.png"
    from PIL import Image

    Image.new("RGB", (4, 4), (255, 0, 0)).save(secret)
    made = subprocess.run([sys.executable, "-c", _BUILD, str(archive), str(secret)], capture_output=True, text=True,
                          timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    return archive


@pytest.mark.slow
def test_a_blend_linking_a_library_is_refused_before_it_opens(built):
    assert ".blend links other .blend files" in check(built / "linked.blend", "blend", built)
    assert check(built / "lib.blend", "blend", built) is None


@pytest.mark.slow
@pytest.mark.parametrize("name, expected", [
    ("outside_image.blend", "image secret.png refers outside the archive"),
    ("outside_image.fbx", "FBX texture refers outside the archive"),
    ("outside_font.blend", "the file refers outside the archive: "),  # any external path Blender holds
])
def test_blend_and_fbx_images_outside_are_refused_in_the_sandboxed_pass(built, tmp_path, name, expected):
    from trellis2_worker.ingest import ingest
    from trellis2_worker.ingest.sandbox import landlock_abi

    folder = tmp_path / "in"
    folder.mkdir()
    data = (built / name).read_bytes()
    if name.endswith(".fbx"):
        # Blender's exporter writes RelativeFilename, which the importer keeps inside the folder; without it the
        # importer loads the absolute FileName (node names are length-prefixed: same length, same layout).
        assert b"RelativeFilename" in data
        data = data.replace(b"RelativeFilename", b"RelativeFilenamX")
    (folder / name).write_bytes(data)
    with pytest.raises(Exception, match="none of the 1 objects"):
        ingest(str(folder), tmp_path / "out", render=False, progress=False)
    report = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    (entry,) = report["objects"]
    assert expected in entry["reason"] and "outside the archive" in entry["reason"]
    assert ("Landlock" in entry["sandbox"]) == (landlock_abi() > 0) and report["sandbox"] == [entry["sandbox"]]


def _triangle_gltf(image_uri: str) -> dict:
    import base64

    import numpy as np

    data = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes() + \
        np.array([[0, 0], [1, 0], [0, 1]], np.float32).tobytes()
    return {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}], "images": [{"uri": image_uri}],
        "buffers": [{"byteLength": len(data),
                     "uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode()}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}, {"buffer": 0, "byteOffset": 36, "byteLength": 24}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                       "min": [0, 0, 0], "max": [1, 1, 0]},
                      {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"}],
    }


@pytest.mark.slow
def test_the_blender_pass_itself_refuses_an_outside_image_that_got_past_discovery(root, tmp_path):
    # Defence in depth: the pass is started on a glTF whose image lies outside, as if discovery had missed it.
    from trellis2_worker.ingest.discovery import Asset
    from trellis2_worker.ingest.pipeline import run_blender_pass

    path = root / "models" / "m.gltf"
    path.write_text(json.dumps(_triangle_gltf("../../secret.png")))
    assert "outside the archive" in check(path, "gltf", root)
    (tmp_path / "logs").mkdir()
    result = run_blender_pass(Asset("0" * 64, "models/m.gltf", "gltf", path.stat().st_size, path),
                              tmp_path / "dump", None, render_size=8, render_samples=1, threads=1, timeout_s=300,
                              memory_mb=4096, log_path=tmp_path / "logs" / "m.log", root=root)
    assert result["ok"] is False and "refers outside the archive" in result["reason"], result
    # The same file with the image inside goes through, its texture dumped.
    (root / "models" / "secret.png").write_bytes((root.parent / "secret.png").read_bytes())
    path.write_text(json.dumps(_triangle_gltf("secret.png")))
    result = run_blender_pass(Asset("1" * 64, "models/m.gltf", "gltf", path.stat().st_size, path),
                              tmp_path / "dump2", None, render_size=8, render_samples=1, threads=1, timeout_s=300,
                              memory_mb=4096, log_path=tmp_path / "logs" / "m2.log", root=root)
    assert result["ok"] and result["num_basecolor_tex"] == 1, result


@pytest.mark.slow
def test_an_fbx_texture_past_the_side_limit_is_refused_before_import(built, tmp_path):
    from trellis2_worker.ingest import ingest

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "inside_image.fbx").write_bytes((built / "inside_image.fbx").read_bytes())
    (folder / "tex.png").write_bytes((built / "tex.png").read_bytes())
    report = ingest(str(folder), tmp_path / "ok", render=False, progress=False)
    assert report["objects"][0]["num_basecolor_tex"] == 1  # the texture the FBX names is the one beside it
    # Another, whose texture is missing and named in a folder outside (../secret.png): the importer's recursive
    # search is not let loose there; the object goes through with the texture left out and a warning.
    (folder / "other.fbx").write_bytes((built / "relative_outside.fbx").read_bytes())
    (folder / "tex.png").unlink()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.png").write_bytes((built / "tex.png").read_bytes())  # what a search finds
    report = ingest(str(folder), tmp_path / "missing", render=False, progress=False)
    other = {o["file"]: o for o in report["objects"]}["other.fbx"]
    assert any("not searched for outside the archive" in w for w in other["warnings"]), other
    assert other["num_basecolor_tex"] == 0
    (folder / "other.fbx").unlink()
    (folder / "tex.png").write_bytes(_png_header(30000, 30000))
    with pytest.raises(Exception, match="none of the 1 objects"):
        ingest(str(folder), tmp_path / "big", render=False, progress=False)
    reason = json.loads((tmp_path / "big" / "ingest_report.json").read_text())["objects"][0]["reason"]
    assert f"over the {MAX_TEXTURE_SIDE}-pixel side limit" in reason and "FBX texture" in reason
