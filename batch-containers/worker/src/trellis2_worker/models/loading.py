"""Checkpoint configs and strict state_dict loading (docs/models.md#checkpoints-and-loading).

A checkpoint is `<name>.json` ({"name": <reference class name>, "args": {...}}) plus `<name>.safetensors`.
Unlike the reference (strict=False), loading here is strict: only the keys in ALLOWED_MISSING may be absent.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open

from .flows import ElasticSLatFlowModel, SLatFlowModel, SparseStructureFlowModel
from .sc_vae import FlexiDualGridVaeDecoder, FlexiDualGridVaeEncoder, SparseUnetVaeDecoder, SparseUnetVaeEncoder
from .ss_vae import SparseStructureDecoder, SparseStructureEncoder

MODEL_CLASSES: dict[str, type[nn.Module]] = {c.__name__: c for c in (
    SparseStructureEncoder, SparseStructureDecoder, SparseStructureFlowModel, SLatFlowModel, ElasticSLatFlowModel,
    SparseUnetVaeEncoder, SparseUnetVaeDecoder, FlexiDualGridVaeEncoder, FlexiDualGridVaeDecoder)}

# Keys a checkpoint may lack: buffers the model recomputes itself (the SS flow's RoPE table,
# docs/models.md#checkpoints-and-loading).
ALLOWED_MISSING = frozenset({"rope_phases"})


class CheckpointError(ValueError):
    """A checkpoint does not fit the model built from its config."""


def build_model(config: dict, device: str | torch.device | None = None) -> nn.Module:
    """Build a model from a reference-format config {"name": ..., "args": {...}} (weights initialised, not loaded).

    device="meta" builds without allocating memory (for manifests and before loading)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("a model config needs a 'name' (the reference class name) and 'args'")
    name = config["name"]
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {name!r} (known: {', '.join(sorted(MODEL_CLASSES))})")
    cls = MODEL_CLASSES[name]
    args = dict(config.get("args", {}))
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = [k for k in args if k not in params]
    if unknown and not takes_kwargs:
        # The reference SLatFlowModel has no **kwargs either, so such a config would not load there.
        raise ValueError(f"{name} does not take argument(s) {', '.join(unknown)}")
    if device is None:
        return cls(**args)
    with torch.device(device):
        return cls(**args)


def read_config(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy `state` into `model`, casting to each parameter's dtype; any missing (outside ALLOWED_MISSING),
    unexpected or mis-shaped key is an error that names it."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and k.split(".")[-1] not in ALLOWED_MISSING)
    unexpected = sorted(k for k in state if k not in own)
    wrong = sorted(f"{k} {list(state[k].shape)} (model {list(own[k].shape)})"
                   for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:10])}{' ...' if len(unexpected) > 10 else ''}")
    if wrong:
        problems.append(f"shape mismatch: {', '.join(wrong[:10])}{' ...' if len(wrong) > 10 else ''}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)


def read_safetensors(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    out = {}
    with safe_open(str(path), framework="pt", device=device) as f:
        for k in f.keys():
            out[k] = f.get_tensor(k)
    return out


def load_checkpoint(json_path: str | Path, weights_path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Build the model of `json_path` without initialising it twice, then load `weights_path` strictly."""
    config = read_config(json_path)
    model = build_model(config, device="meta")
    model = model.to_empty(device=device)
    if hasattr(model, "reset_buffers"):
        model.reset_buffers()
    state = read_safetensors(weights_path, device=str(device) if str(device) != "meta" else "cpu")
    load_state_dict_strict(model, state, source=str(weights_path))
    return model


def model_manifest(model: nn.Module) -> list[dict]:
    """[{name, shape, dtype}] of the state_dict, in state_dict order."""
    return [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in model.state_dict().items()]


def from_pretrained(path: str, device: str | torch.device = "cpu", token: str | None = None) -> nn.Module:
    """One checkpoint by path prefix, as the reference `trellis2.models.from_pretrained`: local when
    `<path>.json` and `<path>.safetensors` exist, otherwise `owner/repo/<file path>` on the Hugging Face hub."""
    if Path(f"{path}.json").is_file() and Path(f"{path}.safetensors").is_file():
        return load_checkpoint(f"{path}.json", f"{path}.safetensors", device=device)
    parts = path.split("/")
    if len(parts) < 3:
        raise FileNotFoundError(f"{path}: no local .json/.safetensors pair and not a hub path owner/repo/file")
    from huggingface_hub import hf_hub_download

    repo, name = "/".join(parts[:2]), "/".join(parts[2:])
    j = hf_hub_download(repo, f"{name}.json", token=token)
    w = hf_hub_download(repo, f"{name}.safetensors", token=token)
    return load_checkpoint(j, w, device=device)
