"""O-Voxel conversion: meshes to TRELLIS.2's sparse voxel formats and back (docs/data-formats.md).

Public surface (numpy in, numpy out; every heavy loop is numba-compiled, cached on disk):

Dumps (what `ingest` writes, DIR/dumps/<sha>/):
- `load_dump(dir) -> MeshDump`: mesh.npz + materials.json (+ PNG textures read on demand, plain names only).
- `normalize_unit_cube(vertices) -> f32 (V,3)`: the exact normalisation, `(v - center) * (0.99999 / max_extent)`
  with torch's float32 arithmetic (docs/data-formats.md#normalisation).
- `normalized_dump(dump)`, `prepare_dump_materials(materials, mat_ids)`: the toolkit's fixes (default material, alpha
  fix).

Shape (flexible dual grid, docs/data-formats.md#dual-grid):
- `mesh_to_flexible_dual_grid(vertices, faces, grid_size, aabb=unit cube, face_weight=1.0, boundary_weight=0.2,
  regularization_weight=1e-2) -> (coords int32 (N,3), dual_vertices f32 (N,3) in the aabb-min-shifted frame,
  intersected bool (N,3))`, discovery order. Defaults are the data toolkit's (not the reference function's).
- `dual_grid_attrs(coords, dual_vertices, intersected, grid_size) -> {"vertices": u8 (N,3), "intersected": u8 (N,1)}`:
  what goes into dual_grid_<res>/<sha>.vxz.
- `flexible_dual_grid_to_mesh(coords, local, intersected, grid_size, aabb=unit, split_weight=None)
  -> (vertices f32, faces i64)`: the inverse, on CPU (`local` = stored vertices / 255).

Material (docs/data-formats.md#pbr-voxels):
- `voxelize_pbr(vertices, faces, uvs, mat_ids, materials, load_image, grid_size, has_uv=None)
  -> (coords, {"base_color" (N,3), "metallic", "roughness", "alpha" (N,1)} u8)`.
- `pbr_voxels(dump, coords, grid_size) -> attrs`: the same, aligned row by row to given coords (the dual grid's);
  `dump` must already be normalised (`normalized_dump`).
- `convert_dump(dump, grid_size) -> OVoxel`: both, on one normalised dump, sharing one coords array.

Sparse-structure occupancy (docs/data-formats.md#ss-occupancy):
- `ss_occupancy(vertices, faces, fine=1024, coarse=64) -> coords int32 (N,3)`: the 64³ cells the 1024 dual grid
  occupies, by the same crossing scan, without building that grid.
- `occupancy_grid(coords, size=64) -> f32 (1,size,size,size)`: the SS encoder's dense input.

Files (docs/data-formats.md#vxz):
- `write_vxz(path|file, coords, attrs, ...)`, `read_vxz(path|bytes|file) -> (coords int32, attrs)`,
  `read_vxz_info(path) -> header dict`; byte-compatible with o_voxel.io (raw LZMA2 preset 9 by default).
  (The latent npz files are the dataset's: `trellis2_worker.dataset`.)
"""

from .convert import OVoxel, convert_dump, pbr_voxels
from .dump import MeshDump, load_dump, normalize_unit_cube, normalized_dump, prepare_dump_materials
from .extract import flexible_dual_grid_to_mesh
from .fdg import dual_grid_attrs, mesh_to_flexible_dual_grid
from .occupancy import occupancy_grid, ss_occupancy
from .pbr import voxelize_pbr
from .vxz import read_vxz, read_vxz_info, write_vxz

__all__ = [
    "MeshDump", "OVoxel", "convert_dump", "dual_grid_attrs", "flexible_dual_grid_to_mesh", "load_dump",
    "mesh_to_flexible_dual_grid", "normalize_unit_cube", "normalized_dump", "occupancy_grid", "pbr_voxels",
    "prepare_dump_materials", "read_vxz", "read_vxz_info", "ss_occupancy", "voxelize_pbr", "write_vxz",
]
