"""LoRA on a flow model with PEFT, and the adapter file: PEFT's key format in safetensors, with what the adapter is
for (stage, resolution, base checkpoint, dataset, recipe) in the safetensors header so it cannot be misapplied."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file

from trellis2_worker.errors import InputError
from trellis2_worker.train.recipe import TARGET_MODULES

FORMAT = "trellis2-lora"
FORMAT_VERSION = 1
# The Linears inside `blocks.<i>` only; top-level layers (adaLN, input/out layers) stay untouched (§10.4).
TARGET_REGEX = r"(.*\.)?blocks\.\d+\.(" + "|".join(re.escape(m) for m in TARGET_MODULES) + ")"


def lora_config(rank: int, alpha: float | None = None) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=rank if alpha is None else alpha, target_modules=TARGET_REGEX,
                      lora_dropout=0.0, bias="none")


def attach_lora(model: torch.nn.Module, rank: int, alpha: float | None = None) -> PeftModel:
    """Wraps `model` with fresh LoRA layers on every block Linear; only the LoRA weights require grad."""
    peft_model = get_peft_model(model, lora_config(rank, alpha))
    wrapped = [n for n, _ in peft_model.named_modules() if n.endswith(TARGET_MODULES) and hasattr(_, "lora_A")]
    if not wrapped:
        raise RuntimeError("no transformer-block Linear to put LoRA on: is this a TRELLIS.2 flow model?")
    for name, param in peft_model.named_parameters():
        param.requires_grad_("lora_" in name)
    return peft_model


def adapter_state(peft_model: PeftModel) -> dict[str, torch.Tensor]:
    """The LoRA weights under PEFT's file keys (`base_model.model.blocks.0.self_attn.to_qkv.lora_A.weight`)."""
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}


def save_adapter(peft_model: PeftModel, path: str | Path, metadata: dict) -> None:
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION),
              "target_modules": json.dumps(list(TARGET_MODULES))}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    save_file(adapter_state(peft_model), str(path), metadata=header)


def read_adapter_metadata(path: str | Path) -> dict:
    """The adapter's header, with JSON-looking values decoded (numbers, lists)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several kinds for a damaged file
        raise InputError(f"{path} is not a safetensors adapter: {exc}") from exc
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (TypeError, ValueError):
            meta[k] = v
    return meta


def load_adapter(model: torch.nn.Module, path: str | Path, denoiser: str, resolution: int | None = None) -> PeftModel:
    """Puts a saved adapter on `model`, the flow model for `denoiser` (at `resolution` for the SLat stages).
    Refuses, with a message naming both, an adapter trained for another stage or resolution."""
    meta = read_adapter_metadata(path)
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a TRELLIS.2 LoRA adapter (header format {meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path} has adapter format version {meta['format_version']}; this worker reads up to "
                         f"{FORMAT_VERSION}")
    if meta.get("denoiser") != denoiser:
        raise InputError(f"this adapter was trained for the {meta.get('denoiser')!r} denoiser and cannot be loaded "
                         f"into the {denoiser!r} model")
    if denoiser != "sparse_structure" and resolution is not None and int(meta.get("resolution", 0)) != resolution:
        raise InputError(f"this {denoiser} adapter was trained at resolution {meta.get('resolution')} and cannot be "
                         f"loaded into the {resolution} model")
    peft_model = attach_lora(model, int(meta["rank"]), float(meta["alpha"]))
    expected = {k: v.shape for k, v in get_peft_model_state_dict(peft_model).items()}
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    got = {k: v.shape for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))[:3]
        extra = sorted(set(got) - set(expected))[:3]
        wrong = [k for k in set(got) & set(expected) if got[k] != expected[k]][:3]
        raise InputError(f"the adapter does not fit this {denoiser} model: missing {missing}, unexpected {extra}, "
                         f"wrong shape {wrong}")
    result = set_peft_model_state_dict(peft_model, state)
    if getattr(result, "unexpected_keys", None):
        raise InputError(f"the adapter does not fit this model: unexpected {result.unexpected_keys[:3]}")
    peft_model.eval()
    return peft_model
