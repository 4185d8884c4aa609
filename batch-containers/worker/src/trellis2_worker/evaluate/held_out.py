"""Generations of held-out objects with the base alone and with a stage's new adapter, compared with the objects'
own ground truth, and the preview panel of them. Run inside a training job after the adapter is saved.

For each held-out object (up to a cap), from its condition view 0, with one seed and the pipeline's own sampler
settings, and only this stage's flow swapped (base, adapter, and the EMA when there is one):
- sparse_structure: IoU of the generated 64³ occupancy against the object's, its SS latent decoded by the base's
  SS decoder (the dataset holds latents, not the voxelised mesh).
- geometry: the sparse structure sampled once with the base, then the shape latent with each variant; the meshes
  decoded by the base's shape decoder against the mesh decoded from the object's own shape latent, Chamfer-L1/L2,
  F-score@0.01/0.02 and normal consistency, all in the unit cube the preprocessing normalises to.
- texture: the object's shape latent as the texture flow's condition (its real input); the PSNR of the decoded
  base colour against the object's own PBR latent decoded on the same voxels, and of the textured mesh rendered
  from condition cameras (`RENDER_VIEWS`, at `RENDER_SIZE`) against those condition renders on their alpha mask.
The ground truth is therefore "the object as its latents hold it": what a perfect flow would reach through the same
decoders, so the figures measure the flows, not the VAEs.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from trellis2_worker.evaluate.metrics import (
    DEFAULT_SAMPLES,
    coords_to_occupancy,
    mesh_metrics,
    occupancy_iou,
    render_psnr,
    voxel_psnr,
)
from trellis2_worker.evaluate.preview import VIEWS, preview_panel, render_mesh, render_occupancy
from trellis2_worker.progress import counter

SEED = 1234
SS_GRID = 64
DEFAULT_BUDGET_S = 1800.0  # the evaluation stops starting new objects after this; the adapter is already saved
# The texture stage's render PSNR: two condition views (the one it is conditioned on, and one from the other half of
# the 16-view set: a different side), small, since each costs a render per variant.
RENDER_VIEWS = (0, 8)
RENDER_SIZE = 128
ALPHA_MASK = 0.5  # a condition pixel counts as the object's where its alpha is at least this


@dataclass
class HeldOutObject:
    sha256: str
    condition: torch.Tensor      # [1, L, C] DINOv3 features of its view 0 at the stage's image size
    cond_512: torch.Tensor       # the same at 512 (the sparse-structure flow's size)
    image: object                # its view 0 (PIL), for the panel


@dataclass
class GenerationEval:
    stage: str                   # sparse_structure | geometry | texture
    resolution: int
    flow_key: str                # the base model key this stage's adapter is on
    variants: dict[str, Callable[[], contextlib.AbstractContextManager]]  # name -> context that puts it in place
    samples: int = DEFAULT_SAMPLES
    budget_s: float = DEFAULT_BUDGET_S
    seed: int = SEED
    progress: bool = False       # a counter of the objects (done / total, rate, ETA) on stderr
    timings: dict = field(default_factory=dict)


def _sparse(feats, coords) -> "object":
    from trellis2_worker.models import SparseTensor

    coords = torch.as_tensor(np.asarray(coords), dtype=torch.int32)
    batch = torch.zeros(len(coords), 1, dtype=torch.int32)
    return SparseTensor(torch.as_tensor(np.asarray(feats), dtype=torch.float32), torch.cat([batch, coords], 1))


def _shape_decode(pipe, slat, resolution: int):
    """(decoder output, subdivisions, vertices, faces): the shape half of Trellis2Pipeline.decode, which also runs the
    texture decoder; the geometry stage needs the mesh alone."""
    from trellis2_worker.generate.pipeline import MESH_AABB
    from trellis2_worker.models import SparseUnetVaeDecoder
    from trellis2_worker.ovoxel import flexible_dual_grid_to_mesh

    decoder = pipe.model("shape_slat_decoder")
    decoder.set_resolution(resolution)
    h, subs = SparseUnetVaeDecoder.forward(decoder, slat, return_subs=True)
    f = decoder.fields(h)[0]
    vertices, faces = flexible_dual_grid_to_mesh(
        f.coords.cpu().numpy().astype(np.int32), f.vertices.float().cpu().numpy(), f.intersected.cpu().numpy(),
        grid_size=resolution, aabb=MESH_AABB, split_weight=f.quad_lerp.float().cpu().numpy())
    return h, subs, vertices, faces


def _mesh_scores(vertices, faces, gt, samples: int, seed: int) -> dict:
    if len(faces) == 0:
        return {"empty_mesh": True}
    return {k: v for k, v in mesh_metrics((vertices, faces), gt, samples=samples, seed=seed).items() if k != "samples"}


def _face_colours(vertices, faces, voxel_coords, colours, resolution: int):
    """Each face's base colour: that of the decoded voxel nearest its centroid (for the texture stage's pictures)."""
    from scipy.spatial import cKDTree

    if len(faces) == 0 or len(voxel_coords) == 0:
        return None
    centres = (np.asarray(voxel_coords, np.float64) + 0.5) / resolution - 0.5
    _, idx = cKDTree(centres).query(np.asarray(vertices)[faces].mean(axis=1), workers=-1)
    return np.clip(np.asarray(colours)[idx, :3], 0, 1)


def condition_targets(dataset, sha256: str, size: int = RENDER_SIZE) -> list[tuple]:
    """Per view of `RENDER_VIEWS` the object has: (view, its transforms.json frame, its RGB in [0, 1] on white at
    size², its alpha mask), what `render_psnr` compares a generation's renders with."""
    from PIL import Image

    frames = dataset.transforms(sha256)["frames"]
    out = []
    for view in [v for v in RENDER_VIEWS if v < min(dataset.num_renders(sha256), len(frames))]:
        image = dataset.render(sha256, view).convert("RGBA").resize((size, size), Image.Resampling.BILINEAR)
        rgba = np.asarray(image, np.float64) / 255.0
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + (1 - alpha)  # on white, as the generations are rendered
        out.append((view, frames[view], rgb, alpha[..., 0] >= ALPHA_MASK))
    return out


