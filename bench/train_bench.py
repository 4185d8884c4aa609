#!/usr/bin/env python
"""Training speed and memory per stage: steps/s, seconds/step, peak memory, and MFU on CUDA.

    $PY bench/train_bench.py                      # tiny base, CPU (what this machine can do)
    $PY bench/train_bench.py --device cuda        # tiny base on a GPU
    $PY bench/train_bench.py --device cuda --size full --tokens 6000
        # the real 1.3B flow and ViT-L DINOv3 shapes with random weights (no download), a real-scale step

Each stage runs in its own process (clean peak memory) on a synthetic dataset in the real zip format: `--objects`
objects of `--tokens` latent tokens each (the SS stage always sees 16³ = 4096 tokens per object), 8 objects a step.
MFU counts the useful FLOPs of a LoRA step (the forward, the backward to activations; no weight gradients for the
frozen base, no checkpoint recompute) over the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "batch-containers" / "worker"
sys.path[:0] = [str(WORKER / "src"), str(WORKER / "tests")]

STAGES = ("sparse_structure", "geometry", "texture")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}

# The official checkpoint configs, as the models tests' manifests record them (file name = the checkpoint's).
MANIFESTS = WORKER / "tests" / "manifests"


def full_config(key: str) -> dict:
    """The official config {"name", "args"} of a base model key (`shape_slat_flow_model_1024`, ...)."""
    from trellis2_worker.models.tiny import PIPELINE_MODELS

    return json.loads((MANIFESTS / f"{Path(PIPELINE_MODELS[key]).name}.json").read_text())["config"]


class RandomFullBase:
    """The real model shapes with random weights, built in memory: what a step costs at full size, no download."""

    model_id = "random-full-size"

    def __init__(self):
        from trellis2_worker.models import load_base

        self._tiny = load_base("tiny")  # the normalisation constants' format, the keys, the official sampler settings
        self.pipeline, self.model_paths = self._tiny.pipeline, self._tiny.model_paths
        self._models, self._cond = {}, {}

    def load(self, key, device="cpu"):
        import torch
        from trellis2_worker.models import build_model

        if key not in self._models:
            m = build_model(full_config(key), device=device).eval()
            m.requires_grad_(False)
            self._models[key] = m
        return self._models[key]

    def clear(self):
        """Drops the built models (one stage's peak memory should not hold another's model)."""
        self._models.clear()

    def checkpoint_sha256(self, key):
        return "0" * 64

    def normalization(self, key):
        return self._tiny.normalization(key)

    def image_conditioner(self, device="cpu", image_size=512):
        from transformers import DINOv3ViTModel
        from trellis2_worker.models.conditioner import ImageConditioner, tiny_dinov3_config

        if device not in self._cond:
            cfg = tiny_dinov3_config(hidden_size=1024)
            cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size = 24, 16, 4096
            self._cond[device] = ImageConditioner(DINOv3ViTModel(cfg), image_size=image_size).to(device).eval()
            self._cond[device].requires_grad_(False)
        self._cond[device].image_size = image_size
        return self._cond[device]


def step_flops(model, stage: str, tokens: int, objects: int, cond_tokens: int, dino, passes: int = 2) -> float:
    """Useful FLOPs of one optimiser step: 2× the forward's matmul FLOPs (forward + backward to activations);
    `passes=3` counts the flow as full training would (weight gradients too), the usual MFU convention."""
    C, M, Cc, L = model.model_channels, int(model.model_channels * model.mlp_ratio), model.cond_channels, model.num_blocks
    T = 4096 if stage == "sparse_structure" else tokens
    per_obj = L * (2 * T * C * (3 * C + C + C + C + 2 * M) + 2 * cond_tokens * Cc * 2 * C
                   + 4 * T * T * C + 4 * T * cond_tokens * C)
    d = dino.model.config
    dino_fwd = d.num_hidden_layers * (2 * cond_tokens * d.hidden_size * (4 * d.hidden_size + 2 * d.intermediate_size)
                                      + 4 * cond_tokens ** 2 * d.hidden_size)
    return objects * (passes * per_obj + dino_fwd)


def one(args, base=None) -> dict:
    """One stage's measured run as the CLI's --stage child does it; `base` may be passed in to reuse one."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from train_helpers import make_dataset
    from trellis2_worker.train.trainer import TrainRequest, train

    if base is None and args.size == "full":
        base = RandomFullBase()
    elif base is None:
        from trellis2_worker.models import load_base

        base = load_base("tiny")
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    tokens = args.tokens or (200 if args.size == "tiny" else 6000)
    ds = make_dataset(work / "ds.zip", [tokens] * args.objects, resolution=args.resolution,
                      base=None if args.size == "full" else base)
    times = []
    steps = args.warmup + args.steps
    req = TrainRequest(dataset=str(ds), denoiser=args.stage, resolution=args.resolution, rank=args.rank,
                       learning_rate=1e-4, training_steps=steps, output=str(work / f"{args.stage}.safetensors"),
                       batch_size=args.batch_size, device=args.device, progress=False,
                       eval_objects=getattr(args, "eval_objects", 1),
                       checkpoint_every=10**9, gradient_checkpointing=not args.no_checkpointing)
    cuda = args.device == "cuda"

    def on_step(step, record):
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter())
        if step == args.warmup and cuda:
            torch.cuda.reset_peak_memory_stats()

    try:
        train(req, base=base, on_step=on_step)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    measured = times[args.warmup:]
    sec = (measured[-1] - times[args.warmup - 1]) / len(measured) if args.warmup else (measured[-1] - measured[0]) / (len(measured) - 1)
    out = {"stage": args.stage, "device": args.device, "size": args.size, "resolution": args.resolution,
           "tokens_per_object": 4096 if args.stage == "sparse_structure" else tokens, "objects_per_step": args.batch_size,
           "rank": args.rank, "gradient_checkpointing": not args.no_checkpointing,
           "seconds_per_step": round(sec, 4), "steps_per_second": round(1 / sec, 3)}
    if cuda:
        out["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        name = torch.cuda.get_device_name()
        model = base.load(("sparse_structure_flow_model" if args.stage == "sparse_structure" else
                           ("shape" if args.stage == "geometry" else "tex") + f"_slat_flow_model_{args.resolution}"),
                          device="cuda")
        dino = base.image_conditioner("cuda")
        image = 512 if args.stage == "sparse_structure" else args.resolution
        cond_tokens = 1 + 4 + (image // 16) ** 2
        flops = step_flops(model, args.stage, tokens, args.batch_size, cond_tokens, dino)
        out["gpu"] = name
        out["tflops_per_step"] = round(flops / 1e12, 2)
        peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
        out["mfu"] = round(flops / sec / peak, 4) if peak else None
        full = step_flops(model, args.stage, tokens, args.batch_size, cond_tokens, dino, passes=3)
        out["mfu_3x_forward"] = round(full / sec / peak, 4) if peak else None
    out["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--size", default="tiny", choices=["tiny", "full"])
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    p.add_argument("--resolution", type=int, default=512, choices=[512, 1024])
    p.add_argument("--tokens", type=int, default=None, help="latent tokens per object (default 200 tiny, 6000 full)")
    p.add_argument("--objects", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="measured steps")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-checkpointing", action="store_true")
    p.add_argument("--stage", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        print("RESULT " + json.dumps(one(args)))
        return
    rows = []
    for stage in args.stages:
        cmd = [sys.executable, __file__, "--stage", stage] + [a for a in sys.argv[1:] if a != "--stages" and a not in STAGES]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{stage}: failed\n{r.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[7:]))
        print(json.dumps(rows[-1]), flush=True)
    if rows:
        print(f"\n{'stage':<18}{'steps/s':>9}{'s/step':>9}{'peak':>18}{'MFU':>8}")
        for r in rows:
            peak = f"{r['peak_gpu_memory_gib']} GiB gpu" if "peak_gpu_memory_gib" in r else f"{r['peak_rss_gib']} GiB rss"
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "-"
            print(f"{r['stage']:<18}{r['steps_per_second']:>9}{r['seconds_per_step']:>9}{peak:>18}{mfu:>8}")


if __name__ == "__main__":
    main()
