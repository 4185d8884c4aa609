#!/usr/bin/env python3
"""Timing of the TRELLIS.2 models as LoRA training uses them, on whatever device is there.

- Full-size flows (1.3B, official configs: bf16 block weights, fp32 rest) with a rank-32 LoRA on the reference's
  targets (docs/training.md#lora-targets), forward + backward under bf16 autocast at a given token count; wall time
  and peak memory.
- Submanifold sparse conv throughput (64 -> 64 channels) at 100k voxels, forward (and forward+backward).

Run:  PYTHONPATH=batch-containers/worker/src python bench/models_bench.py [--device cuda] [--tokens 8192]
Defaults are small enough for a 2-core CPU (64 tokens, fp32); on a GPU use realistic counts, e.g.
--models ss,shape,tex --tokens 8192 --batch 2.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "batch-containers" / "worker" / "src"))

from trellis2_worker.models import SparseTensor, build_model  # noqa: E402
from trellis2_worker.models.sparse import SparseConv3d, neighbour_table  # noqa: E402

FLOW = dict(model_channels=1536, cond_channels=1024, num_blocks=30, num_heads=12, mlp_ratio=5.3334, pe_mode="rope",
            share_mod=True, initialization="scaled", qk_rms_norm=True, qk_rms_norm_cross=True, dtype="bfloat16")
CONFIGS = {
    "ss": {"name": "SparseStructureFlowModel", "args": dict(FLOW, resolution=16, in_channels=8, out_channels=8)},
    "shape": {"name": "SLatFlowModel", "args": dict(FLOW, resolution=32, in_channels=32, out_channels=32)},
    "tex": {"name": "SLatFlowModel", "args": dict(FLOW, resolution=32, in_channels=64, out_channels=32)},
}
LORA_TARGETS = ["to_qkv", "to_out", "to_q", "to_kv", "mlp.0", "mlp.2"]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: whole-process peak RSS


def surface_coords(tokens: int, res: int, batch: int) -> torch.Tensor:
    """About `tokens` voxels per object on a one-voxel-thick sphere shell in a res³ grid (a surface, like real
    shape latents and O-Voxels: each voxel has roughly eight face/edge neighbours)."""
    radius = min((tokens / (4 * 3.14159)) ** 0.5, res / 2 - 2)
    r = torch.arange(-int(radius) - 2, int(radius) + 3)
    grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    d = (grid.float() + 0.5).norm(dim=1)
    shell = grid[(d - radius).abs() < 0.5] + res // 2
    shell = shell[:tokens]  # row-major order, so a truncated shell is still a connected cap
    rows = [torch.cat([torch.full((shell.shape[0], 1), b), shell], 1) for b in range(batch)]
    return torch.cat(rows).to(torch.int32)


def bench_flow(name, args, device):
    from peft import LoraConfig, inject_adapter_in_model

    t0 = time.perf_counter()
    cfg = {"name": CONFIGS[name]["name"], "args": dict(CONFIGS[name]["args"])}
    if args.precision == "fp32":
        cfg["args"]["dtype"] = "float32"
    model = build_model(cfg, device="meta").to_empty(device=device)
    if hasattr(model, "reset_buffers"):
        model.reset_buffers()
    with torch.no_grad():  # random weights; timing does not depend on values
        for p in model.parameters():
            p.normal_(0, 0.02)
    model.requires_grad_(False)
    model = inject_adapter_in_model(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=LORA_TARGETS), model)
    model.use_checkpoint = args.checkpoint
    model.train()
    build_s = time.perf_counter() - t0
    B = args.batch
    cond = torch.randn(B, args.cond_tokens, 1024, device=device)
    t = torch.rand(B, device=device) * 1000
    if name == "ss":
        x = torch.randn(B, 8, 16, 16, 16, device=device)
        tokens = B * 4096
        run = lambda: model(x, t, cond)
        loss = lambda out: out.float().square().mean()
    else:
        coords = surface_coords(args.tokens, 64, B).to(device)
        feats = torch.randn(coords.shape[0], 32, device=device)
        tokens = coords.shape[0]
        concat = SparseTensor(torch.randn_like(feats), coords) if name == "tex" else None
        run = lambda: model(SparseTensor(feats, coords), t, cond, concat_cond=concat)
        loss = lambda out: out.feats.float().square().mean()
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.repeat):
        sync(device)
        s = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-autocast"):
            out = run()
        loss(out).backward()
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - s)
        model.zero_grad(set_to_none=True)
    return {"model": name, "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "tokens": tokens, "batch": B, "precision": args.precision, "cond_tokens": args.cond_tokens, "lora_rank": args.rank,
            "grad_checkpointing": args.checkpoint, "build_s": round(build_s, 1),
            "fwd_bwd_s": round(min(times), 3), "fwd_bwd_s_all": [round(x, 3) for x in times],
            "tokens_per_s": round(tokens / min(times), 1), "peak_mem_MiB": round(peak_memory_mb(device))}


def bench_conv(args, device):
    coords = surface_coords(args.conv_voxels, 1024, 1).to(device)
    n = coords.shape[0]
    conv = SparseConv3d(args.conv_channels, args.conv_channels).to(device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    conv = conv.to(dtype)
    feats = torch.randn(n, args.conv_channels, device=device, dtype=dtype)
    x = SparseTensor(feats, coords)
    sync(device)
    s = time.perf_counter()
    table = neighbour_table(x)
    sync(device)
    nbr_s = time.perf_counter() - s
    active = int((table < n).sum().item())
    fwd = []
    for _ in range(args.warmup + args.repeat):
        sync(device)
        s = time.perf_counter()
        with torch.no_grad():
            conv(x)
        sync(device)
        fwd.append(time.perf_counter() - s)
    fwd = min(fwd[args.warmup:])
    feats.requires_grad_(True)
    sync(device)
    s = time.perf_counter()
    conv(x).feats.float().square().mean().backward()
    sync(device)
    fb = time.perf_counter() - s
    flops = 2 * n * 27 * args.conv_channels ** 2
    return {"voxels": n, "channels": args.conv_channels, "dtype": str(dtype).removeprefix("torch."),
            "neighbour_pairs": active, "neighbour_map_s": round(nbr_s, 3), "fwd_s": round(fwd, 4),
            "fwd_voxels_per_s": round(n / fwd), "fwd_gflops_dense_equiv": round(flops / fwd / 1e9, 1),
            "fwd_bwd_s": round(fb, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default=None, help="comma list of ss,shape,tex (default: shape on CPU, all on CUDA)")
    ap.add_argument("--tokens", type=int, default=None, help="SLat tokens per object (default 128 CPU, 8192 CUDA)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cond-tokens", type=int, default=1029, help="DINOv3 tokens (1029 at 512, 4101 at 1024)")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--checkpoint", action="store_true", help="gradient checkpointing in every block")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--conv-voxels", type=int, default=100_000)
    ap.add_argument("--conv-channels", type=int, default=64)
    ap.add_argument("--precision", choices=["bf16-autocast", "fp32"], default=None,
                    help="bf16 block weights + bf16 autocast (training, default on CUDA) or fp32 (default on CPU, "
                         "whose bf16 matmuls are slow)")
    ap.add_argument("--skip-flows", action="store_true")
    ap.add_argument("--skip-conv", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    cpu = device.type == "cpu"
    args.tokens = args.tokens or (64 if cpu else 8192)
    args.precision = args.precision or ("fp32" if cpu else "bf16-autocast")
    args.warmup = args.warmup if args.warmup is not None else (0 if cpu else 1)
    models = (args.models or ("shape" if cpu else "ss,shape,tex")).split(",")
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
            "torch": torch.__version__}
    print(json.dumps(info))
    if not args.skip_conv:
        print(json.dumps({"sparse_conv": bench_conv(args, device)}), flush=True)
    if not args.skip_flows:
        for name in models:
            print(json.dumps({"flow": bench_flow(name, args, device)}), flush=True)


if __name__ == "__main__":
    main()
