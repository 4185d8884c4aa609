"""A small, deterministic set of sample assets the project makes itself (the README demo trains on it).

Textured shapes (an image texture through UVs, as .glb and as .obj + .mtl + .png) and plain-coloured PBR shapes
(.glb with base colour / metallic / roughness factors), zipped with fixed timestamps so the bytes never change.
"""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np

_EPOCH = (2024, 1, 1, 0, 0, 0)
_PALETTE = [
    (220, 60, 50), (40, 120, 220), (250, 190, 40), (60, 170, 90), (150, 80, 200), (240, 120, 30),
    (30, 180, 180), (200, 200, 200),
]


def _texture(index: int, size: int = 128):
    """A checker of two palette colours with a stripe, different per index."""
    from PIL import Image

    a = np.array(_PALETTE[index % len(_PALETTE)], np.uint8)
    b = np.array(_PALETTE[(index + 3) % len(_PALETTE)], np.uint8)
    cells = 4 + index % 5
    y, x = np.mgrid[0:size, 0:size]
    checker = ((x * cells // size) + (y * cells // size)) % 2 == 0
    img = np.where(checker[..., None], a, b)
    img[(y // 6) % (3 + index % 4) == 0] //= 2  # stripes make each texture, and its orientation, distinct
    return Image.fromarray(img.astype(np.uint8), "RGB")


def _box_with_uv(extents):
    """A box whose six faces each carry the whole [0,1]^2 texture (trimesh's box has no UVs)."""
    import trimesh

    ex = np.asarray(extents, float) / 2
    verts, faces, uvs = [], [], []
    for axis in range(3):
        for sign in (-1, 1):
            u_ax, v_ax = [a for a in range(3) if a != axis]
            corners = []
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = np.zeros(3)
                p[axis] = sign * ex[axis]
                p[u_ax] = (2 * du - 1) * ex[u_ax]
                p[v_ax] = (2 * dv - 1) * ex[v_ax]
                corners.append(p)
                uvs.append((du, dv))
            base = len(verts)
            verts.extend(corners)
            quad = [[base, base + 1, base + 2], [base, base + 2, base + 3]]
            normal = np.zeros(3)
            normal[axis] = sign
            tri = np.array(corners[:3])
            if np.dot(np.cross(tri[1] - tri[0], tri[2] - tri[0]), normal) < 0:
                quad = [[f[0], f[2], f[1]] for f in quad]
            faces.extend(quad)
    mesh = trimesh.Trimesh(np.array(verts), np.array(faces), process=False)
    return mesh, np.array(uvs, float)


def _sphere_with_uv(radius: float, rings: int = 24, segments: int = 48):
    import trimesh

    verts, uvs, faces = [], [], []
    for i in range(rings + 1):
        theta = math.pi * i / rings
        for j in range(segments + 1):  # a duplicated seam column keeps the UVs continuous
            phi = 2 * math.pi * j / segments
            verts.append((radius * math.sin(theta) * math.cos(phi), radius * math.sin(theta) * math.sin(phi),
                          radius * math.cos(theta)))
            uvs.append((j / segments, 1 - i / rings))
    for i in range(rings):
        for j in range(segments):
            a = i * (segments + 1) + j
            b = a + segments + 1
            if i != 0:
                faces.append((a, b, a + 1))
            if i != rings - 1:
                faces.append((a + 1, b, b + 1))
    mesh = trimesh.Trimesh(np.array(verts), np.array(faces), process=False)
    return mesh, np.array(uvs, float)


def _textured(mesh, uv, image):
    import trimesh

    material = trimesh.visual.material.SimpleMaterial(image=image)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=image, material=material)
    return mesh


def _coloured(mesh, index: int):
    import trimesh

    rgb = _PALETTE[index % len(_PALETTE)]
    material = trimesh.visual.material.PBRMaterial(
        baseColorFactor=[rgb[0], rgb[1], rgb[2], 255],
        metallicFactor=round(0.1 * (index % 4), 2),
        roughnessFactor=round(0.4 + 0.1 * (index % 5), 2),
    )
    mesh.visual = trimesh.visual.TextureVisuals(material=material)
    return mesh


def _sample_files(index: int) -> dict[str, bytes]:
    """The files of sample number `index` (relative path -> bytes)."""
    import trimesh

    kind = index % 6
    scale = 1.0 + 0.15 * (index // 6)
    if kind == 0:
        mesh, uv = _box_with_uv([1.0 * scale, 0.7, 0.5])
        return {f"textured_box_{index:02d}.glb": _textured(mesh, uv, _texture(index)).export(file_type="glb")}
    if kind == 1:
        mesh, uv = _sphere_with_uv(0.5 * scale)
        return {f"textured_sphere_{index:02d}.glb": _textured(mesh, uv, _texture(index)).export(file_type="glb")}
    if kind == 2:
        mesh, uv = _box_with_uv([0.6, 0.6 * scale, 1.0])
        return _obj_files(f"crate_{index:02d}", mesh, uv, _texture(index))
    if kind == 3:
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5 * scale)
    elif kind == 4:
        mesh = trimesh.creation.cone(radius=0.4 * scale, height=1.0, sections=32)
    else:
        mesh = trimesh.creation.torus(major_radius=0.5 * scale, minor_radius=0.15, major_sections=32,
                                      minor_sections=16)
    name = ("ico", "cone", "torus")[kind - 3]
    return {f"{name}_{index:02d}.glb": _coloured(mesh, index).export(file_type="glb")}


def _obj_files(stem: str, mesh, uv, image) -> dict[str, bytes]:
    """An OBJ with its own .mtl and PNG texture, written by hand so the file names are fixed."""
    lines = [f"mtllib {stem}.mtl", f"o {stem}"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    lines.append(f"usemtl {stem}")
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in mesh.faces]
    mtl = [f"newmtl {stem}", "Kd 1.000000 1.000000 1.000000", "Ks 0.000000 0.000000 0.000000", "d 1.0",
           f"map_Kd {stem}.png"]
    png = io.BytesIO()
    image.save(png, format="PNG")
    return {
        f"{stem}/{stem}.obj": ("\n".join(lines) + "\n").encode(),
        f"{stem}/{stem}.mtl": ("\n".join(mtl) + "\n").encode(),
        f"{stem}/{stem}.png": png.getvalue(),
    }


def make_samples(out: str | Path, count: int = 8) -> dict:
    """Writes `count` sample objects into the zip `out`; returns {"out", "objects", "files"}."""
    if count < 1:
        raise ValueError("count must be at least 1")
    files: dict[str, bytes] = {}
    objects = []
    for i in range(count):
        sample = _sample_files(i)
        files.update(sample)
        objects.append(next(p for p in sample if not p.endswith((".mtl", ".png"))))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return {"out": str(out), "objects": objects, "files": len(files)}
