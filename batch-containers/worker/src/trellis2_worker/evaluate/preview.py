"""Small CPU pictures of generations for the preview panel: a mesh (or voxels) seen from a few directions, and the
panel that puts a condition image beside the base's and the adapter's generations with a caption under each.

Rendered by splatting dense surface samples through a z-buffer (numpy), orthographically from an azimuth and
elevation, or in perspective from a condition render's camera (transforms.json); shaded by the Lambert term of their
face normals (two-sided: generated meshes need not wind consistently), optionally tinted by per-face colours. Written by
hand because trimesh's scene rendering needs an OpenGL context (pyglet), which a headless Batch job does not have,
and Blender is far too slow to start for a thumbnail.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

TILE = 192  # pixels per picture in the panel
VIEWS = ((30.0, 20.0), (210.0, 20.0))  # (azimuth, elevation) in degrees: front-ish and back-ish
_LIGHT = np.array([0.3, -0.5, 0.8])
_BACKGROUND = 255
_MAX_SAMPLES = 2_000_000


def _view_matrix(azimuth: float, elevation: float) -> np.ndarray:
    """Rows: the camera's right, up and forward axes in the z-up world (looking at the origin from outside)."""
    a, e = np.radians(azimuth), np.radians(elevation)
    forward = -np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])  # from the eye to the origin
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.stack([right, up, forward])


def render_mesh(vertices, faces, size: int = TILE, azimuth: float = VIEWS[0][0], elevation: float = VIEWS[0][1],
                face_colors=None, extent: float = 0.55, seed: int = 0) -> np.ndarray:
    """An orthographic (size, size, 3) uint8 picture of the mesh inside [-extent, extent]³ (the unit cube's frame
    plus a margin), on white. `face_colors`: (F, 3) floats in [0, 1] or uint8 (default light grey)."""
    rot = _view_matrix(azimuth, elevation)

    def project(points):
        cam = points @ rot.T
        return cam[:, 0] / extent, cam[:, 1] / extent, cam[:, 2]

    return _splat(vertices, faces, size, project, rot, 2 * extent / size, face_colors, True, seed)


def render_camera(vertices, faces, transform_matrix, fov: float, size: int = TILE, face_colors=None,
                  shade: bool = False, seed: int = 0) -> np.ndarray:
    """A perspective (size, size, 3) uint8 picture from a condition render's camera, on white: `transform_matrix`
    its 4×4 camera-to-world matrix (Blender's camera looks down its -Z with +Y up), `fov` its square field of view in
    radians (transforms.json's `camera_angle_x`), so the picture lines up with that render pixel for pixel. Unshaded
    by default: the flat base colour, what the texture stage's render PSNR compares with the condition render."""
    project, rot, pixel = _camera(transform_matrix, fov, size)
    return _splat(vertices, faces, size, project, rot, pixel, face_colors, shade, seed)


def camera_face_ids(vertices, faces, transform_matrix, fov: float, size: int = TILE, seed: int = 0) -> np.ndarray:
    """The (size, size) index of the face `render_camera` shows at each pixel, -1 where it shows the background:
    one pass of the z-buffer for a mesh coloured several ways (`colour_faces`)."""
    project, _, pixel = _camera(transform_matrix, fov, size)
    ids = np.full(size * size, -1, np.int64)
    hit = _visible(vertices, faces, size, project, pixel, seed)
    if hit is not None:
        ids[hit[0]] = hit[1]
    return ids.reshape(size, size)


def colour_faces(face_ids, face_colors) -> np.ndarray:
    """The unshaded (H, W, 3) uint8 picture of `camera_face_ids` in per-face colours (grey when None), on white."""
    ids = np.asarray(face_ids)
    img = np.full((*ids.shape, 3), _BACKGROUND, np.uint8)
    shown = ids >= 0
    img[shown] = np.clip(_face_base(face_colors, ids[shown]) * 255, 0, 255).astype(np.uint8)
    return img


def _camera(transform_matrix, fov: float, size: int):
    """(project, rotation, pixel) of a Blender camera for `_splat`."""
    m = np.asarray(transform_matrix, np.float64)
    axes, eye = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0), m[:3, 3]
    half = np.tan(fov / 2)
    rot = np.stack([axes[:, 0], axes[:, 1], -axes[:, 2]])  # right, up, forward (as _view_matrix's rows)

    def project(points):
        cam = (points - eye) @ rot.T
        depth = np.where(cam[:, 2] > 1e-6, cam[:, 2], np.nan)  # behind the eye: dropped as off the picture
        return cam[:, 0] / (depth * half), cam[:, 1] / (depth * half), depth

    # the pixel's footprint at the origin (the object's centre) sets the sample density
    return project, rot, 2 * max(float(np.linalg.norm(eye)), 1e-3) * half / size


def _visible(vertices, faces, size: int, project, pixel: float, seed: int):
    """(pixel indices, the face seen at each, mesh) of dense surface samples projected by `project` (points -> x, y
    in [-1, 1] and depth, NaN when not visible), the nearest per pixel; None for an empty mesh. `pixel` is the
    world size of a pixel on the surface."""
    import trimesh

    mesh = trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)
    if len(mesh.faces) == 0 or mesh.area <= 0:
        return None
    # >= 8 samples per pixel wherever the surface faces the camera (fewer where it is seen edge-on, which shows as a
    # thinner line anyway), so the splats leave practically no holes; capped for huge generated meshes.
    count = int(min(_MAX_SAMPLES, max(size * size, 8 * mesh.area / pixel**2)))
    points, face_idx = trimesh.sample.sample_surface(mesh, count, seed=seed)
    x, y, depth = project(points)
    with np.errstate(invalid="ignore"):
        px = np.floor((x + 1) * 0.5 * size)
        py = np.floor((1 - y) * 0.5 * size)
        keep = np.isfinite(px) & np.isfinite(py) & (px >= 0) & (px < size) & (py >= 0) & (py < size)
    pix = py[keep].astype(np.int64) * size + px[keep].astype(np.int64)
    depth = depth[keep]
    order = np.lexsort((depth, pix))  # per pixel, the nearest sample first
    first = order[np.unique(pix[order], return_index=True)[1]]
    return pix[first], face_idx[keep][first], mesh


