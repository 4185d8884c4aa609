"""LoRA on a flow model with PEFT: attaching fresh adapters to train, and putting a saved adapter back on a model.
The adapter file itself (its keys and self-describing header) belongs to the formats package."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors import safe_open

from trellis2_worker.errors import InputError
from trellis2_worker.formats.native import (  # noqa: F401 - re-exported: the trainer and tests use them from here
    FORMAT,
    FORMAT_VERSION,
    adapter_state,
    read_adapter_metadata,
    save_adapter,
    target_regex,
)
from trellis2_worker.train.recipe import TARGET_MODULES

TARGET_REGEX = target_regex(TARGET_MODULES)


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
