"""Test helpers for the O-Voxel tests: write meshes in the `ingest` dump format (DIR/dumps/<sha>/...) from synthetic
shapes or from real files read with trimesh, so these tests do not depend on Blender."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

GREY = {"baseColorFactor": [0.8, 0.8, 0.8, 1.0], "alphaFactor": 1.0, "metallicFactor": 0.0, "roughnessFactor": 0.5,
        "alphaMode": "OPAQUE", "alphaCutoff": 0.5, "baseColorTexture": None, "alphaTexture": None,
        "metallicTexture": None, "roughnessTexture": None}


def write_dump(dump_dir: Path, vertices, faces, uvs=None, has_uv=None, mat_ids=None, materials=(),
               images: dict | None = None) -> Path:
    dump_dir.mkdir(parents=True, exist_ok=True)
    faces = np.asarray(faces, dtype=np.int64)
    nf = len(faces)
    uvs = np.zeros((nf, 3, 2), np.float32) if uvs is None else np.asarray(uvs, np.float32)
    has_uv = (np.zeros(nf, bool) if has_uv is None else np.asarray(has_uv, bool))
    mat_ids = np.full(nf, -1, np.int32) if mat_ids is None else np.asarray(mat_ids, np.int32)
    np.savez(dump_dir / "mesh.npz", vertices=np.asarray(vertices, np.float32), faces=faces, uvs=uvs,
             has_uv=has_uv, mat_ids=mat_ids)
    (dump_dir / "materials.json").write_text(json.dumps(list(materials)))
    for name, img in (images or {}).items():
        img.save(dump_dir / name)
    return dump_dir


def cube_mesh():
    m = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    return m.vertices, m.faces


def sphere_mesh(subdivisions=4, radius=0.45):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return m.vertices, m.faces


def wavy_plane(n=40, size=0.9, amp=0.05, z=0.0):
    xs = np.linspace(-size / 2, size / 2, n + 1)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    Z = z + amp * np.sin(X * 7) * np.cos(Y * 5)
    v = np.stack([X, Y, Z], -1).reshape(-1, 3)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return v, f


def fin_mesh():
    """Non-manifold: three flat quads sharing one edge (the z axis), like pages of a book."""
    verts, faces = [], []
    for k, ang in enumerate([0.0, 2.0, 4.0]):
        d = np.array([np.cos(ang), np.sin(ang), 0.0]) * 0.4
        base = len(verts)
        verts += [[0, 0, -0.4], [0, 0, 0.4], list(d + [0, 0, 0.4]), list(d + [0, 0, -0.4])]
        faces += [[base, base + 1, base + 2], [base, base + 2, base + 3]]
    v = np.array(verts, np.float64)
    f = np.array(faces)
    # weld the shared edge's vertices so the edge is shared by six faces by index
    v_unique, inv = np.unique(v.round(9), axis=0, return_inverse=True)
    return v_unique, inv.reshape(-1)[f]


def blocks_texture(size=64, block=16, seed=0):
    """An RGB texture of large flat colour blocks (flat regions for colour checks)."""
    rng = np.random.default_rng(seed)
    cols = rng.integers(0, 256, ((size // block) ** 2, 3), dtype=np.uint8)
    img = np.zeros((size, size, 3), np.uint8)
    for i in range(size // block):
        for j in range(size // block):
            img[i * block:(i + 1) * block, j * block:(j + 1) * block] = cols[i * (size // block) + j]
    return Image.fromarray(img)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def trimesh_to_dump(path: Path, dump_dir: Path) -> Path:
    """A real file, read with trimesh, written as an ingest dump: glTF Y-up turned Z-up (x, -z, y) as Blender
    does, textures stored bottom row first (Blender's pixel order), metallic = B and roughness = G of the glTF
    metallicRoughness map."""
    scene = trimesh.load(str(path), force="scene")
    verts, faces, uvs, has_uv, mat_ids, materials, images = [], [], [], [], [], [], {}
    offset = 0
    for node in scene.graph.nodes_geometry:
        transform, gname = scene.graph[node]
        g = scene.geometry[gname]
        if not isinstance(g, trimesh.Trimesh) or len(g.faces) == 0:
            continue
        v = trimesh.transformations.transform_points(g.vertices, transform)
        v = np.stack([v[:, 0], -v[:, 2], v[:, 1]], 1)
        verts.append(v)
        faces.append(g.faces + offset)
        offset += len(v)
        uv = getattr(g.visual, "uv", None)
        if uv is not None and len(uv) == len(g.vertices):
            uvs.append(np.asarray(uv, np.float32)[g.faces])
            has_uv.append(np.ones(len(g.faces), bool))
        else:
            uvs.append(np.zeros((len(g.faces), 3, 2), np.float32))
            has_uv.append(np.zeros(len(g.faces), bool))
        mat = getattr(g.visual, "material", None)
        mat_ids.append(np.full(len(g.faces), len(materials), np.int32))
        m = dict(GREY)
        m["baseColorFactor"] = [1.0, 1.0, 1.0, 1.0]
        m["metallicFactor"] = 1.0
        m["roughnessFactor"] = 1.0
        if mat is not None and hasattr(mat, "baseColorFactor"):
            if mat.baseColorFactor is not None:
                m["baseColorFactor"] = (np.asarray(mat.baseColorFactor, float) / 255.0).tolist()
            if mat.metallicFactor is not None:
                m["metallicFactor"] = float(mat.metallicFactor)
            if mat.roughnessFactor is not None:
                m["roughnessFactor"] = float(mat.roughnessFactor)
            k = len(materials)
            if mat.baseColorTexture is not None:
                name = f"mat{k}_basecolor.png"
                images[name] = mat.baseColorTexture.convert("RGB").transpose(Image.FLIP_TOP_BOTTOM)
                m["baseColorTexture"] = {"image": name, "interpolation": "Linear", "extension": "REPEAT"}
            if mat.metallicRoughnessTexture is not None:
                mr = np.asarray(mat.metallicRoughnessTexture.convert("RGB"))[::-1]
                for key, ch, nm in (("metallicTexture", 2, "metallic"), ("roughnessTexture", 1, "roughness")):
                    name = f"mat{k}_{nm}.png"
                    images[name] = Image.fromarray(np.ascontiguousarray(mr[:, :, ch]), mode="L")
                    m[key] = {"image": name, "interpolation": "Linear", "extension": "REPEAT"}
        materials.append(m)
    return write_dump(dump_dir, np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs),
                      np.concatenate(has_uv), np.concatenate(mat_ids), materials, images)


def sha_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
