"""Evaluation: how close a generation is to its ground truth (geometry and appearance metrics), pictures of it, and
the base-vs-adapter generations of a training run's held-out objects.

- `mesh_metrics(pred, gt, samples=100_000, thresholds=(0.01, 0.02), seed=0) -> {"chamfer_l1", "chamfer_l2",
  "fscore": {"0.01", "0.02"}, "normal_consistency", "samples"}`: meshes as trimesh.Trimesh or (vertices, faces),
  compared in their own frame; distances are to the other surface, reproducible by seed.
- `load_mesh(path, label=None) -> trimesh.Trimesh`: a glb/obj/ply/stl file as given; InputError when it is not a mesh.
- `occupancy_iou(pred, gt)`, `coords_to_occupancy(coords, resolution)`: the sparse-structure stage's IoU.
- `psnr(pred, target, peak=1.0, mask=None)`, `voxel_psnr(pred_coords, pred_values, gt_coords, gt_values,
  peak=255.0) -> (dB, matched)`, `render_psnr(vertices, faces, {variant: face colours}, targets) -> {variant: dB}`:
  the texture stage's attribute voxels, and its renders from condition cameras against the condition renders.
- `render_mesh(vertices, faces, ...)` (orthographic), `render_camera(vertices, faces, transform_matrix, fov, ...)`
  (a condition render's camera), `camera_face_ids` + `colour_faces` (one z-buffer, several colourings),
  `render_occupancy(grid, ...)`, `preview_panel(rows) -> PNG bytes` (preview.py).
- `GenerationEval`, `HeldOutObject`, `evaluate_generations(...)` (held_out.py): what a training job runs on its
  held-out objects after saving the adapter; imported on first use (it needs torch and the generation pipeline).
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
    render_psnr,
    voxel_psnr,
)
from .preview import camera_face_ids, colour_faces, preview_panel, render_camera, render_mesh, render_occupancy

_LAZY = {"GenerationEval", "HeldOutObject", "evaluate_generations"}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import held_out

    return getattr(held_out, name)


__all__ = [
    "DEFAULT_SAMPLES",
    "FSCORE_THRESHOLDS",
    "GenerationEval",
    "HeldOutObject",
    "MESH_SUFFIXES",
    "camera_face_ids",
    "colour_faces",
    "coords_to_occupancy",
    "evaluate_generations",
    "load_mesh",
    "mesh_metrics",
    "occupancy_iou",
    "preview_panel",
    "psnr",
    "render_camera",
    "render_mesh",
    "render_occupancy",
    "render_psnr",
    "voxel_psnr",
]
