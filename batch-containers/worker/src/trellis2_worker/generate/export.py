"""A generation as a textured GLB: cleaned and optionally simplified mesh, a UV atlas (xatlas), and PBR textures
(base colour + alpha, metallic-roughness) baked from the decoded attribute voxels (docs/pipeline.md, "Export")."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from .options import DEFAULT_DECIMATE, DEFAULT_TEXTURE_SIZE, TEXTURE_SIZES

ATLAS_PADDING = 2           # texels between charts, filled by the gutter dilation below
RASTER_CHUNK_TEXELS = 1 << 22  # candidate texels per rasterisation chunk (bounds the temporary memory)
# Attribute layout of the decoded texture voxels (the reference pipeline's pbr_attr_layout).
ATTR_LAYOUT = {"base_color": slice(0, 3), "metallic": slice(3, 4), "roughness": slice(4, 5), "alpha": slice(5, 6)}


class EmptyMeshError(ValueError):
    """Nothing of the mesh is left to export (no face survives the cleaning)."""


@dataclass
class GlbResult:
    data: bytes
    faces: int
    vertices: int
    texture_size: int


def clean_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Without degenerate or duplicate faces and unreferenced vertices."""
    import trimesh

    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)


def simplify(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric-error decimation (fast-simplification) down to about `target_faces`; unchanged when already below."""
    if target_faces <= 0 or len(faces) <= target_faces:
        return vertices, faces
    import fast_simplification

    v, f = fast_simplification.simplify(np.asarray(vertices, np.float32), np.asarray(faces, np.int64),
                                        target_count=int(target_faces))
    return np.asarray(v, np.float32), np.asarray(f, np.int64)


def uv_atlas(vertices: np.ndarray, faces: np.ndarray, texture_size: int):
    """(vertex map into the input vertices, faces, uvs in [0, 1]) of an xatlas chart atlas packed for the size."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.asarray(vertices, np.float32), np.asarray(faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = int(texture_size)
    pack.padding = ATLAS_PADDING
    atlas.generate(pack_options=pack)
    vmap, idx, uvs = atlas[0]
    return np.asarray(vmap, np.int64), np.asarray(idx, np.int64), np.asarray(uvs, np.float32)


def rasterize_uv(uvs: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """For every texel whose centre lies in a UV triangle: (face id [S, S] int64, -1 where none; barycentrics
    [S, S, 3]). Row 0 is v = 1 (the image's top), as the GLB writer expects for OpenGL-style uvs.

    Written here in numpy (per-triangle bounding boxes, edge functions) because the reference's rasteriser
    (nvdiffrast) needs CUDA, and this must run on CPU."""
    px = np.stack([uvs[:, 0] * size, (1.0 - uvs[:, 1]) * size], axis=1).astype(np.float64)
    tri = px[faces]                                                     # [F, 3, 2]
    lo = np.clip(np.floor(tri.min(axis=1) - 0.5).astype(np.int64), 0, size - 1)
    hi = np.clip(np.ceil(tri.max(axis=1) - 0.5).astype(np.int64), 0, size - 1)
    w = hi[:, 0] - lo[:, 0] + 1
    h = hi[:, 1] - lo[:, 1] + 1
    counts = w * h
    face_id = np.full((size, size), -1, np.int64)
    bary = np.zeros((size, size, 3), np.float32)
    start = 0
    n = len(faces)
    while start < n:
        # a chunk of faces whose candidate texels stay within RASTER_CHUNK_TEXELS (at least one face)
        cum = np.cumsum(counts[start:])
        stop = start + max(1, int(np.searchsorted(cum, RASTER_CHUNK_TEXELS, side="right")))
        fid = np.repeat(np.arange(start, stop), counts[start:stop])
        offs = np.arange(len(fid)) - np.repeat(np.cumsum(counts[start:stop]) - counts[start:stop], counts[start:stop])
        cx = lo[fid, 0] + offs % w[fid]
        cy = lo[fid, 1] + offs // w[fid]
        p = np.stack([cx + 0.5, cy + 0.5], axis=1)
        a, b, c = tri[fid, 0], tri[fid, 1], tri[fid, 2]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        ok = np.abs(area) > 1e-12
        safe = np.where(ok, area, 1.0)
        l0 = ((b[:, 0] - p[:, 0]) * (c[:, 1] - p[:, 1]) - (b[:, 1] - p[:, 1]) * (c[:, 0] - p[:, 0])) / safe
        l1 = ((c[:, 0] - p[:, 0]) * (a[:, 1] - p[:, 1]) - (c[:, 1] - p[:, 1]) * (a[:, 0] - p[:, 0])) / safe
        l2 = 1.0 - l0 - l1
        inside = ok & (l0 >= -1e-6) & (l1 >= -1e-6) & (l2 >= -1e-6)
        face_id[cy[inside], cx[inside]] = fid[inside]
        bary[cy[inside], cx[inside]] = np.stack([l0, l1, l2], axis=1)[inside].astype(np.float32)
        start = stop
    return face_id, bary


def bake_textures(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, voxel_coords: np.ndarray,
                  voxel_attrs: np.ndarray, resolution: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base colour RGBA, metallic-roughness RGB (G roughness, B metallic) as uint8 [S, S, C], covered mask).

    Each covered texel takes the attributes of the decoded voxel nearest to its surface point (scipy cKDTree over
    voxel centres): the voxels lie in a thin shell around the surface, so a trilinear lookup would mix in absent
    neighbours; at these resolutions a voxel is about a texel wide. Uncovered texels copy their nearest covered
    texel, so bilinear filtering and mipmaps see no dark seams at chart borders."""
    from scipy.ndimage import distance_transform_edt
    from scipy.spatial import cKDTree

    face_id, bary = rasterize_uv(uvs, faces, size)
    mask = face_id >= 0
    attrs = np.zeros((size, size, voxel_attrs.shape[1]), np.float32)
    if mask.any() and len(voxel_coords):
        f = faces[face_id[mask]]
        b = bary[mask]
        points = (vertices[f] * b[:, :, None]).sum(axis=1)
        centres = (voxel_coords.astype(np.float32) + 0.5) / resolution - 0.5
        _, nearest = cKDTree(centres).query(points, k=1)
        attrs[mask] = voxel_attrs[nearest]
        if not mask.all():
            _, (iy, ix) = distance_transform_edt(~mask, return_indices=True)
            attrs = attrs[iy, ix]
    attrs = np.clip(attrs * 255.0, 0, 255).round().astype(np.uint8)
    base = np.concatenate([attrs[..., ATTR_LAYOUT["base_color"]], attrs[..., ATTR_LAYOUT["alpha"]]], axis=-1)
    mr = np.concatenate([np.zeros_like(attrs[..., :1]), attrs[..., ATTR_LAYOUT["roughness"]],
                         attrs[..., ATTR_LAYOUT["metallic"]]], axis=-1)
    return base, mr, mask


def to_glb(vertices: np.ndarray, faces: np.ndarray, voxel_coords: np.ndarray, voxel_attrs: np.ndarray,
           resolution: int, texture_size: int = DEFAULT_TEXTURE_SIZE, decimate: int = DEFAULT_DECIMATE,
           progress=None) -> GlbResult:
    """The GLB bytes of a mesh in the unit cube (z up) with textures baked from the attribute voxels."""
    import trimesh
    from PIL import Image

    if texture_size not in TEXTURE_SIZES:
        raise ValueError(f"texture size must be one of {TEXTURE_SIZES}, got {texture_size}")
    step = progress or (lambda name: None)
    step("cleaning")
    v, f = clean_mesh(vertices, faces)
    if len(f) == 0:
        raise EmptyMeshError("the generated mesh has no faces that are not degenerate")
    step("simplifying")
    v, f = simplify(v, f, decimate)
    step("uv unwrapping")
    vmap, f_uv, uvs = uv_atlas(v, f, texture_size)
    v_uv = v[vmap]
    step("baking")
    base, mr, _ = bake_textures(v_uv, f_uv, uvs, voxel_coords, voxel_attrs, resolution, texture_size)
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(base, "RGBA"), baseColorFactor=[255, 255, 255, 255],
        metallicRoughnessTexture=Image.fromarray(mr, "RGB"), metallicFactor=1.0, roughnessFactor=1.0,
        # As the reference writes it: alpha is in the texture, the material opaque; winding is not consistent
        # across the dual-grid quads, hence double-sided.
        alphaMode="OPAQUE", doubleSided=True)
    # glTF is y-up: (x, y, z) -> (x, z, -y), as the reference's GLB export turns it.
    out_v = np.stack([v_uv[:, 0], v_uv[:, 2], -v_uv[:, 1]], axis=1)
    mesh = trimesh.Trimesh(out_v, f_uv, process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uvs, material=material))
    step("writing")
    buf = io.BytesIO()
    mesh.export(buf, file_type="glb")
    return GlbResult(buf.getvalue(), faces=int(len(f_uv)), vertices=int(len(out_v)), texture_size=texture_size)


def vxz_attrs(voxel_attrs: np.ndarray) -> dict[str, np.ndarray]:
    """The decoded attributes as the O-Voxel PBR channels (uint8), for `ovoxel.write_vxz`."""
    a = np.clip(np.asarray(voxel_attrs, np.float32) * 255.0, 0, 255).round().astype(np.uint8)
    return {name: np.ascontiguousarray(a[:, sl]) for name, sl in ATTR_LAYOUT.items()}
