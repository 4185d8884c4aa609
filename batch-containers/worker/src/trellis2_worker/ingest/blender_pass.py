"""The Blender pass for one asset, run in its own process (`python -m trellis2_worker.ingest.blender_pass ...`).

Imports the file with bpy, normalises the scene the way the reference does (docs/rendering.md#blender-scene-normalisation),
writes the mesh and PBR material dump (docs/data-formats.md#dumps, in the npz/json/png layout of the ingest contract)
and the 16 condition renders (docs/rendering.md).
Its outcome goes to `--result` as JSON: `{"ok": true, counts...}` or `{"ok": false, "reason": "<one line>"}`.

One process per asset because bpy keeps global state, leaks memory across files, and a bad file can crash or hang
it; the parent enforces the timeout, and this process caps its own memory before bpy is loaded.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from trellis2_worker.ingest import quality
from trellis2_worker.ingest import references as refs
from trellis2_worker.ingest.sandbox import ENV as SANDBOX_ENV


class AssetError(Exception):
    """The asset cannot be used; the message is the one-line reason the report shows."""


# ----------------------------------------------------------------------------------------------------------------
# Containment inside Blender: FBX references before import (with Blender's own FBX parser), and every external
# path Blender holds after import, for every format (defence in depth behind discovery's checks and the sandbox).


def check_fbx_textures(path: Path, root: Path) -> list[str]:
    """Refuses an FBX whose texture the importer would load from outside root, resolving each Video/Texture file
    name as io_scene_fbx's blen_read_texture_image and bpy_extras.image_utils.load_image do: RelativeFilename
    (leading separators stripped) joined to the file's folder, else FileName / Filename; backslashes as separators;
    then the path itself (relative to the working folder, root), joined to the folder, and its basename there, each
    also in the case found on disk. The importer's recursive search for a missing texture walks the path's own
    folder: the names whose folder lies outside are returned, and the file is then imported without that search."""
    import bpy
    from io_scene_fbx import parse_fbx

    try:
        elem, _version = parse_fbx.parse(str(path))
    except Exception:  # noqa: BLE001 - the importer reports an unreadable file itself, having read nothing else
        return []
    basedir = os.path.dirname(str(path))
    outside_search: list[str] = []

    def first_string(node, name: bytes):
        for child in node.elems:
            if child.id == name and child.props and isinstance(child.props[0], bytes):
                return child.props[0].decode("utf-8", "replace")
        return None

    objects = [e for e in elem.elems if e.id == b"Objects"]
    nodes = [e for o in objects for e in o.elems if e.id in (b"Video", b"Texture")]
    for node in nodes:
        filepath = first_string(node, b"RelativeFilename")
        if filepath:
            filepath = os.path.join(basedir, filepath.lstrip(os.path.sep).lstrip(os.path.altsep))
        else:
            filepath = first_string(node, b"FileName") or first_string(node, b"Filename")
        if not filepath:
            continue
        written = filepath
        filepath = bpy.path.native_pathsep(filepath.replace("\\", "/"))
        variants = [filepath, os.path.join(basedir, filepath), os.path.join(basedir, bpy.path.basename(filepath))]
        candidates = [c for v in variants for c in (v, bpy.path.resolve_ncase(v))]
        found = next((c for c in candidates if os.path.exists(c)), None)
        if found is not None and not refs.inside(root, found):
            raise AssetError(f"FBX texture refers outside the archive: {refs.shown(written)}")
        content = next((c.props[0] for c in node.elems if c.id == b"Content" and c.props
                        and isinstance(c.props[0], bytes) and c.props[0]), None)
        try:  # the side limit, from the header of the file it would load or of the embedded image
            if content is not None:
                refs.check_texture_size(io.BytesIO(content), f"FBX texture {refs.shown(written)}")
            elif found is not None and os.path.isfile(found):
                with open(found, "rb") as f:
                    refs.check_texture_size(f, f"FBX texture {refs.shown(written)}")
        except refs.Refused as exc:
            raise AssetError(str(exc)) from None
        folder = os.path.dirname(filepath)
        if found is None and folder and os.path.exists(folder) and not refs.inside(root, folder):
            outside_search.append(written)
    return outside_search


def contain(bpy, root: Path, warnings: list[str]) -> list[str]:
    """After import, before anything reads pixels: every library and external file Blender holds must lie inside
    root. A missing outside file (an absolute path from the author's machine) is never read: an image is dropped,
    anything else noted, with a warning; an outside file that exists, or any outside library, refuses the asset.
    Textures past the side limit are refused from their headers (files or packed data), before Blender decodes
    them. Returns the names of the images dropped."""
    for lib in bpy.data.libraries:
        path = bpy.path.abspath(lib.filepath)
        if not refs.inside(root, path):
            raise AssetError(f"linked library refers outside the archive: {refs.shown(lib.filepath)}")
    images = {}
    for img in bpy.data.images:
        if img.packed_file is None and img.source in ("FILE", "SEQUENCE", "MOVIE", "TILED") and img.filepath:
            images[img.name] = bpy.path.abspath(img.filepath, library=img.library)
    dropped = []
    for name, path in images.items():
        if refs.inside(root, path):
            continue
        if os.path.lexists(path):
            raise AssetError(f"image {refs.shown(name)} refers outside the archive: {refs.shown(path)}")
        img = bpy.data.images[name]
        _unlink_image(bpy, img)
        bpy.data.images.remove(img)
        dropped.append(refs.shown(name))
        warnings.append(f"image {refs.shown(name)} refers outside the archive and was dropped: {refs.shown(path)}")
    # packed=False leaves out packed data (bpy 4.5: True lists packed files' original paths too).
    for path in bpy.utils.blend_paths(absolute=True, packed=False, local=False):
        if not path or refs.inside(root, path) or path in images.values():
            continue
        if os.path.lexists(path):
            raise AssetError(f"the file refers outside the archive: {refs.shown(path)}")
        warnings.append(f"a missing file outside the archive is referred to and not used: {refs.shown(path)}")
    for img in bpy.data.images:
        what = f"texture {refs.shown(img.name)}"
        try:
            if img.packed_file is not None:
                refs.check_texture_size(io.BytesIO(img.packed_file.data), what)
            elif img.source == "FILE" and img.filepath:
                path = bpy.path.abspath(img.filepath, library=img.library)
                if os.path.isfile(path):
                    with open(path, "rb") as f:
                        refs.check_texture_size(f, what)
        except refs.Refused as exc:
            raise AssetError(str(exc)) from None
    return dropped


# At most this many names of unreadable images in a result (a file may name thousands).
MAX_MISSING_NAMES = 20


def unreadable_images(bpy, root: Path, fmt: str) -> list[str]:
    """The images the file names that Blender could not read (file absent, or bytes it cannot decode), by their
    archive-relative path (or their name when packed). Called after contain(): every path left lies inside root."""
    missing = []
    for img in bpy.data.images:
        if img.source not in ("FILE", "SEQUENCE", "TILED"):
            continue  # generated images, render results
        path = bpy.path.abspath(img.filepath, library=img.library) if img.filepath else ""
        # The glTF importer's placeholder for a missing image: a generated buffer (its size is not 0) given the
        # absent file's path. Other importers keep the path as written even when they found the file another way
        # (the OBJ importer's `.\\tex.jpg`, loaded as tex.jpg), so for them only an unreadable image counts.
        absent = (fmt in ("glb", "gltf") and img.packed_file is None and os.path.isabs(path)
                  and not os.path.isfile(path))
        # size loads the image: (0, 0) when Blender cannot read it (also how Cycles finds it missing)
        if absent or tuple(img.size) == (0, 0):
            if os.path.isabs(path) and refs.inside(root, path):
                shown_as = os.path.relpath(path, root).replace(os.sep, "/")
            else:  # as the file writes it (an author's path is no path of ours)
                shown_as = img.filepath.removeprefix("//") or img.name
            missing.append(refs.shown(shown_as))
    return sorted(set(missing))


def check_finite(bpy) -> None:
    """Refuses a scene with infinite or NaN vertex coordinates (or object transforms) before it is normalised:
    its bound box would be infinite and the normalisation meaningless."""
    bad = total = 0
    for obj in bpy.context.scene.objects:
        if obj.type != "MESH" or obj.data is None:
            continue
        n = len(obj.data.vertices)
        co = np.empty(n * 3, np.float32)
        obj.data.vertices.foreach_get("co", co)
        finite = np.isfinite(co.reshape(-1, 3)).all(axis=1)
        if not all(math.isfinite(x) for row in obj.matrix_world for x in row):
            finite[:] = False
        bad += int((~finite).sum())
        total += n
    reason = quality.nonfinite_refusal(bad, total)
    if reason:
        raise AssetError(reason)


def _unlink_image(bpy, image) -> None:
    for mat in bpy.data.materials:
        if mat.node_tree is None:
            continue
        for node in mat.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image == image:
                node.image = None


# ----------------------------------------------------------------------------------------------------------------
# Loading


def _reset_scene(bpy) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # Factory settings keep auto-exec off, but say it explicitly: a .blend from a user must never run its scripts.
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False


def load_asset(bpy, path: Path, fmt: str, root: Path | None = None) -> list[str]:
    """Imports the file into an empty scene; returns warnings about what was left out to stay inside root."""
    root = root or path.parent
    if fmt == "blend":
        # Open it as the main file (the reference starts Blender with the file), scripts disabled.
        bpy.context.preferences.filepaths.use_scripts_auto_execute = False
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
        _delete_hidden(bpy)
        return []
    _reset_scene(bpy)
    if fmt in ("glb", "gltf"):
        bpy.ops.import_scene.gltf(
            filepath=str(path), merge_vertices=True, import_shading="NORMALS", bone_heuristic="TEMPERANCE"
        )
    elif fmt == "obj":
        bpy.ops.wm.obj_import(filepath=str(path))
    elif fmt == "fbx":
        outside_search = check_fbx_textures(path, root)
        bpy.ops.import_scene.fbx(filepath=str(path), use_image_search=not outside_search)
        return [f"FBX texture {refs.shown(name)} is missing; not searched for outside the archive"
                for name in outside_search]
    elif fmt == "stl":
        bpy.ops.wm.stl_import(filepath=str(path))
    elif fmt == "ply":
        bpy.ops.wm.ply_import(filepath=str(path))
    else:
        raise AssetError(f"unsupported format: {fmt}")
    return []


def _delete_hidden(bpy) -> None:
    hidden = [o for o in bpy.context.scene.objects if o.hide_viewport or o.hide_render]
    for obj in hidden:
        bpy.data.objects.remove(obj, do_unlink=True)
    for col in [c for c in bpy.data.collections if c.hide_viewport]:
        bpy.data.collections.remove(col)


def _scene_bbox(bpy):
    from mathutils import Vector

    lo = [math.inf] * 3
    hi = [-math.inf] * 3
    found = False
    for obj in bpy.context.scene.objects:
        if obj.type != "MESH":
            continue
        found = True
        for corner in obj.bound_box:
            p = obj.matrix_world @ Vector(corner)
            lo = [min(a, b) for a, b in zip(lo, p)]
            hi = [max(a, b) for a, b in zip(hi, p)]
    if not found:
        raise AssetError("no mesh objects in the file")
    return Vector(lo), Vector(hi)


def normalize_scene(bpy) -> tuple[float, list[float]]:
    """Scales and moves the scene so its (bound-box based) largest extent is 1, centred at the origin
    (docs/rendering.md#blender-scene-normalisation)."""
    roots = [o for o in bpy.context.scene.objects if o.parent is None]
    if not roots:
        raise AssetError("the file holds no objects")
    if len(roots) > 1:
        root = bpy.data.objects.new("ParentEmpty", None)
        bpy.context.scene.collection.objects.link(root)
        for obj in roots:
            obj.parent = root
    else:
        root = roots[0]
    lo, hi = _scene_bbox(bpy)
    extent = max(hi - lo)
    if not extent > 0 or not math.isfinite(extent):
        raise AssetError("the mesh has no extent (all vertices at one point)")
    scale = 1.0 / extent
    root.scale = root.scale * scale
    bpy.context.view_layer.update()
    lo, hi = _scene_bbox(bpy)
    offset = -(lo + hi) / 2
    root.matrix_world.translation += offset
    bpy.context.view_layer.update()
    return scale, list(offset)


# ----------------------------------------------------------------------------------------------------------------
# Geometry


def dump_geometry(bpy, materials_index: dict) -> dict:
    """All mesh objects (modifiers applied, world space, triangulated) concatenated without welding
    (docs/data-formats.md#dumps)."""
    import bmesh

    depsgraph = bpy.context.evaluated_depsgraph_get()
    verts, faces, uvs, has_uv, mat_ids = [], [], [], [], []
    offset = 0
    for obj in bpy.context.scene.objects:
        if obj.type != "MESH":
            continue
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        try:
            bm = bmesh.new()
            bm.from_mesh(mesh)
            bm.transform(obj.matrix_world)
            bmesh.ops.triangulate(bm, faces=bm.faces[:])
            bm.to_mesh(mesh)
            bm.free()
            nv, nf = len(mesh.vertices), len(mesh.polygons)
            if nv == 0 or nf == 0:
                continue
            co = np.empty(nv * 3, np.float32)
            mesh.vertices.foreach_get("co", co)
            loop_start = np.empty(nf, np.int64)
            mesh.polygons.foreach_get("loop_start", loop_start)
            loops = loop_start[:, None] + np.arange(3)[None, :]
            loop_vert = np.empty(len(mesh.loops), np.int64)
            mesh.loops.foreach_get("vertex_index", loop_vert)
            tri = loop_vert[loops]
            layer = mesh.uv_layers.active
            if layer is not None:
                uv = np.empty(len(mesh.loops) * 2, np.float32)
                layer.data.foreach_get("uv", uv)
                uvs.append(uv.reshape(-1, 2)[loops])
                has_uv.append(np.ones(nf, bool))
            else:
                uvs.append(np.zeros((nf, 3, 2), np.float32))
                has_uv.append(np.zeros(nf, bool))
            slot_ids = np.empty(nf, np.int32)
            mesh.polygons.foreach_get("material_index", slot_ids)
            slot_to_mat = np.array(
                [materials_index.get(s.material.name, -1) if s.material is not None else -1
                 for s in obj.material_slots] + [-1],
                np.int32,
            )
            slot_ids = np.where((slot_ids >= 0) & (slot_ids < len(obj.material_slots)), slot_ids, -1)
            mat_ids.append(slot_to_mat[slot_ids])
            verts.append(co.reshape(-1, 3))
            faces.append(tri + offset)
            offset += nv
        finally:
            evaluated.to_mesh_clear()
    if not faces:
        raise AssetError("no faces: the file holds no triangles or polygons (points or lines only)")
    return {
        "vertices": np.concatenate(verts).astype(np.float32),
        "faces": np.concatenate(faces).astype(np.int64),
        "uvs": np.concatenate(uvs).astype(np.float32),
        "has_uv": np.concatenate(has_uv),
        "mat_ids": np.concatenate(mat_ids).astype(np.int32),
    }


# ----------------------------------------------------------------------------------------------------------------
# Materials


class _Unsupported(Exception):
    pass


def _ensure_node_material(mat) -> None:
    """Pre-2.8 .blend materials have no node tree: give them a Principled BSDF carrying their viewport colour,
    so both the dump and Cycles see the colour the author chose."""
    if mat.use_nodes and mat.node_tree is not None:
        return
    colour = tuple(mat.diffuse_color)
    metallic, roughness = float(mat.metallic), float(mat.roughness)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = colour
        bsdf.inputs["Metallic"].default_value = metallic
        bsdf.inputs["Roughness"].default_value = roughness


class _ImageWriter:
    """Writes texture channels as PNGs in the dump folder, in Blender's bottom-to-top row order (as the reference
    stores them; consumers flip), with truncating float->uint8 conversion (docs/data-formats.md#dumps)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self._pixels: dict[str, np.ndarray] = {}

    def pixels(self, image) -> np.ndarray:
        key = image.name
        if key not in self._pixels:
            w, h = image.size
            if w == 0 or h == 0:
                raise _Unsupported(f"image {image.name!r} has no pixels (missing file?)")
            flat = np.empty(len(image.pixels), np.float32)
            image.pixels.foreach_get(flat)
            self._pixels[key] = flat.reshape(h, w, -1)
        return self._pixels[key]

    def write(self, tex_node, channels, name: str) -> dict:
        from PIL import Image

        if tex_node.image is None:
            raise _Unsupported("image texture node without an image")
        data = self.pixels(tex_node.image)
        if isinstance(channels, int) and channels >= data.shape[2]:
            raise _Unsupported(f"image {tex_node.image.name!r} has no channel {channels}")
        data = data[..., channels]
        # float64 like the reference's numpy conversion of Python floats, so truncation lands the same way.
        data = (np.clip(data.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)
        Image.fromarray(np.ascontiguousarray(data), mode="L" if data.ndim == 2 else "RGB").save(
            self.out_dir / name, format="PNG", compress_level=1
        )
        return {"image": name, "interpolation": tex_node.interpolation, "extension": tex_node.extension}


def _factor_and_link(link, colour: bool):
    """An optional multiply in front of the texture: MIX(MULTIPLY, factor 1) for colours, MATH(MULTIPLY) else."""
    node = link.from_node
    if colour and node.type == "MIX":
        if node.data_type != "RGBA" or node.blend_type != "MULTIPLY":
            raise _Unsupported(f"mix node {node.data_type}/{node.blend_type}")
        fac = node.inputs["Factor"]
        if fac.is_linked or fac.default_value != 1.0:
            raise _Unsupported("mix node with a factor other than 1")
        a, b = node.inputs["A"], node.inputs["B"]
        if a.is_linked == b.is_linked:
            raise _Unsupported("mix node with both or neither colour linked")
        linked, const = (a, b) if a.is_linked else (b, a)
        return [float(x) for x in list(const.default_value)[:3]], linked.links[0]
    if not colour and node.type == "MATH":
        if node.operation != "MULTIPLY" or not node.inputs[0].is_linked or node.inputs[1].is_linked:
            raise _Unsupported(f"math node {node.operation}")
        return float(node.inputs[1].default_value), node.inputs[0].links[0]
    return ([1.0, 1.0, 1.0] if colour else 1.0), link


def _texture_node(link, want: str):
    node = link.from_node
    if want in ("RGB", "A"):
        socket = "Color" if want == "RGB" else "Alpha"
        if node.type != "TEX_IMAGE" or link.from_socket.name != socket:
            raise _Unsupported(f"{node.type} feeding {want}")
        return node, ([0, 1, 2] if want == "RGB" else 3)
    socket = {"R": "Red", "G": "Green", "B": "Blue"}[want]
    if node.type != "SEPARATE_COLOR" or node.mode != "RGB" or link.from_socket.name != socket:
        raise _Unsupported(f"{node.type} feeding channel {want}")
    inp = node.inputs[0]
    if not inp.is_linked or inp.links[0].from_node.type != "TEX_IMAGE" or inp.links[0].from_socket.name != "Color":
        raise _Unsupported("separate-colour node not fed by an image")
    return inp.links[0].from_node, "RGB".index(want)


def _textured(link, want: str, writer: _ImageWriter, name: str):
    factor, link = _factor_and_link(link, colour=(want == "RGB"))
    node, channels = _texture_node(link, want)
    return factor, writer.write(node, channels, name)


def dump_material(mat, index: int, writer: _ImageWriter, warnings: list[str]) -> dict:
    """One material in the reference's dict format (docs/data-formats.md#dumps). Where the reference gives up on the whole asset
    (a node chain it does not know), this keeps the factor, drops that texture and records a warning."""
    pack = {
        "baseColorFactor": [1.0, 1.0, 1.0],
        "alphaFactor": 1.0,
        "metallicFactor": 1.0,
        "roughnessFactor": 1.0,
        "alphaMode": "OPAQUE",
        "alphaCutoff": 0.5,
        "baseColorTexture": None,
        "alphaTexture": None,
        "metallicTexture": None,
        "roughnessTexture": None,
    }
    _ensure_node_material(mat)
    bsdf = mat.node_tree.nodes.get("Principled BSDF")
    if bsdf is None:
        bsdf = next((n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is None:
        warnings.append(f"material {mat.name!r}: no Principled BSDF, default factors used")
        return pack
    prefix = f"tex_{index:03d}"

    def guarded(what, fn):
        try:
            fn()
        except _Unsupported as exc:
            warnings.append(f"material {mat.name!r}: {what} not read ({exc})")

    def base_colour():
        sock = bsdf.inputs["Base Color"]
        if not sock.is_linked:
            pack["baseColorFactor"] = [float(x) for x in sock.default_value]
            return
        link = sock.links[0]
        if link.from_node.type == "RGB":
            pack["baseColorFactor"] = [float(x) for x in link.from_node.outputs[0].default_value]
            return
        factor, tex = _textured(link, "RGB", writer, f"{prefix}_baseColor.png")
        pack["baseColorFactor"], pack["baseColorTexture"] = factor, tex

    def alpha():
        sock = bsdf.inputs["Alpha"]
        if not sock.is_linked or sock.links[0].from_node.type == "VALUE":
            value = sock.default_value if not sock.is_linked else sock.links[0].from_node.outputs[0].default_value
            pack["alphaFactor"] = float(value)
            if value < 1.0:
                pack["alphaMode"] = "BLEND"
            return
        link = sock.links[0]
        node = link.from_node
        mode, cutoff = "BLEND", 0.5
        if node.type == "MATH" and node.operation == "ROUND":
            if not node.inputs[0].is_linked:
                raise _Unsupported("round node without input")
            mode, link = "MASK", node.inputs[0].links[0]
        elif node.type == "MATH" and node.operation == "SUBTRACT":
            second = node.inputs[1]
            less = second.links[0].from_node if second.is_linked else None
            if (node.inputs[0].default_value != 1.0 or less is None or less.type != "MATH"
                    or less.operation != "LESS_THAN" or not less.inputs[0].is_linked):
                raise _Unsupported("alpha subtract chain")
            mode, cutoff, link = "MASK", float(less.inputs[1].default_value), less.inputs[0].links[0]
        pack["alphaMode"] = "BLEND"  # linked alpha is blended even if its texture cannot be read
        factor, tex = _textured(link, "A", writer, f"{prefix}_alpha.png")
        pack.update(alphaMode=mode, alphaCutoff=cutoff, alphaFactor=factor, alphaTexture=tex)

    def scalar(socket_name, key, channel):
        def run():
            sock = bsdf.inputs[socket_name]
            if not sock.is_linked:
                pack[f"{key}Factor"] = float(sock.default_value)
                return
            link = sock.links[0]
            if link.from_node.type == "VALUE":
                pack[f"{key}Factor"] = float(link.from_node.outputs[0].default_value)
                return
            factor, tex = _textured(link, channel, writer, f"{prefix}_{key}.png")
            pack[f"{key}Factor"], pack[f"{key}Texture"] = factor, tex

        return run

    guarded("base colour", base_colour)
    guarded("alpha", alpha)
    guarded("metallic", scalar("Metallic", "metallic", "B"))
    guarded("roughness", scalar("Roughness", "roughness", "G"))
    return pack


# ----------------------------------------------------------------------------------------------------------------
# Rendering


DENOISE_MODES = ("accurate", "fast", "off")


def _setup_render(bpy, size: int, samples: int, threads: int, denoise: str = "accurate", seed: int = 0) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    _try_gpu(bpy, scene)
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False
    # The reference denoises with OpenImageDenoise at its best quality ("accurate"). Its albedo/normal prefilter
    # costs about half a second per view on CPU whatever the size, so small renders may choose "fast" or "off".
    scene.cycles.use_denoising = denoise != "off"
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.denoising_prefilter = "ACCURATE" if denoise == "accurate" else "FAST"
    scene.cycles.denoising_quality = "HIGH" if denoise == "accurate" else "FAST"
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 1.0
    scene.cycles.diffuse_bounces = 1
    scene.cycles.glossy_bounces = 1
    scene.cycles.transparent_max_bounces = 3
    scene.cycles.transmission_bounces = 3
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    # Standard view: the image keeps the material's colours (AgX, 4.x's default, desaturates them).
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    # The scene is the same for all 16 views; only camera and lights change, so keep Cycles' data between them.
    scene.render.use_persistent_data = True
    if threads > 0:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = threads
    # A .blend brings its own settings: a frame-animated sampling seed would make the noise depend on its frame.
    scene.cycles.use_animated_seed = False
    scene.cycles.seed = seed % 2**31


# Text and time chunks: Blender writes the render date and Cycles' render times there (even with every stamp
# option off), so two renders of the same pixels differ in bytes.
_PNG_DROP = {b"tEXt", b"zTXt", b"iTXt", b"tIME"}


def _strip_png_text(path: Path) -> None:
    """Rewrite a PNG without its text/time chunks, pixels untouched. By hand: re-saving with Pillow would
    re-encode the image and tie its bytes to Pillow's zlib; this only drops whole chunks."""
    data = path.read_bytes()
    out, pos = [data[:8]], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        end = pos + 12 + length
        if data[pos + 4:pos + 8] not in _PNG_DROP:
            out.append(data[pos:end])
        pos = end
    path.write_bytes(b"".join(out))


def _try_gpu(bpy, scene) -> None:
    """Use a GPU when Cycles finds one (Batch GPU hosts); CPU otherwise."""
    try:
        prefs = bpy.context.preferences.addons["cycles"].preferences
        for backend in ("OPTIX", "CUDA", "HIP", "METAL", "ONEAPI"):
            try:
                prefs.compute_device_type = backend
            except TypeError:
                continue
            prefs.get_devices()
            gpus = [d for d in prefs.devices if d.type != "CPU"]
            if gpus:
                for d in prefs.devices:
                    d.use = d.type != "CPU"
                scene.cycles.device = "GPU"
                return
    except Exception:  # noqa: BLE001 - no GPU support in this build: CPU it is
        pass


def _unlink_missing_images(bpy) -> None:
    """Cycles paints an image texture whose file is missing in magenta; the dump skipped those textures and kept
    the factors, so let the renders show the factors too."""
    for mat in bpy.data.materials:
        if not mat.use_nodes or mat.node_tree is None:
            continue
        tree = mat.node_tree
        for node in tree.nodes:
            if node.type == "TEX_IMAGE" and (node.image is None or not node.image.has_data and
                                             tuple(node.image.size) == (0, 0)):
                for output in node.outputs:
                    for link in list(output.links):
                        tree.links.remove(link)


def render_views(bpy, out_dir: Path, views: list[dict], seed: int, scale: float, offset, size, samples,
                 threads, denoise: str = "accurate") -> None:
    from mathutils import Vector

    from trellis2_worker.render import camera_location, lights_for_view

    # Lights and cameras that came with the file would fight the reference lighting rig.
    for obj in [o for o in bpy.context.scene.objects if o.type in ("LIGHT", "CAMERA")]:
        bpy.data.objects.remove(obj, do_unlink=True)
    _unlink_missing_images(bpy)
    _setup_render(bpy, size, samples, threads, denoise, seed)
    scene = bpy.context.scene

    world = bpy.data.worlds.new("CondWorld")
    world.use_nodes = True
    background = next(n for n in world.node_tree.nodes if n.type == "BACKGROUND")
    background.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
    scene.world = world

    cam_data = bpy.data.cameras.new("CondCamera")
    cam_data.sensor_fit = "AUTO"
    cam_data.sensor_width = cam_data.sensor_height = 32.0
    camera = bpy.data.objects.new("CondCamera", cam_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    target = bpy.data.objects.new("CondTarget", None)
    scene.collection.objects.link(target)
    track = camera.constraints.new(type="TRACK_TO")
    track.target = target
    track.track_axis = "TRACK_NEGATIVE_Z"
    track.up_axis = "UP_Y"

    rng = np.random.default_rng(seed + 1)
    lights: list = []
    frames = []
    for i, view in enumerate(views):
        for obj in lights:
            bpy.data.objects.remove(obj, do_unlink=True)
        lights = []
        specs, world_strength = lights_for_view(view, rng)
        for j, spec in enumerate(specs):
            data = bpy.data.lights.new(f"CondLight{j}", type="POINT")
            data.energy = spec["energy"]
            data.shadow_soft_size = spec["radius"]
            obj = bpy.data.objects.new(f"CondLight{j}", data)
            obj.location = spec["location"]
            scene.collection.objects.link(obj)
            lights.append(obj)
        background.inputs["Strength"].default_value = world_strength
        cam_data.lens = 16.0 / math.tan(view["fov"] / 2)
        camera.location = Vector(camera_location(view).tolist())
        bpy.context.view_layer.update()
        name = f"{i:03d}.png"
        scene.render.filepath = str(out_dir / name)
        bpy.ops.render.render(write_still=True)
        _strip_png_text(out_dir / name)
        matrix = camera.matrix_world.normalized()
        frames.append(
            {"file_path": name, "camera_angle_x": view["fov"], "transform_matrix": [list(r) for r in matrix]}
        )
    transforms = {
        "aabb": [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]],
        "scale": scale,
        "offset": [float(x) for x in offset],
        "frames": frames,
    }
    (out_dir / "transforms.json").write_text(json.dumps(transforms, indent=1))


# ----------------------------------------------------------------------------------------------------------------


def run(args) -> dict:
    import bpy

    started = time.time()
    src = Path(args.input)
    root = Path(args.root) if args.root else src.parent
    try:
        warnings = load_asset(bpy, src, args.format, root)
    except RuntimeError as exc:
        if args.format == "fbx":  # discovery let only files with the binary FBX header through
            raise AssetError(f"corrupt binary FBX: Blender's importer failed ({_importer_reason(exc)})") from exc
        raise AssetError(f"importer error: {_importer_reason(exc)}") from exc
    dropped = contain(bpy, root, warnings)
    missing = sorted(set(dropped) | set(unreadable_images(bpy, root, args.format)))
    for mat in bpy.data.materials:
        _ensure_node_material(mat)
    check_finite(bpy)
    scale, offset = normalize_scene(bpy)
    dump_dir = Path(args.dump_dir)
    dump_dir.mkdir(parents=True, exist_ok=True)
    writer = _ImageWriter(dump_dir)
    materials = [dump_material(m, i, writer, warnings) for i, m in enumerate(bpy.data.materials)]
    index = {m.name: i for i, m in enumerate(bpy.data.materials)}
    geom = dump_geometry(bpy, index)
    np.savez(dump_dir / "mesh.npz", **geom)
    (dump_dir / "materials.json").write_text(json.dumps(materials, indent=1))
    dumped_at = time.time()
    result = {
        "ok": True,
        "num_vertices": int(len(geom["vertices"])),
        "num_faces": int(len(geom["faces"])),
        "num_materials": len(materials),
        "num_basecolor_tex": sum(m["baseColorTexture"] is not None for m in materials),
        "num_metallic_tex": sum(m["metallicTexture"] is not None for m in materials),
        "num_roughness_tex": sum(m["roughnessTexture"] is not None for m in materials),
        "num_alpha_tex": sum(m["alphaTexture"] is not None for m in materials),
        "scale": scale,
        "offset": [float(x) for x in offset],
        "warnings": warnings,
        # the images the file names that could not be read (the quality checks flag them)
        "images_missing": len(missing),
        "images_missing_names": missing[:MAX_MISSING_NAMES],
        "dump_seconds": round(dumped_at - started, 3),
    }
    if args.render_dir:
        from trellis2_worker.render import sample_views

        render_dir = Path(args.render_dir)
        render_dir.mkdir(parents=True, exist_ok=True)
        views = sample_views(args.views, seed=args.seed)
        render_views(bpy, render_dir, views, args.seed, scale, offset, args.render_size, args.render_samples,
                     args.threads, args.denoise)
        result["render_seconds"] = round(time.time() - dumped_at, 3)
    return result


def _importer_reason(exc: BaseException) -> str:
    """bpy wraps importer failures in RuntimeError with a traceback; keep the line that names the error, with any
    quoted text elided (importers quote what they read) and non-printable bytes escaped."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    reason = lines[-1] if lines else type(exc).__name__
    for line in reversed(lines):
        if re.match(r"^(Error: )?[A-Za-z_.]*(Error|Exception)\b", line) or line.startswith("Error: "):
            reason = line.removeprefix("Error: ")
            break
    return _elided(reason)


def _elided(text: str) -> str:
    """A message fit for the report: quoted text (what importers quote is what they read) elided, escaped, short."""
    return refs.shown(re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", text))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="trellis2_worker.ingest.blender_pass")
    parser.add_argument("--input", required=True)
    parser.add_argument("--format", required=True)
    parser.add_argument("--root", default="", help="the archive folder every file it uses must lie in")
    parser.add_argument("--dump-dir", required=True)
    parser.add_argument("--render-dir", default="")
    parser.add_argument("--render-size", type=int, default=1024)
    parser.add_argument("--render-samples", type=int, default=32)
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--denoise", choices=DENOISE_MODES, default="accurate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    if args.memory_mb > 0:
        # RLIMIT_DATA (heap and private writable mappings), not RLIMIT_AS: GPU drivers reserve large inaccessible
        # address ranges that an address-space cap would refuse, and those are not memory in use.
        cap = args.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    try:
        result = run(args)
        code = 0
    except AssetError as exc:
        result, code = {"ok": False, "reason": str(exc)}, 3
    except MemoryError:
        result, code = {"ok": False, "reason": f"out of memory (cap {args.memory_mb} MB)"}, 3
    except Exception as exc:  # noqa: BLE001 - any Blender/bpy failure is this asset's failure, with its reason
        traceback.print_exc()
        message = _elided(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        if args.memory_mb > 0 and any(s in message for s in ("failed to map", "cannot map", "Cannot allocate")):
            message = f"out of memory (cap {args.memory_mb} MB): {message}"
        result = {"ok": False, "reason": message[:300]}
        code = 3
    sandbox = json.loads(os.environ.get(SANDBOX_ENV) or "{}")
    result["sandbox"] = sandbox.get("summary", "none (run outside the sandbox launcher)")
    Path(args.result).write_text(json.dumps(result))
    sys.stdout.flush()
    # bpy's atexit teardown can take seconds on big scenes and has nothing left to do.
    os._exit(code)


if __name__ == "__main__":
    main()
