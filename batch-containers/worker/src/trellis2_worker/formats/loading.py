"""Putting LoRA layers on a flow model with PEFT: fresh ones for training, or a saved native adapter back on.

It lives with the file format rather than with training because generation, evaluation and conversion load
adapters too, and they sit below training; the layers an adapter wraps come from its own header.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trellis2_worker.errors import InputError
from trellis2_worker.formats.native import FORMAT, FORMAT_VERSION, read_adapter_metadata, target_regex


def lora_config(rank: int, alpha: float, target_modules):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=target_regex(target_modules), lora_dropout=0.0,
                      bias="none")


def attach(model: torch.nn.Module, rank: int, alpha: float, target_modules):
    """Wraps `model` with fresh LoRA layers on the in-block Linears named; only the LoRA weights require grad."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora_config(rank, alpha, target_modules))
    wrapped = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A")]
    if not wrapped:
        raise RuntimeError("no transformer-block Linear to put LoRA on: is this a TRELLIS.2 flow model?")
    for name, param in peft_model.named_parameters():
        param.requires_grad_("lora_" in name)
    return peft_model


def load_adapter(model: torch.nn.Module, path: str | Path, denoiser: str, resolution: int | None = None):
    """Puts a saved adapter on `model`, the flow model for `denoiser` (at `resolution` for the SLat stages).
    Refuses, with a message naming both, an adapter trained for another stage or resolution."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors import safe_open

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
    targets = meta.get("target_modules")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise InputError(f"{path} does not say which layers it adapts (no target_modules in its header)")
    peft_model = attach(model, int(meta["rank"]), float(meta["alpha"]), targets)
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
