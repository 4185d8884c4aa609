"""Evaluation: how close a generation is to its ground truth (geometry and appearance metrics).

- `mesh_metrics(pred, gt, samples=100_000, thresholds=(0.01, 0.02), seed=0) -> {"chamfer_l1", "chamfer_l2",
  "fscore": {"0.01", "0.02"}, "normal_consistency", "samples"}`: meshes as trimesh.Trimesh or (vertices, faces),
  compared in their own frame; distances are to the other surface, reproducible by seed.
- `load_mesh(path, label=None) -> trimesh.Trimesh`: a glb/obj/ply/stl file as given; InputError when it is not a mesh.
- `occupancy_iou(pred, gt)`, `coords_to_occupancy(coords, resolution)`: the sparse-structure stage's IoU.
- `psnr(pred, target, peak=1.0, mask=None)`, `voxel_psnr(pred_coords, pred_values, gt_coords, gt_values,
  peak=255.0) -> (dB, matched)`: the texture stage's renders and attribute voxels.
- `DEFAULT_SAMPLES`, `FSCORE_THRESHOLDS`, `MESH_SUFFIXES`.
The `evaluate` command (cli.py) runs `mesh_metrics` on two files.
"""

from .metrics import (
    DEFAULT_SAMPLES,
    FSCORE_THRESHOLDS,
    MESH_SUFFIXES,
    coords_to_occupancy,
    load_mesh,
    mesh_metrics,
    occupancy_iou,
    psnr,
    voxel_psnr,
)

__all__ = [
    "DEFAULT_SAMPLES",
    "FSCORE_THRESHOLDS",
    "MESH_SUFFIXES",
    "coords_to_occupancy",
    "load_mesh",
    "mesh_metrics",
    "occupancy_iou",
    "psnr",
    "voxel_psnr",
]