def _views(render) -> list[np.ndarray]:
    return [render(az, el) for az, el in VIEWS]


@torch.no_grad()
def evaluate_generations(ev: GenerationEval, base, device, objects: list[HeldOutObject], dataset,
                         models: dict) -> tuple[dict, bytes | None]:
    """(metrics, preview PNG) over `objects`; `models` = {flow key: the model whose adapter the variants switch}."""
    from trellis2_worker.generate.pipeline import Trellis2Pipeline

    pipe = Trellis2Pipeline(base, device, models=models)
    deadline = time.monotonic() + ev.budget_s
    per_object, rows = [], []
    started = time.perf_counter()
    bar = counter(len(objects), f"evaluate {ev.stage} generations", "object", ev.progress)
    try:
        for obj in objects:
            if time.monotonic() > deadline:
                break
            rec, row = _evaluate_object(ev, pipe, device, obj, dataset)
            per_object.append(rec)
            rows.append(row)
            bar.update(1)
    finally:
        bar.close()
    metrics = {"objects": len(per_object), "seed": ev.seed, "per_object": per_object,
               "mean": _means(per_object, list(ev.variants)), "generation_s": round(time.perf_counter() - started, 3)}
    if len(per_object) < len(objects):
        metrics["stopped_early"] = f"the {ev.budget_s:g} s evaluation budget ran out after {len(per_object)} objects"
    if ev.stage == "geometry":
        metrics["samples"] = ev.samples
    return metrics, (preview_panel(rows) if rows else None)

