"""The O-Voxel calls `preprocess` makes, in one place: load a dump, normalise it, dual grid and PBR voxels at R.

Both voxel sets come back aligned row by row (same coords, same order) as the encoders need them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trellis2_worker.latents.encode import EncodingError


def load_normalised(dump_dir: Path):
    """The dump with the exact unit-cube normalisation applied (spec data §2)."""
    from trellis2_worker.ovoxel import load_dump, normalized_dump

    return normalized_dump(load_dump(dump_dir))


def dual_grid(dump, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coords int32 (N,3), vertices uint8 (N,3), intersected uint8 (N,1)) as the reference writes them to `.vxz`."""
    from trellis2_worker.ovoxel import dual_grid_attrs, mesh_to_flexible_dual_grid

    coords, dual, inter = mesh_to_flexible_dual_grid(dump.vertices, dump.faces, resolution)
    attrs = dual_grid_attrs(coords, dual, inter, resolution)
    return coords, attrs["vertices"], attrs["intersected"]


def pbr_voxels(dump, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(coords int32 (N,3), attrs uint8 (N,6) = base_color, metallic, roughness, alpha)."""
    from trellis2_worker.ovoxel import prepare_dump_materials, voxelize_pbr

    mats, ids = prepare_dump_materials(dump.materials, dump.mat_ids)
    root = Path(dump.root) if dump.root is not None else None

    def load_image(name: str) -> bytes:
        p = (root / name).resolve() if root is not None else None
        if p is None or root.resolve() not in p.parents or not p.is_file():
            raise EncodingError(f"texture {name!r} is not in the dump")
        return p.read_bytes()

    coords, a = voxelize_pbr(dump.vertices, dump.faces, dump.uvs, ids, mats, load_image, resolution, has_uv=dump.has_uv)
    attrs = np.concatenate([a["base_color"], a["metallic"], a["roughness"], a["alpha"]], axis=1)
    return coords, np.ascontiguousarray(attrs, dtype=np.uint8)


def align_rows(ref_coords: np.ndarray, coords: np.ndarray, attrs: np.ndarray) -> np.ndarray:
    """`attrs` reordered to `ref_coords`' row order; the two voxel sets must be equal (spec data §4.2)."""
    if np.array_equal(ref_coords, coords):
        return attrs
    if len(ref_coords) != len(coords):
        raise EncodingError(f"PBR voxels ({len(coords)}) and dual grid voxels ({len(ref_coords)}) differ")

    def key(c):
        c = c.astype(np.int64)
        return (c[:, 0] * 4096 + c[:, 1]) * 4096 + c[:, 2]

    kr, kc = key(ref_coords), key(coords)
    order = np.argsort(kc)
    pos = np.clip(np.searchsorted(kc[order], kr), 0, len(kc) - 1)
    if not np.array_equal(kc[order][pos], kr):
        raise EncodingError("PBR voxels and dual grid voxels differ")
    return attrs[order[pos]]
