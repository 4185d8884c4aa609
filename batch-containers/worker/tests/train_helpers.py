"""Small preprocessed datasets for the train tests, written in the dataset zip format with the dataset package's
writer: random latents of the real shapes and small rendered-looking RGBA views (a disc on transparency)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image


def blender_camera(view: dict) -> np.ndarray:
    """The 4×4 camera-to-world matrix the Blender pass records for a view of render.cameras: at the view's position,
    its -Z tracking the origin with +Y up (TRACK_TO, TRACK_NEGATIVE_Z, UP_Y)."""
    from trellis2_worker.render import camera_location

    eye = camera_location(view)
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(right, forward), -forward, eye
    return m


def _views(folder: Path, rng: np.random.Generator, count: int, size: int = 64) -> None:
    from trellis2_worker.render import sample_views

    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    cameras = sample_views(count)  # the same cameras for every object (drawing a seed from rng would shift its data)
    yy, xx = np.mgrid[:size, :size]
    colour = rng.integers(40, 255, size=3)
    for i in range(count):
        cx, cy, r = rng.uniform(20, 44), rng.uniform(20, 44), rng.uniform(8, 18)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img = np.zeros((size, size, 4), np.uint8)
        img[inside, :3] = np.clip(colour * (0.6 + 0.4 * (xx[inside] / size))[:, None], 0, 255).astype(np.uint8)
        img[inside, 3] = 255
        Image.fromarray(img, "RGBA").save(folder / f"{i:03d}.png")
        frames.append({"file_path": f"{i:03d}.png", "camera_angle_x": cameras[i]["fov"],
                       "transform_matrix": blender_camera(cameras[i]).tolist()})
    (folder / "transforms.json").write_text(json.dumps({"aabb": [[-0.5] * 3, [0.5] * 3], "scale": 1.0,
                                                        "offset": [0, 0, 0], "frames": frames}))


def make_dataset(out: Path, tokens: list[int], resolution: int = 512, seed: int = 0, base=None,
                 views: int = 4, checkpoints: dict | None = None) -> Path:
    """A dataset zip with one object per entry of `tokens` (its shape/PBR latent token count).

    With `base` (a models.Base), the encoder checkpoints recorded are that base's, as preprocess would write them.
    `views` condition renders per object (preprocess writes 16; fewer keep the tests quick).
    """
    from trellis2_worker.dataset import DatasetStager

    rng = np.random.default_rng(seed)
    work = out.parent / (out.stem + "_staging")
    if checkpoints is None and base is not None:
        checkpoints = {k: base.checkpoint_sha256(k) for k in ("sparse_structure_encoder", "shape_slat_encoder",
                                                               "tex_slat_encoder")}
    stager = DatasetStager(work / "root", resolution, "tiny" if base is None else base.model_id, checkpoints or {},
                           {"shape": {"latent_channels": 32}, "pbr": {"latent_channels": 32}}, "test")
    grid = resolution // 16
    for i, t in enumerate(tokens):
        sha = hashlib.sha256(f"object-{seed}-{i}".encode()).hexdigest()
        flat = rng.choice(grid**3, size=t, replace=False)
        flat.sort()
        coords = np.stack(np.unravel_index(flat, (grid,) * 3), axis=1).astype(np.uint8)
        # Latents with per-object structure (a smooth field over the coords) so there is something to learn.
        phase = rng.normal(size=(3, 32))
        shape_feats = (np.sin(coords @ phase * 0.3) * 4 + rng.normal(size=32)).astype(np.float32)
        pbr_feats = (np.cos(coords @ phase * 0.2) * 2 + 1).astype(np.float32)
        z = (rng.normal(size=(8, 1, 1, 1)) + np.sin(np.linspace(0, 3, 16))[None, :, None, None]
             * rng.normal(size=(8, 1, 16, 16))).astype(np.float32)
        view_dir = work / "views" / sha
        _views(view_dir, rng, views)
        stager.add_object(sha, z, (shape_feats, coords), (pbr_feats, coords), view_dir)
    stager.finish(out)
    return out
