"""The Blender pass for one asset, run in its own process (`python -m trellis2_worker.ingest.blender_pass ...`).

Imports the file with bpy, normalises the scene the way the reference does (spec data §1.3), writes the mesh and PBR
material dump (§1.4-1.5, in the npz/json/png layout of the ingest contract) and the 16 condition renders (§6).
Its outcome goes to `--result` as JSON: `{"ok": true, counts...}` or `{"ok": false, "reason": "<one line>"}`.

One process per asset because bpy keeps global state, leaks memory across files, and a bad file can crash or hang
it; the parent enforces the timeout, and this process caps its own memory before bpy is loaded.
"""

from __future__ import annotations

import argparse
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


class AssetError(Exception):
    """The asset cannot be used; the message is the one-line reason the report shows."""


# ----------------------------------------------------------------------------------------------------------------
# Loading


def _reset_scene(bpy) -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # Factory settings keep auto-exec off, but say it explicitly: a .blend from a user must never run its scripts.
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False


def load_asset(bpy, path: Path, fmt: str) -> None:
    if fmt == "blend":
        # Open it as the main file (the reference starts Blender with the file), scripts disabled.
        bpy.context.preferences.filepaths.use_scripts_auto_execute = False
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
        _delete_hidden(bpy)
        return
    _reset_scene(bpy)
    if fmt in ("glb", "gltf"):
        bpy.ops.import_scene.gltf(
            filepath=str(path), merge_vertices=True, import_shading="NORMALS", bone_heuristic="TEMPERANCE"
        )
    elif fmt == "obj":
        bpy.ops.wm.obj_import(filepath=str(path))
    elif fmt == "fbx":
        bpy.ops.import_scene.fbx(filepath=str(path))
    elif fmt == "stl":
        bpy.ops.wm.stl_import(filepath=str(path))
    elif fmt == "ply":
        bpy.ops.wm.ply_import(filepath=str(path))
    else:
        raise AssetError(f"unsupported format: {fmt}")


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
    """Scales and moves the scene so its (bound-box based) largest extent is 1, centred at the origin (§1.3)."""
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
    """All mesh objects (modifiers applied, world space, triangulated) concatenated without welding (§1.4, §2)."""
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
    stores them; consumers flip), with truncating float->uint8 conversion (§1.5)."""

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
    """One material in the reference's dict format (§1.5). Where the reference gives up on the whole asset
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


def _setup_render(bpy, size: int, samples: int, threads: int, denoise: str = "accurate") -> None:
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
    _setup_render(bpy, size, samples, threads, denoise)
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
    try:
        load_asset(bpy, src, args.format)
    except RuntimeError as exc:
        raise AssetError(f"importer error: {_importer_reason(exc)}") from exc
    for mat in bpy.data.materials:
        _ensure_node_material(mat)
    scale, offset = normalize_scene(bpy)
    dump_dir = Path(args.dump_dir)
    dump_dir.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
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
    """bpy wraps importer failures in RuntimeError with a traceback; keep the line that names the error."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^(Error: )?[A-Za-z_.]*(Error|Exception)\b", line) or line.startswith("Error: "):
            return line.removeprefix("Error: ")[:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="trellis2_worker.ingest.blender_pass")
    parser.add_argument("--input", required=True)
    parser.add_argument("--format", required=True)
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
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        if args.memory_mb > 0 and any(s in message for s in ("failed to map", "cannot map", "Cannot allocate")):
            message = f"out of memory (cap {args.memory_mb} MB): {message}"
        result = {"ok": False, "reason": message[:300]}
        code = 3
    Path(args.result).write_text(json.dumps(result))
    sys.stdout.flush()
    # bpy's atexit teardown can take seconds on big scenes and has nothing left to do.
    os._exit(code)


if __name__ == "__main__":
    main()
