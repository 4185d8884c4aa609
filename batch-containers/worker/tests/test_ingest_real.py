"""The ingest stage on the real third-party assets in ../shared/assets/real (see its SOURCES.md).

Every file there is ingested (dumps only, to stay fast); a representative subset, one per importer, is also rendered.
Expected counts come from independent readers (trimesh, the glTF JSON, the .mtl files) or from what the file is
documented to hold, never from a previous run of this code.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trellis2_worker.ingest import ingest
from trellis2_worker.ingest.discovery import SUPPORTED_FORMATS
from trellis2_worker.render.cameras import R_MAX, R_MIN

pytestmark = pytest.mark.slow

# One file per importer family that matters for renders (glTF with full PBR, OBJ with thin parts and textures,
# an old .blend with several materials, binary FBX, PLY); every file is dumped by the other tests.
RENDERED = [
    "damaged-helmet/DamagedHelmet.gltf",
    "assimp/OBJ/spider.obj",
    "assimp/BLEND/4Cubes4Mats_248.blend",
    "assimp/FBX/phong_cube.fbx",
    "assimp/PLY/cube_uv.ply",
]
RENDER_SIZE = 32


def _zip_tree(src: Path, dest: Path, only: list[str] | None = None) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            if not path.is_file():
                continue
            # The chosen objects plus the other files of their folders (textures, buffers, .mtl).
            keep = only is None or rel in only or (
                path.suffix.lower().lstrip(".") not in SUPPORTED_FORMATS
                and any(rel.startswith(str(Path(o).parent) + "/") for o in only))
            if keep:
                zf.write(path, "real/" + rel)
    return dest


@pytest.fixture(scope="module")
def real(shared_dir) -> Path:
    return shared_dir / "assets" / "real"


@pytest.fixture(scope="module")
def dumped(real, tmp_path_factory):
    """All real assets, zipped, through ingest with dumps only."""
    tmp = tmp_path_factory.mktemp("ingest-real")
    archive = _zip_tree(real, tmp / "real.zip")
    out = tmp / "out"
    report = ingest(str(archive), out, render=False, workers=2, timeout_s=300)
    return out, report


@pytest.fixture(scope="module")
def rendered(real, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ingest-render")
    archive = _zip_tree(real, tmp / "subset.zip", only=RENDERED)
    out = tmp / "out"
    report = ingest(str(archive), out, render_size=RENDER_SIZE, render_samples=2, workers=2, timeout_s=300,
                    denoise="fast")
    return out, report


def _by_file(report) -> dict:
    return {o["file"].removeprefix("real/"): o for o in report["objects"]}


# ---------------------------------------------------------------------------------------------------------------
# Independent expectations


def _gltf_json(path: Path) -> dict:
    data = path.read_bytes()
    if path.suffix.lower() == ".glb":
        length = struct.unpack_from("<I", data, 12)[0]
        return json.loads(data[20:20 + length])
    return json.loads(data)


def _expected_faces(path: Path) -> int:
    """Triangles as trimesh reads them. Blender's STL and glTF importers (the latter with merge_vertices, as the
    reference calls it) merge coincident vertices and drop the triangles that collapse; OBJ and PLY keep them."""
    import trimesh

    mesh = trimesh.load(path, force="mesh", process=False)
    if path.suffix.lower() in (".obj", ".ply"):
        return len(mesh.faces)
    key = np.round(np.asarray(mesh.vertices) * 1e6).astype(np.int64)
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    f = inverse.ravel()[mesh.faces]
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    return int((~degenerate).sum())


def _obj_materials(obj: Path) -> dict[str, str | None]:
    """The materials an OBJ uses (Blender creates only those) -> its map_Kd texture file, if that file exists."""
    text = obj.read_text(errors="replace").splitlines()
    used = {ln.split(None, 1)[1].strip() for ln in text if ln.startswith("usemtl ")}
    materials: dict[str, str | None] = {}
    current = None
    for lib in [name for ln in text if ln.startswith("mtllib") for name in ln.split()[1:]]:
        for ln in (obj.parent / lib).read_text(errors="replace").splitlines():
            ln = ln.strip()
            if ln.startswith("newmtl"):
                current = ln.split(None, 1)[1].strip()
                if current in used:
                    materials[current] = None
            elif ln.lower().startswith("map_kd") and current in used:
                tex = obj.parent / ln.split()[-1].replace("\\", "/")
                materials[current] = tex.name if tex.is_file() else None
    return materials


def _expected_failure(real: Path, rel: str) -> str | None:
    """The reason fragment a file must fail with, or None when it must succeed."""
    path = real / rel
    if path.suffix.lower() == ".fbx" and not path.read_bytes().startswith(b"Kaydara FBX Binary"):
        return "ASCII FBX"
    if rel == "assimp/glTF2/MissingBin/BoxTextured.gltf":
        return "missing buffer"
    if rel == "assimp/glTF2/IndexOutOfRange/IndexOutOfRange.gltf":
        return "out of bounds"
    if rel == "assimp/OBJ/point_cloud.obj":
        return "no faces"
    return None


# Facts the file names and SOURCES.md state, for the formats no independent reader here can open.
DOCUMENTED = {
    "assimp/BLEND/4Cubes4Mats_248.blend": {"num_faces": 4 * 12, "num_materials": 4},
    "assimp/BLEND/BlenderDefault_276.blend": {"num_faces": 12, "num_vertices": 8},
    "assimp/BLEND/TexturedCube_ImageGlob_248.blend": {"num_faces": 12},
    "assimp/BLEND/TexturedPlane_ImageUvPacked_248.blend": {"num_faces": 2, "num_vertices": 4},
    "assimp/FBX/phong_cube.fbx": {"num_faces": 12, "num_vertices": 8, "num_materials": 1},
}


# ---------------------------------------------------------------------------------------------------------------


def test_every_real_file_is_reported_as_succeeded_or_failed_with_its_reason(real, dumped):
    out, report = dumped
    files = sorted(p.relative_to(real).as_posix() for p in real.rglob("*")
                   if p.is_file() and p.suffix.lower().lstrip(".") in SUPPORTED_FORMATS)
    objects = _by_file(report)
    assert sorted(objects) == files  # MissingBin's .gltf equals BoxTextured's, but not with its buffer: kept apart
    assert report["objects_found"] == len(files)
    failed = {f["file"].removeprefix("real/"): f["reason"] for f in report["failed"]}
    for rel in files:
        expected = _expected_failure(real, rel)
        if expected is None:
            assert objects[rel]["status"] == "succeeded", (rel, objects[rel].get("reason"))
        else:
            assert rel in failed, f"{rel} should have failed with {expected!r}"
            assert expected.lower() in failed[rel].lower(), (rel, failed[rel])
            assert "\n" not in failed[rel]
    assert report["succeeded"] == len(files) - len(failed)
    assert json.loads((out / "ingest_report.json").read_text())["succeeded"] == report["succeeded"]


def test_textures_are_flagged_missing_only_when_they_are(real, dumped):
    """The OBJ spider's textures lie beside it (its MTL writes them as `.\\Name.jpg`); the FBX spider names the
    same images at its author's D:/ paths, which the archive lacks (docs/rendering.md#data-quality)."""
    _, report = dumped
    objects = _by_file(report)
    assert objects["assimp/OBJ/spider.obj"]["quality"]["images_missing"] == 0
    assert "textures_missing" not in objects["assimp/OBJ/spider.obj"]["flags"]
    assert objects["assimp/FBX/spider.fbx"]["quality"]["images_missing"] == 4
    assert "textures_missing" in objects["assimp/FBX/spider.fbx"]["flags"]
    assert objects["damaged-helmet/DamagedHelmet.gltf"]["flags"] == []
    # every file of the archive is in the report, as an object or another file
    listed = [o["file"] for o in report["objects"]] + [f["file"] for f in report["other_files"]]
    assert sorted(f.removeprefix("real/") for f in listed) == sorted(
        p.relative_to(real).as_posix() for p in real.rglob("*") if p.is_file())


