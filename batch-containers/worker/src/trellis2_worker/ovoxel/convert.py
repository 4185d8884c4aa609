"""One dump → one O-Voxel at one resolution: the dual grid and the PBR voxels on the same voxel set."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .dump import MeshDump, prepare_dump_materials
from .fdg import dual_grid_attrs, mesh_to_flexible_dual_grid
from .pbr import voxelize_pbr


def _keys(coords: np.ndarray, res: int) -> np.ndarray:
    c = np.asarray(coords).astype(np.int64)
    return (c[:, 0] * res + c[:, 1]) * res + c[:, 2]


def align_rows(src_coords: np.ndarray, src_attrs: dict, dst_coords: np.ndarray, res: int) -> dict:
    """Reorder `src_attrs` (rows of `src_coords`) into the row order of `dst_coords`; both must be the same set."""
    sk = _keys(src_coords, res)
    dk = _keys(dst_coords, res)
    order = np.argsort(sk)
    pos = np.clip(np.searchsorted(sk[order], dk), 0, max(len(sk) - 1, 0))
    if len(sk) != len(dk) or (len(dk) and not np.array_equal(sk[order][pos], dk)):
        raise ValueError("the PBR voxel set differs from the dual-grid voxel set")
    idx = order[pos]
    return {k: v[idx] for k, v in src_attrs.items()}


def pbr_voxels(dump: MeshDump, coords: np.ndarray, grid_size: int) -> dict[str, np.ndarray]:
    """PBR attributes of a normalised dump, row-aligned to `coords` (the dual grid's voxels)."""
    mats, ids = prepare_dump_materials(dump.materials, dump.mat_ids)
    pc, attrs = voxelize_pbr(dump.vertices, dump.faces, dump.uvs, ids, mats, dump.load_image, grid_size,
                             has_uv=dump.has_uv)
    return align_rows(pc, attrs, coords, grid_size)


@dataclass
class OVoxel:
    """coords int32 (N,3); shape = {"vertices" u8 (N,3), "intersected" u8 (N,1)};
    pbr = {"base_color" u8 (N,3), "metallic", "roughness", "alpha" u8 (N,1)}; timings in seconds."""

    grid_size: int
    coords: np.ndarray
    shape: dict
    pbr: dict
    timings: dict = field(default_factory=dict)


def convert_dump(dump: MeshDump, grid_size: int, with_pbr: bool = True) -> OVoxel:
    """Dual grid + PBR voxels of a normalised dump (see `normalized_dump`)."""
    t0 = time.perf_counter()
    coords, dual, inter = mesh_to_flexible_dual_grid(dump.vertices, dump.faces, grid_size)
    shape = dual_grid_attrs(coords, dual, inter, grid_size)
    t1 = time.perf_counter()
    pbr = pbr_voxels(dump, coords, grid_size) if with_pbr else {}
    t2 = time.perf_counter()
    return OVoxel(grid_size, coords, shape, pbr, {"dual_grid_s": t1 - t0, "pbr_s": t2 - t1})
