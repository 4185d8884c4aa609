"""The `tiny` base: every TRELLIS.2 model with the real structure and latent formats (SS latent 8×16³ on a 64³ grid,
32-channel shape/tex latents, four down/up stages, the same RoPE layout with head dim 32) but tiny widths, with
deterministic random weights, written to disk in the official layout so the real loader runs in tests and the demo."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import save_file

from .base import cache_root
from .conditioner import tiny_dinov3_config
from .loading import build_model

TINY_VERSION = "3"  # 3: decoders calibrated (calibrate_decoders_); every other file is as in 2
SEED = 20240601
DINO_DIR = "dinov3-tiny"
COND = 64  # tiny DINOv3 hidden size = the flows' cond_channels

# Flows: head dim 32 keeps the RoPE layout (5 frequencies per axis, x|y|z, one identity slot). float32 blocks and
# float32 VAEs (the official files say bfloat16 / use_fp16) because CPUs have no fast bf16/fp16 matmul; the
# reduced-precision paths are covered by the golden and precision tests instead.
_FLOW = dict(model_channels=64, cond_channels=COND, num_blocks=2, num_heads=2, mlp_ratio=5.3334, pe_mode="rope",
             share_mod=True, initialization="scaled", qk_rms_norm=True, qk_rms_norm_cross=True, dtype="float32")
# The SS flow always sees 16³ = 4096 tokens, so it is narrower (one head) to keep CPU training fast.
_SS_FLOW = dict(_FLOW, model_channels=32, num_heads=1)
_SC_ENC = dict(model_channels=[8, 16, 32, 64, 128], latent_channels=32, num_blocks=[0, 1, 1, 1, 1],
               block_type=["SparseConvNeXtBlock3d"] * 5, down_block_type=["SparseResBlockS2C3d"] * 4,
               block_args=[{"use_checkpoint": False}] * 5, use_fp16=False)
_SC_DEC = dict(model_channels=[128, 64, 32, 16, 8], latent_channels=32, num_blocks=[1, 1, 1, 1, 0],
               block_type=["SparseConvNeXtBlock3d"] * 5, up_block_type=["SparseResBlockC2S3d"] * 4,
               block_args=[{"use_checkpoint": False}] * 5, use_fp16=False)

# path (relative to the base root, no extension) -> checkpoint config; the official file names.
TINY_MODELS = {
    "ckpts/ss_flow_img_dit_1_3B_64_bf16": {"name": "SparseStructureFlowModel", "args": dict(
        resolution=16, in_channels=8, out_channels=8, **_SS_FLOW)},
    "ckpts/slat_flow_img2shape_dit_1_3B_512_bf16": {"name": "SLatFlowModel", "args": dict(
        resolution=32, in_channels=32, out_channels=32, **_FLOW)},
    "ckpts/slat_flow_img2shape_dit_1_3B_1024_bf16": {"name": "SLatFlowModel", "args": dict(
        resolution=64, in_channels=32, out_channels=32, **_FLOW)},
    "ckpts/slat_flow_imgshape2tex_dit_1_3B_512_bf16": {"name": "SLatFlowModel", "args": dict(
        resolution=32, in_channels=64, out_channels=32, **_FLOW)},
    "ckpts/slat_flow_imgshape2tex_dit_1_3B_1024_bf16": {"name": "SLatFlowModel", "args": dict(
        resolution=32, in_channels=64, out_channels=32, **_FLOW)},
    "ckpts/shape_enc_next_dc_f16c32_fp16": {"name": "FlexiDualGridVaeEncoder", "args": dict(_SC_ENC)},
    "ckpts/shape_dec_next_dc_f16c32_fp16": {"name": "FlexiDualGridVaeDecoder", "args": dict(resolution=512, **_SC_DEC)},
    "ckpts/tex_enc_next_dc_f16c32_fp16": {"name": "SparseUnetVaeEncoder", "args": dict(in_channels=6, **_SC_ENC)},
    "ckpts/tex_dec_next_dc_f16c32_fp16": {"name": "SparseUnetVaeDecoder", "args": dict(
        out_channels=6, pred_subdiv=False, **_SC_DEC)},
    "microsoft/TRELLIS-image-large/ckpts/ss_enc_conv3d_16l8_fp16": {"name": "SparseStructureEncoder", "args": dict(
        in_channels=1, latent_channels=8, num_res_blocks=1, num_res_blocks_middle=1, channels=[8, 16, 32],
        use_fp16=False)},
    "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16": {"name": "SparseStructureDecoder", "args": dict(
        out_channels=1, latent_channels=8, num_res_blocks=1, num_res_blocks_middle=1, channels=[32, 16, 8],
        use_fp16=False)},
}

PIPELINE_MODELS = {
    "sparse_structure_flow_model": "ckpts/ss_flow_img_dit_1_3B_64_bf16",
    "sparse_structure_decoder": "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16",
    "shape_slat_flow_model_512": "ckpts/slat_flow_img2shape_dit_1_3B_512_bf16",
    "shape_slat_flow_model_1024": "ckpts/slat_flow_img2shape_dit_1_3B_1024_bf16",
    "shape_slat_decoder": "ckpts/shape_dec_next_dc_f16c32_fp16",
    "tex_slat_flow_model_512": "ckpts/slat_flow_imgshape2tex_dit_1_3B_512_bf16",
    "tex_slat_flow_model_1024": "ckpts/slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
    "tex_slat_decoder": "ckpts/tex_dec_next_dc_f16c32_fp16",
    # not in the official image-to-3D pipeline.json; listed so the tiny base is self-describing
    "sparse_structure_encoder": "microsoft/TRELLIS-image-large/ckpts/ss_enc_conv3d_16l8_fp16",
    "shape_slat_encoder": "ckpts/shape_enc_next_dc_f16c32_fp16",
    "tex_slat_encoder": "ckpts/tex_enc_next_dc_f16c32_fp16",
}


def _sampler(steps, strength, rescale, interval, rescale_t):
    return {"name": "FlowEulerGuidanceIntervalSampler", "args": {"sigma_min": 1e-5},
            "params": {"steps": steps, "guidance_strength": strength, "guidance_rescale": rescale,
                       "guidance_interval": interval, "rescale_t": rescale_t}}


def tiny_pipeline() -> dict:
    # Distinct, recognisable normalisations so that mixing up shape and tex constants shows in tests.
    shape = {"mean": [round(0.02 * i - 0.3, 4) for i in range(32)], "std": [round(1.0 + 0.01 * i, 4) for i in range(32)]}
    tex = {"mean": [round(0.3 - 0.015 * i, 4) for i in range(32)], "std": [round(0.8 + 0.02 * i, 4) for i in range(32)]}
    return {"name": "Trellis2ImageTo3DPipeline", "tiny_version": TINY_VERSION, "args": {
        "models": dict(PIPELINE_MODELS),
        "sparse_structure_sampler": _sampler(12, 7.5, 0.7, [0.6, 1.0], 5.0),
        "shape_slat_sampler": _sampler(12, 7.5, 0.5, [0.6, 1.0], 3.0),
        "tex_slat_sampler": _sampler(12, 1.0, 0.0, [0.6, 0.9], 3.0),
        "shape_slat_normalization": shape,
        "tex_slat_normalization": tex,
        "image_cond_model": {"name": "DinoV3FeatureExtractor", "args": {"model_name": DINO_DIR}},
        "rembg_model": {"name": "BiRefNet", "args": {"model_name": "briaai/RMBG-2.0"}},
        "low_vram": True,
        "default_pipeline_type": "1024_cascade",
    }}


def randomize_(model: nn.Module, gen: torch.Generator) -> None:
    """Deterministic random weights that keep activations O(1); zero-initialised layers get weights too, so every
    path of the tiny models is exercised (the reference's own init zeroes outputs and gates)."""
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("gamma", "lambda1", "lambda2") or (p.dim() == 1 and leaf == "weight"):  # RMS/LN/LayerScale
            v = 1.0 + 0.05 * torch.randn(p.shape, generator=gen)
        elif leaf == "modulation":
            v = torch.randn(p.shape, generator=gen) / (p.shape[0] / 6) ** 0.5
        elif p.dim() >= 2:
            v = torch.randn(p.shape, generator=gen) / (p[0].numel() ** 0.5)
        else:
            v = 0.02 * torch.randn(p.shape, generator=gen)
        with torch.no_grad():
            p.copy_(v.to(p.dtype))


# Random decoders would occupy nearly every cell and subdivide every voxel (32k tokens, millions of voxels), too
# much for a CPU generation. These targets keep a tiny generation small: the share of the 64³ occupancy cells that
# are set, and the share of children each of the shape decoder's four subdivisions keeps.
SS_OCCUPANCY = 0.004
SUBDIVISION_KEEP = 0.35
CALIBRATION_SEED = SEED + 1


def calibrate_decoders_(rel: str, model: nn.Module, occupancy: float = SS_OCCUPANCY,
                        keep: float = SUBDIVISION_KEEP) -> None:
    """Shift the output biases that decide occupancy (SS decoder) and subdivision (shape decoder) so those shares
    hold for unit-Gaussian latents. Uses its own generator: the other models' weights stay byte-identical."""
    gen = torch.Generator().manual_seed(CALIBRATION_SEED)
    device = next(model.parameters()).device
    with torch.no_grad():
        if rel.endswith("ss_dec_conv3d_16l8_fp16"):
            logits = model(torch.randn(2, model.latent_channels, 16, 16, 16, generator=gen).to(device))
            model.out_layer[-1].bias -= torch.quantile(logits.float().flatten()[::3], 1 - occupancy).to(device)
        elif rel.endswith("shape_dec_next_dc_f16c32_fp16"):
            from .sparse import SparseTensor

            flat = torch.randperm(32**3, generator=gen)[:400].sort().values
            coords = torch.stack([flat * 0, flat // 1024, (flat // 32) % 32, flat % 32], dim=1).int()
            x = SparseTensor(torch.randn(400, model.latent_channels, generator=gen), coords).to(device)
            for level in range(len(model.blocks) - 1):
                _, subs = model._run_blocks(x, None, stop_at=level + 1)
                shift = torch.quantile(subs[level].feats.float().flatten(), 1 - keep)
                bias = model.blocks[level][-1].to_subdiv.bias
                bias -= shift.to(bias.dtype)


def write_tiny_base(root: str | Path, progress: bool = True) -> Path:
    """Write the tiny base into `root` (official layout). Same bytes every time for the same TINY_VERSION."""
    from trellis2_worker.progress import counter

    root = Path(root)
    gen = torch.Generator().manual_seed(SEED)
    # Written once per machine, and minutes on a busy CPU (the calibration runs the decoders): a counter per model.
    bar = counter(len(TINY_MODELS) + 1, f"writing the tiny base v{TINY_VERSION} (once)", "model", enabled=progress)
    for rel, cfg in sorted(TINY_MODELS.items()):
        bar.set_postfix_str(Path(rel).name)
        model = build_model(cfg)
        randomize_(model, gen)
        calibrate_decoders_(rel, model)
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "rope_phases"}
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{path}.json").write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(state, f"{path}.safetensors")
        bar.update(1)
    from transformers import DINOv3ViTModel

    bar.set_postfix_str(DINO_DIR)
    dino = DINOv3ViTModel(tiny_dinov3_config(COND)).eval()
    randomize_(dino, gen)
    dino.save_pretrained(root / DINO_DIR, safe_serialization=True)
    bar.update(1)
    bar.close()
    (root / "pipeline.json").write_text(json.dumps(tiny_pipeline(), indent=2) + "\n")
    (root / "COMPLETE").write_text(TINY_VERSION + "\n")
    return root


def ensure_tiny_base(cache_dir: str | Path | None = None) -> Path:
    """The tiny base's directory, written once (atomically, safe against concurrent writers)."""
    bases = Path(cache_dir) if cache_dir else cache_root() / "bases"
    root = bases / f"tiny-{TINY_VERSION}"
    if (root / "COMPLETE").is_file():
        return root
    bases.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tiny-{TINY_VERSION}-", dir=bases))
    try:
        write_tiny_base(tmp)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "COMPLETE").is_file():  # a stale partial directory: replace it
                shutil.rmtree(root, ignore_errors=True)
                os.rename(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root