def test_metadata_csv_has_a_row_per_object_with_path_format_size_and_status(real, dumped):
    import csv

    out, report = dumped
    rows = list(csv.DictReader(open(out / "metadata.csv")))
    assert len(rows) == report["objects_found"]
    for row in rows:
        rel = row["local_path"].removeprefix("real/")
        assert len(row["sha256"]) == 64
        assert row["format"] == Path(rel).suffix.lower().lstrip(".")
        assert int(row["size"]) == (real / rel).stat().st_size
        ok = row["mesh_dumped"] == "True"
        assert ok == (_expected_failure(real, rel) is None)
        assert (out / "dumps" / row["sha256"] / "mesh.npz").is_file() == ok
        if ok:
            assert int(row["num_faces"]) > 0 and int(row["num_vertices"]) > 0
        else:
            assert row["ingest_error"]


def test_dump_counts_match_independent_readers(real, dumped):
    out, report = dumped
    objects = _by_file(report)
    checked = 0
    for rel, obj in objects.items():
        if obj["status"] != "succeeded":
            continue
        path = real / rel
        mesh = np.load(out / "dumps" / obj["sha256"] / "mesh.npz", allow_pickle=False)
        materials = json.loads((out / "dumps" / obj["sha256"] / "materials.json").read_text())
        v, f = mesh["vertices"], mesh["faces"]
        assert v.dtype == np.float32 and v.shape == (obj["num_vertices"], 3)
        assert f.dtype == np.int64 and f.shape == (obj["num_faces"], 3)
        assert f.min() >= 0 and f.max() < len(v)
        assert mesh["uvs"].shape == (len(f), 3, 2) and mesh["has_uv"].shape == (len(f),)
        assert mesh["mat_ids"].dtype == np.int32 and mesh["mat_ids"].max() < len(materials)
        assert len(materials) == obj["num_materials"]
        # Scene normalisation (docs/rendering.md#blender-scene-normalisation): largest extent 1, centred. It uses
        # transformed local bound boxes, which can only overestimate the extent of rotated parts, so the vertices may
        # fall a little short of 1.
        extent = v.max(0) - v.min(0)
        assert 0.9 < extent.max() < 1.0 + 1e-3, rel
        assert np.abs(v).max() <= 0.5 + 1e-3, rel
        fmt = path.suffix.lower().lstrip(".")
        if fmt in ("glb", "gltf", "obj", "ply", "stl"):
            expected = _expected_faces(path)
            assert abs(obj["num_faces"] - expected) <= max(1, expected // 1000), (rel, obj["num_faces"], expected)
            checked += 1
        if fmt in ("glb", "gltf"):
            doc = _gltf_json(path)
            used = {p["material"] for m in doc.get("meshes", []) for p in m["primitives"] if "material" in p}
            assert obj["num_materials"] == len(used), rel
            pbr = [doc["materials"][i].get("pbrMetallicRoughness", {}) for i in sorted(used)]
            assert obj["num_basecolor_tex"] == sum("baseColorTexture" in p for p in pbr), rel
            assert obj["num_metallic_tex"] == sum("metallicRoughnessTexture" in p for p in pbr), rel
            assert obj["num_roughness_tex"] == sum("metallicRoughnessTexture" in p for p in pbr), rel
            assert (mesh["has_uv"].all()) == all("TEXCOORD_0" in p["attributes"]
                                                 for m in doc["meshes"] for p in m["primitives"])
        if fmt == "obj":
            used = _obj_materials(path)
            assert obj["num_materials"] == len(used), rel
            assert obj["num_basecolor_tex"] == sum(t is not None for t in used.values()), rel
        for key, value in DOCUMENTED.get(rel, {}).items():
            assert obj[key] == value, (rel, key)
        # Texture files named by materials.json are PNGs beside it, one channel for scalar maps.
        for m in materials:
            for key, mode in (("baseColorTexture", "RGB"), ("metallicTexture", "L"), ("roughnessTexture", "L"),
                              ("alphaTexture", "L")):
                if m[key] is not None:
                    assert Image.open(out / "dumps" / obj["sha256"] / m[key]["image"]).mode == mode
    assert checked >= 12
    # SOURCES.md: spider.fbx is the same spider as spider.obj.
    assert objects["assimp/FBX/spider.fbx"]["num_faces"] == objects["assimp/OBJ/spider.obj"]["num_faces"]


def test_damaged_helmet_dump_has_its_full_pbr_material(real, dumped):
    out, report = dumped
    obj = _by_file(report)["damaged-helmet/DamagedHelmet.gltf"]
    (mat,) = json.loads((out / "dumps" / obj["sha256"] / "materials.json").read_text())
    base = np.asarray(Image.open(out / "dumps" / obj["sha256"] / mat["baseColorTexture"]["image"]))
    albedo = np.asarray(Image.open(real / "damaged-helmet" / "Default_albedo.jpg").convert("RGB"))
    # Stored bottom-to-top as Blender holds pixels (the reference's row order); the values are the source's.
    assert base.shape == albedo.shape
    assert np.abs(base[::-1].astype(int) - albedo.astype(int)).mean() < 1.0
    metal_rough = np.asarray(Image.open(real / "damaged-helmet" / "Default_metalRoughness.jpg").convert("RGB"))
    metallic = np.asarray(Image.open(out / "dumps" / obj["sha256"] / mat["metallicTexture"]["image"]))
    roughness = np.asarray(Image.open(out / "dumps" / obj["sha256"] / mat["roughnessTexture"]["image"]))
    assert np.abs(metallic[::-1].astype(int) - metal_rough[..., 2]).mean() < 1.0  # glTF: metal in blue
    assert np.abs(roughness[::-1].astype(int) - metal_rough[..., 1]).mean() < 1.0  # roughness in green
    assert mat["alphaMode"] == "OPAQUE" and mat["baseColorFactor"][:3] == [1.0, 1.0, 1.0]


def _project(points: np.ndarray, frame: dict, size: int) -> np.ndarray:
    c2w = np.asarray(frame["transform_matrix"], float)
    w2c = np.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    focal = 1 / np.tan(frame["camera_angle_x"] / 2)
    x = cam[:, 0] / -cam[:, 2] * focal
    y = cam[:, 1] / -cam[:, 2] * focal
    return np.stack([(x + 1) / 2 * size, (1 - y) / 2 * size], 1)


def test_condition_renders_cover_the_object_from_the_reference_cameras(real, rendered):
    out, report = rendered
    objects = _by_file(report)
    assert sorted(objects) == sorted(RENDERED)
    for rel in RENDERED:
        obj = objects[rel]
        assert obj["status"] == "succeeded", (rel, obj.get("reason"))
        folder = out / "renders_cond" / obj["sha256"]
        transforms = json.loads((folder / "transforms.json").read_text())
        assert transforms["aabb"] == [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]
        assert len(transforms["frames"]) == 16
        vertices = np.load(out / "dumps" / obj["sha256"] / "mesh.npz")["vertices"]
        pitches = []
        for i, frame in enumerate(transforms["frames"]):
            assert frame["file_path"] == f"{i:03d}.png"
            image = Image.open(folder / frame["file_path"])
            assert image.mode == "RGBA" and image.size == (RENDER_SIZE, RENDER_SIZE)
            alpha = np.asarray(image)[..., 3]
            assert alpha[0].max() == 0 or alpha[-1].max() == 0  # transparent background, object inside the frame
            c2w = np.asarray(frame["transform_matrix"])
            position = c2w[:3, 3]
            radius = np.linalg.norm(position)
            assert R_MIN - 1e-3 <= radius <= R_MAX + 1e-3
            # The bounding sphere of the unit cube fills the view exactly (docs/rendering.md#cameras).
            assert np.sin(frame["camera_angle_x"] / 2) * radius == pytest.approx(np.sqrt(3) / 2, rel=1e-4)
            assert np.dot(-c2w[:3, 2], -position / radius) == pytest.approx(1.0, abs=1e-4)  # looks at the origin
            pitches.append(np.arcsin(position[2] / radius))
            # Every vertex projects inside the silhouette: the alpha covers the object, in the dump's frame.
            # (Thin parts, such as the spider's legs, can fall between a small render's samples: allow a few.)
            uv = _project(vertices, frame, RENDER_SIZE)
            px = np.clip(uv.astype(int), 0, RENDER_SIZE - 1)
            padded = np.pad(alpha > 0, 1)
            grown = np.zeros_like(alpha, bool)
            for dy in range(3):
                for dx in range(3):
                    grown |= padded[dy:dy + RENDER_SIZE, dx:dx + RENDER_SIZE]
            assert grown[px[:, 1], px[:, 0]].mean() > 0.9, (rel, i)
            # ...and nothing but the object is opaque: the silhouette stays within the projected vertices' box.
            ys, xs = np.nonzero(alpha > 0)
            assert xs.min() >= uv[:, 0].min() - 1.5 and xs.max() <= uv[:, 0].max() + 0.5, (rel, i)
            assert ys.min() >= uv[:, 1].min() - 1.5 and ys.max() <= uv[:, 1].max() + 0.5, (rel, i)
        # A quarter of the views lie below the horizon (docs/rendering.md#cameras).
        assert 2 <= sum(p < 0 for p in pitches) <= 6, rel


def _grown(mask: np.ndarray) -> np.ndarray:
    """The mask and its 8 neighbours: one pixel of tolerance."""
    padded = np.pad(mask, 1)
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
    return out


def test_the_preview_rasteriser_sees_what_blender_rendered_from_each_camera(rendered):
    """The texture stage's render PSNR draws generations from these cameras (evaluate/preview.render_camera): the
    dumped mesh drawn from each frame's transform and fov lies on the pixels Blender's alpha covers, and covers them,
    to within a pixel (thin parts such as the spider's legs are partial pixels either way)."""
    from trellis2_worker.evaluate.preview import render_camera

    out, report = rendered
    for rel in RENDERED:
        obj = _by_file(report)[rel]
        folder = out / "renders_cond" / obj["sha256"]
        dump = np.load(out / "dumps" / obj["sha256"] / "mesh.npz")
        for i, frame in enumerate(json.loads((folder / "transforms.json").read_text())["frames"]):
            alpha = np.asarray(Image.open(folder / frame["file_path"]))[..., 3]
            drawn = render_camera(dump["vertices"], dump["faces"], frame["transform_matrix"],
                                  frame["camera_angle_x"], size=RENDER_SIZE).min(axis=2) < 255
            solid = alpha >= 128
            assert drawn.any() and solid.any(), (rel, i)
            # at 32² and 2 samples, a leg thinner than a pixel can miss Blender's samples (as in the test above)
            assert (drawn & _grown(alpha > 0)).sum() >= 0.9 * drawn.sum(), (rel, i)
            assert (solid & _grown(drawn)).sum() >= 0.9 * solid.sum(), (rel, i)


def test_damaged_helmet_renders_show_its_texture(real, rendered):
    out, report = rendered
    obj = _by_file(report)["damaged-helmet/DamagedHelmet.gltf"]
    folder = out / "renders_cond" / obj["sha256"]
    pixels = np.concatenate([np.asarray(Image.open(folder / f"{i:03d}.png")).reshape(-1, 4) for i in range(16)])
    covered = pixels[pixels[:, 3] > 250, :3].astype(float)
    albedo = np.asarray(Image.open(real / "damaged-helmet" / "Default_albedo.jpg").convert("RGB"), float)
    mean_render, mean_albedo = covered.mean(0), albedo.reshape(-1, 3).mean(0)
    # Lighting varies per view, so allow a broad brightness band; an untextured (white/grey) helmet falls outside.
    assert np.abs(mean_render - mean_albedo).max() < 40, (mean_render, mean_albedo)
