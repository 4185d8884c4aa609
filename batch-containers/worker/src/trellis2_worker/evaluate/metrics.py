"""Geometry and appearance metrics: Chamfer distance, F-score and normal consistency between two surfaces, IoU of
two occupancy grids, PSNR of images and of voxel attributes, and of a textured mesh rendered from condition cameras.

Surface metrics follow the usual recipe (Occupancy Networks, TRELLIS papers): sample points uniformly by area on each
surface, and for every sample take its distance to the other surface. Chamfer-L1 is the mean of the two directions'
mean distances, Chamfer-L2 the same with squared distances, F-score@τ the harmonic mean of precision (predicted
samples within τ of the ground truth) and recall (ground-truth samples within τ of the prediction).

Distances are to the other *surface*, not to its nearest sample: a KD-tree (scipy) over the other surface's samples
proposes the faces those nearest samples lie on, and trimesh's exact point-to-triangle projection picks the closest.
Point-to-sample distances alone carry a floor of about half the sample spacing (≈ 0.004 on a unit box at 100k
samples), which is a third of the 0.01 threshold; with the faces' projection the result can only be closer than the
nearest sample and is exact whenever the nearest face is among the proposals. trimesh's own `proximity.closest_point`
would need rtree (not installed) and is far slower at 100k points.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from trellis2_worker.errors import InputError

DEFAULT_SAMPLES = 100_000
FSCORE_THRESHOLDS = (0.01, 0.02)
MESH_SUFFIXES = (".glb", ".obj", ".ply", ".stl")
_CANDIDATES = 8  # nearest samples whose faces are tried per point: 4 left Chamfer 2.6 % high on spheres 0.004 apart
_CHUNK = 16_384  # points per projection batch: bounds the (chunk·candidates, 3, 3) triangle array to ~10 MB


def load_mesh(path: str | Path, label: str | None = None):
    """A mesh file (glb, obj, ply, stl) as one trimesh.Trimesh, as given: scene transforms applied, no rescaling.

    Read from bytes, so an OBJ's side files (mtllib, textures) are never opened; geometry is all that is compared.
    Raises InputError naming `label` (default: the file's name) when the file is not a mesh with faces."""
    import trimesh

    path = Path(path)
    name = label or path.name
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(f"{name}: not a mesh file (expected {', '.join(s[1:] for s in MESH_SUFFIXES)})")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder, not a mesh file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        mesh = trimesh.load_scene(io.BytesIO(data), file_type=suffix[1:]).to_mesh()
    except Exception as exc:  # noqa: BLE001 - trimesh raises many kinds for malformed files; all mean "not a mesh"
        raise InputError(f"{name}: not a readable {suffix[1:]} mesh ({type(exc).__name__})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(f"{name}: holds no triangles")
    if not np.isfinite(mesh.vertices).all():
        raise InputError(f"{name}: has non-finite vertex coordinates")
    if float(mesh.area) <= 0.0:
        raise InputError(f"{name}: its triangles have no area")
    return mesh


def as_trimesh(mesh):
    """A trimesh.Trimesh from a Trimesh or a (vertices, faces) pair, without merging or reordering anything."""
    import trimesh

    if isinstance(mesh, trimesh.Trimesh):
        return mesh
    vertices, faces = mesh
    return trimesh.Trimesh(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), process=False)


def surface_samples(mesh, count: int, seed) -> tuple[np.ndarray, np.ndarray]:
    """`count` points uniform by area on the surface and the index of the face each lies on (reproducible by seed)."""
    import trimesh

    points, faces = trimesh.sample.sample_surface(mesh, int(count), seed=seed)
    return np.asarray(points, np.float64), np.asarray(faces, np.int64)


def nearest_surface(points: np.ndarray, mesh, samples: np.ndarray, sample_faces: np.ndarray,
                    candidates: int = _CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """For each point, the distance to `mesh`'s surface and the face reached (see the module note)."""
    import trimesh
    from scipy.spatial import cKDTree

    k = min(candidates, len(samples))
    # Sliding-midpoint splits (not median): on clustered samples (a bad generation's few small scattered triangles)
    # the median tree's queries were 11x slower (20 s vs 1.7 s at 100k); on whole surfaces the two are within ~30 %.
    tree = cKDTree(samples, balanced_tree=False, compact_nodes=False)
    _, idx = tree.query(points, k=k, workers=-1)
    idx = idx.reshape(len(points), k)
    triangles = np.asarray(mesh.triangles, np.float64)
    dist = np.empty(len(points))
    face = np.empty(len(points), np.int64)
    for lo in range(0, len(points), _CHUNK):
        cand = sample_faces[idx[lo:lo + _CHUNK]]                                   # (c, k) face indices
        p = np.repeat(points[lo:lo + _CHUNK], k, axis=0)
        closest = trimesh.triangles.closest_point(triangles[cand.reshape(-1)], p)
        d = np.linalg.norm(closest - p, axis=1).reshape(-1, k)
        best = d.argmin(axis=1)
        rows = np.arange(len(best))
        dist[lo:lo + _CHUNK] = d[rows, best]
        face[lo:lo + _CHUNK] = cand[rows, best]
    return dist, face


def mesh_metrics(pred, gt, samples: int = DEFAULT_SAMPLES, thresholds: Sequence[float] = FSCORE_THRESHOLDS,
                 seed: int = 0) -> dict:
    """Chamfer-L1/L2, F-score at each threshold and normal consistency of `pred` against `gt`, in their own frame.

    `pred`/`gt`: trimesh.Trimesh or (vertices, faces). Each surface gets `samples` points from its own stream of
    `seed`, so the same call gives the same figures. Normal consistency is the mean |cos| between a sample's face
    normal and the normal of the face it reaches, averaged over both directions (orientation-free: generated meshes
    need not wind their faces consistently)."""
    if samples < 1:
        raise InputError(f"samples must be at least 1, got {samples}")
    pred, gt = as_trimesh(pred), as_trimesh(gt)
    streams = np.random.SeedSequence(seed).spawn(2)
    p_pts, p_faces = surface_samples(pred, samples, np.random.default_rng(streams[0]))
    g_pts, g_faces = surface_samples(gt, samples, np.random.default_rng(streams[1]))
    d_pg, f_pg = nearest_surface(p_pts, gt, g_pts, g_faces)      # precision side: prediction → ground truth
    d_gp, f_gp = nearest_surface(g_pts, pred, p_pts, p_faces)    # recall side: ground truth → prediction
    fscore = {}
    for tau in thresholds:
        precision = float(np.mean(d_pg < tau))
        recall = float(np.mean(d_gp < tau))
        fscore[_threshold_key(tau)] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    pn, gn = np.asarray(pred.face_normals), np.asarray(gt.face_normals)
    nc_pg = np.abs(np.sum(pn[p_faces] * gn[f_pg], axis=1)).mean()
    nc_gp = np.abs(np.sum(gn[g_faces] * pn[f_gp], axis=1)).mean()
    return {
        "chamfer_l1": float(0.5 * (d_pg.mean() + d_gp.mean())),
        "chamfer_l2": float(0.5 * (np.square(d_pg).mean() + np.square(d_gp).mean())),
        "fscore": fscore,
        "normal_consistency": float(0.5 * (nc_pg + nc_gp)),
        "samples": int(samples),
    }


def _threshold_key(tau: float) -> str:
    return f"{tau:g}"


def occupancy_iou(pred, gt) -> float:
    """Intersection over union of two boolean occupancy grids of one shape (1.0 when both are empty)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"occupancy grids differ in shape: {pred.shape} vs {gt.shape}")
    union = int(np.count_nonzero(pred | gt))
    return 1.0 if union == 0 else int(np.count_nonzero(pred & gt)) / union


def coords_to_occupancy(coords, resolution: int) -> np.ndarray:
    """A (R, R, R) boolean grid with the given (N, 3) integer cells set; cells outside the grid are an error."""
    coords = np.asarray(coords, np.int64).reshape(-1, 3)
    if len(coords) and (coords.min() < 0 or coords.max() >= resolution):
        raise ValueError(f"occupancy coordinates outside the {resolution}³ grid")
    grid = np.zeros((resolution,) * 3, bool)
    grid[coords[:, 0], coords[:, 1], coords[:, 2]] = True
    return grid


def psnr(pred, target, peak: float = 1.0, mask=None) -> float:
    """Peak signal-to-noise ratio in dB over all values (or the `mask`ed pixels); inf when they are equal."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"PSNR of arrays of different shapes: {pred.shape} vs {target.shape}")
    err = np.square(pred - target)
    if mask is not None:
        err = err[np.asarray(mask, bool)]
    if err.size == 0:
        raise ValueError("PSNR over no values")
    mse = float(err.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(peak * peak / mse))


def voxel_psnr(pred_coords, pred_values, gt_coords, gt_values, peak: float = 255.0) -> tuple[float, int]:
    """PSNR of per-voxel values over the voxels both sets hold (matched by coordinates), and how many matched."""
    pred_coords = np.asarray(pred_coords, np.int64).reshape(-1, 3)
    gt_coords = np.asarray(gt_coords, np.int64).reshape(-1, 3)
    pred_values = np.asarray(pred_values, np.float64).reshape(len(pred_coords), -1)
    gt_values = np.asarray(gt_values, np.float64).reshape(len(gt_coords), -1)
    if pred_values.shape[1] != gt_values.shape[1]:
        raise ValueError(f"voxel values differ in channels: {pred_values.shape[1]} vs {gt_values.shape[1]}")
    _, pi, gi = np.intersect1d(_cell_keys(pred_coords), _cell_keys(gt_coords), assume_unique=False,
                               return_indices=True)
    if len(pi) == 0:
        raise ValueError("the two voxel sets share no coordinates")
    return psnr(pred_values[pi], gt_values[gi], peak=peak), int(len(pi))


def _cell_keys(coords: np.ndarray) -> np.ndarray:
    # One int64 per cell; grid coordinates are non-negative and far below 2^21 at any TRELLIS.2 resolution.
    if len(coords) and (coords.min() < 0 or coords.max() >= 1 << 21):
        raise ValueError("voxel coordinates must lie in [0, 2^21)")
    return (coords[:, 0] << 42) | (coords[:, 1] << 21) | coords[:, 2]


def render_psnr(vertices, faces, face_colours: dict, targets) -> dict:
    """{variant: PSNR (dB)} of the mesh's flat base colour in each variant's face colours, rendered from each
    target's camera, against the condition renders over the pixels of their alpha masks (all views together);
    None with no view or an empty mask. Pixels of the object the mesh leaves empty count as white. The mesh is the
    same for every variant (the object's own shape), so each view is z-buffered once. `targets`: (view,
    transforms.json frame, RGB in [0, 1] on white, alpha mask) per view."""
    from trellis2_worker.evaluate.preview import camera_face_ids, colour_faces

    ids = [camera_face_ids(vertices, faces, frame["transform_matrix"], float(frame["camera_angle_x"]),
                           size=rgb.shape[0]) for _, frame, rgb, _ in targets]
    masks = np.stack([mask for *_, mask in targets]) if targets else None
    out = {}
    for name, fc in face_colours.items():
        if masks is None or not masks.any():
            out[name] = None
            continue
        preds = np.stack([colour_faces(i, fc) for i in ids]) / 255.0
        db = psnr(preds, np.stack([rgb for _, _, rgb, _ in targets]), mask=masks)
        out[name] = db if np.isfinite(db) else None
    return out
