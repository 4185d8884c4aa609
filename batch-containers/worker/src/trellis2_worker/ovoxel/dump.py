"""Mesh + material dumps written by `ingest` (DIR/dumps/<sha>/mesh.npz, materials.json, PNG textures), and the exact
unit-cube normalisation every consumer applies to them (docs/data-formats.md#normalisation)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .pbr import DEFAULT_MATERIAL

NORMALISE_FACTOR = np.float32(0.99999)


@dataclass
class MeshDump:
    """One asset's dump. `vertices` f32 (V,3), `faces` i64 (F,3), `uvs` f32 (F,3,2) per corner, `has_uv` bool (F,),
    `mat_ids` i32 (F,) with -1 = no material, `materials` the dump's material dicts, `root` the folder that holds
    the texture PNGs (None when the materials carry no textures)."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    has_uv: np.ndarray
    mat_ids: np.ndarray
    materials: list = field(default_factory=list)
    root: Path | None = None

    def load_image(self, name: str) -> bytes:
        if self.root is None:
            raise InputError(f"texture {name!r} has no dump folder to be read from")
        # Names come from user data: only plain file names inside the dump folder are allowed.
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise InputError(f"texture name {name!r} is not a plain file name")
        path = self.root / name
        if not path.is_file():
            raise InputError(f"texture {name!r} is missing from {self.root}")
        return path.read_bytes()


def load_dump(directory) -> MeshDump:
    """Read DIR/mesh.npz + DIR/materials.json (never unpickles)."""
    root = Path(directory)
    npz_path = root / "mesh.npz"
    if not npz_path.is_file():
        raise InputError(f"{npz_path} is missing")
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable npz is the input's fault
        raise InputError(f"{npz_path} is not a readable npz: {exc}") from exc
    for key in ("vertices", "faces"):
        if key not in data:
            raise InputError(f"{npz_path} lacks '{key}'")
    v = np.asarray(data["vertices"], dtype=np.float32)
    f = np.asarray(data["faces"], dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"{npz_path}: vertices must be (V,3) and faces (F,3)")
    nf = len(f)
    uvs = np.asarray(data.get("uvs", np.zeros((nf, 3, 2))), dtype=np.float32)
    has_uv = np.asarray(data.get("has_uv", np.zeros(nf, bool)), dtype=bool)
    mat_ids = np.asarray(data.get("mat_ids", np.full(nf, -1)), dtype=np.int32)
    if uvs.shape != (nf, 3, 2) or has_uv.shape != (nf,) or mat_ids.shape != (nf,):
        raise InputError(f"{npz_path}: uvs/has_uv/mat_ids do not match the {nf} faces")
    if nf and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"{npz_path}: a face index is out of range")
    if not np.all(np.isfinite(v)):
        raise InputError(f"{npz_path}: vertices are not all finite")
    materials = []
    mpath = root / "materials.json"
    if mpath.is_file():
        try:
            materials = json.loads(mpath.read_text())
        except ValueError as exc:
            raise InputError(f"{mpath} is not valid JSON: {exc}") from exc
        if not isinstance(materials, list) or not all(isinstance(m, dict) for m in materials):
            raise InputError(f"{mpath} must be a list of material objects")
    if nf and mat_ids.max() >= len(materials):
        raise InputError(f"{npz_path}: a mat_id points past the {len(materials)} materials")
    return MeshDump(v, f, uvs, has_uv, mat_ids, materials, root)


def unit_cube_scale(extent):
    """The reference's `0.99999 / extent` as torch computes it for a float32 tensor: `reciprocal(extent) * 0.99999`,
    both rounded to float32. Dividing 0.99999 by the extent directly differs in the last bit for about a quarter of
    extents, and the voxelisers amplify that bit into different voxels (docs/data-formats.md#normalisation)."""
    return (np.float32(1) / np.asarray(extent, dtype=np.float32)) * NORMALISE_FACTOR


def normalize_unit_cube(vertices: np.ndarray) -> np.ndarray:
    """`(v - bbox_center) * (0.99999 / max_extent)` in float32, as the reference does: the result lies in
    [-0.5, 0.5]³, the largest extent just under 1."""
    v = np.asarray(vertices, dtype=np.float32)
    if len(v) == 0:
        raise InputError("the mesh has no vertices")
    vmin, vmax = v.min(axis=0), v.max(axis=0)
    center = (vmin + vmax) / np.float32(2)
    extent = (vmax - vmin).max()
    if not extent > 0:
        raise InputError("the mesh is a single point: it cannot be normalised")
    scale = unit_cube_scale(extent)
    out = (v - center) * scale
    if out.min() < -0.5 or out.max() > 0.5:
        # float32 rounding of (v - center) for a mesh tiny next to its distance from the origin; the reference's
        # assert rejects the same meshes, so the object fails (not the run).
        raise InputError("the mesh is too small for its distance from the origin: normalised in float32 it leaves "
                         "the unit cube")
    return out


def prepare_dump_materials(materials: list[dict], mat_ids: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """The toolkit's fixes before PBR voxelisation: an alpha texture forces BLEND over OPAQUE, the default material
    (grey 0.8, metallic 0, roughness 0.5) is appended and faces without a material (-1) use it."""
    mats = []
    for m in materials:
        m = dict(m)
        if m.get("alphaTexture") and m.get("alphaMode", "OPAQUE") == "OPAQUE":
            m["alphaMode"] = "BLEND"
        mats.append(m)
    mats.append(dict(DEFAULT_MATERIAL))
    ids = np.asarray(mat_ids, dtype=np.int64).copy()
    ids[ids < 0] = len(mats) - 1
    return mats, ids


def normalized_dump(dump: MeshDump) -> MeshDump:
    """A copy of the dump with the unit-cube normalisation applied (drops nothing: ingest already dropped empty
    objects)."""
    if len(dump.faces) == 0:
        raise InputError("the mesh has no faces")
    return MeshDump(normalize_unit_cube(dump.vertices), dump.faces, dump.uvs, dump.has_uv, dump.mat_ids,
                    dump.materials, dump.root)