def _face_base(face_colors, face_ids) -> np.ndarray:
    if face_colors is None:
        return np.full((len(face_ids), 3), 0.8)
    fc = np.asarray(face_colors)
    fc = fc / 255.0 if fc.dtype == np.uint8 else fc.astype(np.float64)
    return np.clip(fc[face_ids, :3], 0, 1)


def _splat(vertices, faces, size: int, project, rot: np.ndarray, pixel: float, face_colors, shade: bool,
           seed: int) -> np.ndarray:
    """The picture of `_visible`'s samples, in face colours, Lambert-shaded when `shade`."""
    img = np.full((size, size, 3), _BACKGROUND, np.uint8)
    hit = _visible(vertices, faces, size, project, pixel, seed)
    if hit is None:
        return img
    pix, face_ids, mesh = hit
    if shade:
        normals = np.asarray(mesh.face_normals)[face_ids] @ rot.T
        light = _LIGHT / np.linalg.norm(_LIGHT)
        shading = 0.25 + 0.75 * np.abs(normals @ light)
    else:
        shading = np.ones(len(face_ids))
    flat = img.reshape(-1, 3)
    flat[pix] = np.clip(_face_base(face_colors, face_ids) * shading[:, None] * 255, 0, 255).astype(np.uint8)
    return img


def render_occupancy(occupancy, size: int = TILE, azimuth: float = VIEWS[0][0],
                     elevation: float = VIEWS[0][1]) -> np.ndarray:
    """The occupied cells of a (R, R, R) grid over the unit cube [-0.5, 0.5]³, rendered as `render_mesh` renders
    the cells' outer faces (those facing an empty cell: inner walls would show through at the pixel scale)."""
    vertices, faces = occupancy_surface(occupancy)
    return render_mesh(vertices, faces, size, azimuth, elevation)


# Per axis direction: the quad's four corners as offsets from the cell's minimum corner, wound outwards.
_QUADS = {
    (1, 0, 0): ((1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)), (-1, 0, 0): ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)),
    (0, 1, 0): ((0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)), (0, -1, 0): ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)),
    (0, 0, 1): ((0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)), (0, 0, -1): ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)),
}


def occupancy_surface(occupancy) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of the faces between occupied and empty cells of a (R, R, R) grid, in [-0.5, 0.5]³."""
    occ = np.asarray(occupancy, bool)
    r = occ.shape[0]
    padded = np.pad(occ, 1)
    cells = np.argwhere(occ)
    verts, tris = [], []
    for d, corners in _QUADS.items():
        n = cells + 1 + np.array(d)
        exposed = cells[~padded[n[:, 0], n[:, 1], n[:, 2]]]
        if not len(exposed):
            continue
        quad = exposed[:, None, :] + np.array(corners)[None]               # (k, 4, 3) cell-grid corners
        base = sum(len(v) for v in verts)
        verts.append(quad.reshape(-1, 3))
        idx = base + 4 * np.arange(len(exposed))[:, None]
        tris.append(np.concatenate([idx + [0, 1, 2], idx + [0, 2, 3]]))
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    return np.concatenate(verts) / r - 0.5, np.concatenate(tris).astype(np.int64)


def _fit(image, size: int) -> np.ndarray:
    from PIL import Image

    if not hasattr(image, "convert"):  # an array: uint8 as is, floats as [0, 1]
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            arr = np.clip(arr * 255 if arr.dtype.kind == "f" else arr, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr)
    im = image
    if im.mode in ("RGBA", "LA"):  # condition renders are RGBA: show them on white like the generations
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    im = im.convert("RGB")
    scale = size / max(im.size)  # up or down: condition renders may be smaller than a tile
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    tile = Image.new("RGB", (size, size), (255, 255, 255))
    tile.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return np.asarray(tile)


def preview_panel(rows: Sequence[dict], tile: int = TILE) -> bytes:
    """A PNG: one row per object, `{"condition": image, "base": [views], "adapted": [views], "base_caption": str,
    "adapted_caption": str, "title": str}`; under the base's and the adapter's views their captions (the metrics)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line = 14
    caption_h = 3 * line + 6
    n_views = max(len(r["base"]) for r in rows)
    cols = 1 + 2 * n_views
    panel = Image.new("RGB", (cols * tile, len(rows) * (tile + caption_h) + line + 4), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    for c, head in enumerate(["condition"] + ["base"] * n_views + ["adapter"] * n_views):
        draw.text((c * tile + 4, 2), head, fill=(0, 0, 0), font=font)
    for r, row in enumerate(rows):
        top = line + 4 + r * (tile + caption_h)
        tiles = [row["condition"], *row["base"], *row["adapted"]]
        for c, image in enumerate(tiles):
            panel.paste(Image.fromarray(_fit(image, tile)), (c * tile, top))
        texts = [(0, row.get("title", "")), (1, row.get("base_caption", "")),
                 (1 + n_views, row.get("adapted_caption", ""))]
        for c, text in texts:
            for i, part in enumerate(_wrap(text, max(8, (n_views if c else 1) * tile // 6))[:3]):
                draw.text((c * tile + 4, top + tile + 2 + i * line), part, fill=(0, 0, 0), font=font)
    out = io.BytesIO()
    panel.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]
