#!/usr/bin/env python3
"""Seconds per phase and peak memory of `trellis2-worker generate` (image -> textured GLB), base only.

- `--size tiny` (default): the tiny base, through the command's own code path (image preparation, DINOv3, the
  three samplers with pipeline.json's steps unless --steps, both decoders, mesh, GLB export).
- `--size full`: full-size models (the official configs in batch-containers/worker/tests/manifests, random weights,
  the decoders' biases shifted so that occupancy and subdivision give object-like token counts) and a random
  full-size DINOv3 ViT-L; meant for `--device cuda`. Random weights make timings, not shapes.

Run:  PYTHONPATH=batch-containers/worker/src python bench/generate_bench.py [--device cuda --size full]
      [--resolution 1024] [--steps 12] [--texture-size 2048]
Prints one JSON line: the phases (s), token counts, peak memory (MiB) and the load average while it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "batch-containers" / "worker" / "src"))

from trellis2_worker.generate import GenerateRequest, generate  # noqa: E402
from trellis2_worker.generate.options import DEFAULT_PIPELINE_TYPE  # noqa: E402

MANIFESTS = ROOT / "batch-containers" / "worker" / "tests" / "manifests"
# Object-like sizes for random full-size decoders: ~4% of the 64³ cells set, half the children kept per level.
FULL_OCCUPANCY = 0.04
FULL_KEEP = 0.5


def test_image(path: Path, size: int = 512) -> Path:
    """An RGBA disc with a colour gradient on transparency (a condition-render-like input)."""
    yy, xx = np.mgrid[:size, :size]
    inside = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 <= (size * 0.35) ** 2
    img = np.zeros((size, size, 4), np.uint8)
    img[..., 0] = (255 * xx / size).astype(np.uint8)
    img[..., 1] = (255 * yy / size).astype(np.uint8)
    img[..., 2] = 120
    img[..., 3] = np.where(inside, 255, 0)
    Image.fromarray(img, "RGBA").save(path)
    return path


def full_base(device: torch.device, work: Path) -> str:
    """A base directory holding only pipeline.json, with full-size random models put in its cache."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    from trellis2_worker.models import ImageConditioner, build_model, load_base
    from trellis2_worker.models.tiny import PIPELINE_MODELS, calibrate_decoders_, randomize_, tiny_pipeline

    pipeline = tiny_pipeline()
    pipeline.pop("tiny_version", None)
    (work / "pipeline.json").write_text(json.dumps(pipeline))
    base = load_base(str(work))
    gen = torch.Generator().manual_seed(0)
    dev = str(device)
    for key, rel in PIPELINE_MODELS.items():
        if key.endswith("_encoder"):
            continue
        cfg = json.loads((MANIFESTS / f"{Path(rel).name}.json").read_text())["config"]
        model = build_model(cfg, device="meta").to_empty(device=device)
        if hasattr(model, "reset_buffers"):
            model.reset_buffers()
        randomize_(model, gen)
        calibrate_decoders_(rel, model, occupancy=FULL_OCCUPANCY, keep=FULL_KEEP)
        base._models[(key, dev)] = model.eval().requires_grad_(False)
    dino = DINOv3ViTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                           num_register_tokens=4, patch_size=16, image_size=512, rope_theta=100.0,
                           layer_norm_eps=1e-5, query_bias=True, key_bias=False, value_bias=True,
                           use_gated_mlp=False, hidden_act="gelu")
    base._conditioner[dev] = ImageConditioner(DINOv3ViTModel(dino).eval()).to(device).requires_grad_(False)
    return str(work)


def peak_mib(device: torch.device) -> dict:
    out = {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if device.type == "cuda":
        out["peak_cuda_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--size", default="tiny", choices=("tiny", "full"))
    ap.add_argument("--resolution", type=int, default=512, choices=(512, 1024))
    ap.add_argument("--pipeline-type", default=None)
    ap.add_argument("--steps", type=int, default=None, help="steps of every sampler (default: pipeline.json's)")
    ap.add_argument("--texture-size", type=int, default=1024, choices=(1024, 2048, 4096))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="generate-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        base = "tiny" if args.size == "tiny" else full_base(device, work)
        build_s = time.perf_counter() - t0
        sampler = {s: {"steps": args.steps} for s in ("sparse_structure", "shape", "texture")} if args.steps else {}
        load_before = os.getloadavg()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        report = generate(GenerateRequest(
            image=str(test_image(work / "input.png")), output=str(work / "out.glb"), base=base, seed=args.seed,
            resolution=args.resolution, pipeline_type=args.pipeline_type or DEFAULT_PIPELINE_TYPE[args.resolution],
            texture_size=args.texture_size, allow_base_only=True, sampler=sampler, device=args.device,
            progress=False))
        total = time.perf_counter() - t0
        print(json.dumps({
            "size": args.size, "device": args.device, "torch_threads": torch.get_num_threads(),
            "resolution": args.resolution, "pipeline_type": report["pipeline_type"],
            "steps": {k: v["steps"] for k, v in report["sampler"].items()},
            "seconds": {"total": round(total, 2), **report["timings"]},
            "seconds_building_random_models": round(build_s, 1) if args.size == "full" else None,
            "tokens": report["tokens"], "glb": report["glb"], **peak_mib(device),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }))


if __name__ == "__main__":
    main()
