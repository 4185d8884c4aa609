"""The ComfyUI-native LoRA file: keys that ComfyUI core's generic LoRA loader maps onto its native TRELLIS.2 model.

ComfyUI holds all four TRELLIS.2 flows in one model whose state-dict keys are `diffusion_model.<submodel>.<path>`,
with the official module paths inside each flow; its loader takes, for every such weight, LoRA tensors named
`diffusion_model.<submodel>.<path>.lora_up.weight` / `.lora_down.weight` and applies alpha/rank only when a
`.alpha` tensor is there (strength 1 otherwise). docs/adapter-formats.md says where in ComfyUI each fact is from.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trellis2_worker.errors import InputError

from .native import FORMAT, NativeAdapter, encode_header, save_reproducible

COMFYUI_FORMAT = "trellis2-lora-comfyui"
COMFYUI_PREFIX = "diffusion_model."
# (denoiser, resolution) -> the attribute of ComfyUI's TRELLIS.2 model holding that flow. The sparse-structure flow
# has no resolution. ComfyUI carries one texture flow, the one its texture stage conditions on 1024-pixel DINOv3
# features (the official 1024 texture flow), so a 512 texture adapter lands on a flow it was not trained on.
COMFYUI_SUBMODELS = {
    ("sparse_structure", None): "structure_model",
    ("geometry", 512): "img2shape_512",
    ("geometry", 1024): "img2shape",
    ("texture", 512): "shape2txt",
    ("texture", 1024): "shape2txt",
}
TEXTURE_512_WARNING = ("ComfyUI has one texture flow, the 1024 one (its texture stage uses 1024-pixel DINOv3 "
                       "features); this adapter was trained on the 512 texture flow, so in ComfyUI it applies to "
                       "other base weights than it learnt against")


def comfyui_submodel(denoiser: str, resolution) -> tuple[str, str | None]:
    """(submodel, warning or None) for an adapter of `denoiser` at `resolution`."""
    key = (denoiser, None if denoiser == "sparse_structure" else int(resolution or 0))
    if key not in COMFYUI_SUBMODELS:
        raise InputError(f"no ComfyUI TRELLIS.2 flow for a {denoiser} adapter at resolution {resolution}")
    return COMFYUI_SUBMODELS[key], TEXTURE_512_WARNING if key == ("texture", 512) else None


def comfyui_state(adapter: NativeAdapter) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """The ComfyUI tensors of an adapter, its submodel, and a warning when the flow differs from the trained one."""
    sub, warning = comfyui_submodel(adapter.metadata["denoiser"], adapter.metadata.get("resolution"))
    out = {}
    for module, (a, b) in adapter.modules.items():
        base = f"{COMFYUI_PREFIX}{sub}.{module}"
        out[f"{base}.lora_down.weight"] = a.contiguous()
        out[f"{base}.lora_up.weight"] = b.contiguous()
        # 0-d, as ComfyUI reads it with .item(); without it ComfyUI would scale by 1 instead of alpha/rank.
        out[f"{base}.alpha"] = torch.tensor(adapter.alpha, dtype=torch.float32)
    return out, sub, warning


def write_comfyui(adapter: NativeAdapter, path: str | Path) -> dict:
    """Writes the ComfyUI file; returns {submodel, modules, warning}."""
    state, sub, warning = comfyui_state(adapter)
    header = encode_header({k: v for k, v in adapter.metadata.items() if k != "format"})
    header.update({"format": COMFYUI_FORMAT, "source_format": FORMAT, "comfyui_submodel": sub})
    if warning:
        header["comfyui_warning"] = warning
    save_reproducible(state, path, header)
    return {"submodel": sub, "modules": len(adapter.modules), "warning": warning}
