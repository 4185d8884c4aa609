"""The training data of one run: the dataset's objects as the stage trains on them, and the per-step draws.

Every random draw of step s comes from a generator seeded by (seed, s), so a resumed run draws what an
uninterrupted one would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trellis2_worker.errors import InputError
from trellis2_worker.train.recipe import SS_TOKENS, STAGES, Stage


@dataclass
class TrainObject:
    sha256: str
    tokens: int
    x0: torch.Tensor  # dense [8,16,16,16] or sparse feats [T,C], normalised as the stage trains on it
    coords: torch.Tensor | None  # int32 [T,3] for the sparse stages
    concat: torch.Tensor | None  # normalised shape feats [T,32] (texture only)
    renders: int


def _stats(base, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    n = base.normalization(key)
    return torch.tensor(n["mean"], dtype=torch.float32), torch.tensor(n["std"], dtype=torch.float32)


def load_objects(ds, stage: Stage, resolution: int, base) -> tuple[list[TrainObject], list[dict]]:
    """The objects this stage trains on, latents normalised (docs/training.md#latent-normalisation), and those
    skipped for size."""
    cap = stage.max_object_tokens(resolution)
    shape_key = STAGES["geometry"].model_key(resolution)
    shape_stats = _stats(base, shape_key) if stage.sparse else None
    tex_stats = _stats(base, STAGES["texture"].model_key(resolution)) if stage.denoiser == "texture" else None
    objects, skipped = [], []
    for entry in ds.info["objects"]:
        sha = entry["sha256"]
        tokens = SS_TOKENS if not stage.sparse else int(entry["pbr_tokens" if stage.uses_shape_concat else "shape_tokens"])
        if cap is not None and tokens > cap:
            skipped.append({"sha256": sha, "tokens": tokens,
                            "reason": f"{tokens} latent tokens is more than the {cap} the reference trains on at {resolution}"})
            continue
        if tokens == 0:
            skipped.append({"sha256": sha, "tokens": 0, "reason": "empty latent"})
            continue
        renders = int(entry["renders"])
        if not stage.sparse:
            objects.append(TrainObject(sha, tokens, torch.from_numpy(np.array(ds.ss_latent(sha))), None, None, renders))
            continue
        shape = ds.shape_latent(sha)
        coords = torch.from_numpy(np.array(shape.coords, dtype=np.int32))
        shape_feats = (torch.from_numpy(np.array(shape.feats)) - shape_stats[0]) / shape_stats[1]
        if stage.denoiser == "geometry":
            objects.append(TrainObject(sha, tokens, shape_feats, coords, None, renders))
        else:
            pbr = ds.pbr_latent(sha)
            if not np.array_equal(pbr.coords, shape.coords):
                raise InputError(f"object {sha[:12]}: PBR latent coords differ from the shape latent's")
            feats = (torch.from_numpy(np.array(pbr.feats)) - tex_stats[0]) / tex_stats[1]
            objects.append(TrainObject(sha, tokens, feats, coords, shape_feats, renders))
    return objects, skipped


def check_encoders(ds, base, stage: Stage, resolution: int) -> None:
    """Latents only make sense with the encoder weights that made them; compare checkpoints where both say."""
    recorded = ds.info.get("checkpoints") or {}
    needed = ["sparse_structure_encoder"] if not stage.sparse else ["shape_slat_encoder"]
    if stage.denoiser == "texture":
        needed.append("tex_slat_encoder")
    for key in needed:
        if key in recorded:
            try:
                have = base.checkpoint_sha256(key)
            except Exception:  # noqa: BLE001 - a base without that encoder file cannot be compared, only trusted
                continue
            if have != recorded[key]:
                raise InputError(f"the dataset was encoded with other {key} weights than base {base.model_id!r} "
                                 f"has; preprocess it again with this base")


def dataset_sha256(path: Path) -> str:
    """The dataset's identity in the adapter's header and the checkpoint fingerprint (a directory: names + bytes)."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
        return h.hexdigest()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Objects of step `step` (0-based): consecutive slices of an endless stream of per-epoch permutations."""
    out, cache = [], {}
    for j in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(j, n)
        if epoch not in cache:
            cache[epoch] = np.random.default_rng([seed, epoch, 1]).permutation(n)
        out.append(int(cache[epoch][pos]))
    return out


def step_generators(seed: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    seq = np.random.SeedSequence([seed, step, 2])
    return np.random.default_rng(seq), torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0]) >> 1)