def _evaluate_object(ev: GenerationEval, pipe, device, obj: HeldOutObject, dataset) -> tuple[dict, dict]:
    """One held-out object's scores per variant and its row of the panel."""
    from trellis2_worker.generate.pipeline import PIPELINE_TYPES

    rec: dict = {"sha256": obj.sha256}
    row = {"condition": obj.image, "title": obj.sha256[:12], "base": [], "adapted": []}
    if ev.stage == "sparse_structure":
        z = torch.as_tensor(np.asarray(dataset.ss_latent(obj.sha256)), dtype=torch.float32)[None].to(device)
        gt = (pipe.model("sparse_structure_decoder")(z) > 0)[0, 0].cpu().numpy()
        for name, variant in ev.variants.items():
            torch.manual_seed(ev.seed)
            with variant():
                coords = pipe.sample_sparse_structure(obj.cond_512, SS_GRID).cpu().numpy()[:, 1:]
            occ = coords_to_occupancy(coords, SS_GRID)
            rec[name] = {"iou": occupancy_iou(occ, gt)}
            row[name] = _views(lambda az, el, o=occ: render_occupancy(o, azimuth=az, elevation=el))
    elif ev.stage == "geometry":
        pt = PIPELINE_TYPES["512" if ev.resolution == 512 else "1024"]
        torch.manual_seed(ev.seed)
        ss = pipe.sample_sparse_structure(obj.cond_512, pt.ss_resolution)  # the base's: the same for all
        shape = dataset.shape_latent(obj.sha256)
        _, _, gv, gf = _shape_decode(pipe, _sparse(shape.feats, shape.coords).to(device), ev.resolution)
        gt = (gv, gf)
        for name, variant in ev.variants.items():
            torch.manual_seed(ev.seed + 1)
            with variant():
                slat = pipe.sample_shape_slat(obj.condition, ev.flow_key, ss)
            _, _, v, f = _shape_decode(pipe, slat, ev.resolution)
            rec[name] = _mesh_scores(v, f, gt, ev.samples, ev.seed)
            row[name] = _views(lambda az, el, v=v, f=f: render_mesh(v, f, azimuth=az, elevation=el))
    else:
        shape = dataset.shape_latent(obj.sha256)
        shape_slat = _sparse(shape.feats, shape.coords).to(device)
        h, subs, v, f = _shape_decode(pipe, shape_slat, ev.resolution)
        tex_decoder = pipe.model("tex_slat_decoder")
        pbr = dataset.pbr_latent(obj.sha256)
        gt_attrs = tex_decoder(_sparse(pbr.feats, pbr.coords).to(device), guide_subs=subs) * 0.5 + 0.5
        gt_coords = gt_attrs.coords[:, 1:].cpu().numpy()
        gt_colour = gt_attrs.feats[:, :3].float().cpu().numpy()
        targets = condition_targets(dataset, obj.sha256)
        rec["render_views"] = [view for view, *_ in targets]
        colours = {}
        for name, variant in ev.variants.items():
            torch.manual_seed(ev.seed)
            with variant():
                tex = pipe.sample_tex_slat(obj.condition, ev.flow_key, shape_slat)
            attrs = tex_decoder(tex, guide_subs=subs) * 0.5 + 0.5
            colour = attrs.feats[:, :3].float().cpu().numpy()
            coords = attrs.coords[:, 1:].cpu().numpy()
            db, matched = voxel_psnr(coords, np.clip(colour, 0, 1), gt_coords, np.clip(gt_colour, 0, 1), peak=1.0)
            fc = colours[name] = _face_colours(v, f, coords, colour, ev.resolution)
            rec[name] = {"base_color_voxel_psnr": db if np.isfinite(db) else None, "voxels": matched}
            row[name] = _views(lambda az, el, fc=fc: render_mesh(v, f, azimuth=az, elevation=el, face_colors=fc))
        for name, db in render_psnr(v, f, colours, targets).items():
            rec[name]["base_color_render_psnr"] = db
    row["base_caption"] = _caption(rec.get("base", {}))
    row["adapted_caption"] = _caption(rec.get("adapted", {}))
    return rec, row


def _caption(scores: dict) -> str:
    if "iou" in scores:
        return f"IoU {scores['iou']:.3f}"
    if "chamfer_l1" in scores:
        return (f"CD-L1 {scores['chamfer_l1']:.4f} F@0.01 {scores['fscore']['0.01']:.3f} "
                f"F@0.02 {scores['fscore']['0.02']:.3f}")
    parts = [f"{label} {scores[k]:.2f} dB" for k, label in
             (("base_color_voxel_psnr", "voxel PSNR"), ("base_color_render_psnr", "render PSNR"))
             if scores.get(k) is not None]
    if parts:
        return "base colour: " + ", ".join(parts)
    return "empty mesh" if scores.get("empty_mesh") else ""


def _means(per_object: list[dict], variants: list[str]) -> dict:
    """Per variant, the mean of each number over the objects that have it (an empty mesh has none)."""
    out = {}
    for name in variants:
        flat: dict[str, list[float]] = {}
        for rec in per_object:
            for k, v in _flatten(rec.get(name, {})).items():
                flat.setdefault(k, []).append(v)
        out[name] = {k: float(np.mean(v)) for k, v in flat.items() if np.isfinite(v).all()}
    return out


def _flatten(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}@"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = float(v)
    return out
