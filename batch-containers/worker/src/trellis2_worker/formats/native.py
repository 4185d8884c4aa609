"""The native adapter file: PEFT's own state-dict keys (`base_model.model.<module>.lora_A.weight` / `.lora_B.weight`,
float32) in safetensors, with what the adapter is for (stage, resolution, base checkpoint, dataset, recipe) in the
safetensors header so that it cannot be misapplied. Every other format here is converted from this one."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from trellis2_worker.errors import InputError

FORMAT = "trellis2-lora"
FORMAT_VERSION = 1
# PEFT's file keys: the wrapper prefix of a PeftModel around a plain nn.Module, then the module path.
PEFT_PREFIX = "base_model.model."
_KEY = re.compile(r"^" + re.escape(PEFT_PREFIX) + r"(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")
_BLOCK_MODULE = re.compile(r"blocks\.\d+\.(?P<target>.+)$")


def target_regex(modules) -> str:
    """PEFT `target_modules` regex for the given Linears inside `blocks.<i>` only, so that top-level layers
    (adaLN, input and output layers) stay untouched."""
    return r"(.*\.)?blocks\.\d+\.(" + "|".join(re.escape(m) for m in modules) + ")"


def adapter_state(peft_model) -> dict[str, torch.Tensor]:
    """The LoRA weights of a PeftModel under PEFT's file keys, on the CPU in float32."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}


def encode_header(metadata: dict) -> dict[str, str]:
    """safetensors headers hold strings only: non-strings are stored as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def decode_header(raw: dict[str, str]) -> dict:
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except (TypeError, ValueError):
            meta[k] = v
    return meta


def targets_of(modules) -> list[str]:
    """The distinct in-block module names (`self_attn.to_qkv`, ...) of adapted module paths, in first-seen order."""
    out: list[str] = []
    for name in modules:
        m = _BLOCK_MODULE.search(name)
        target = m.group("target") if m else name
        if target not in out:
            out.append(target)
    return out


def save_adapter(peft_model, path: str | Path, metadata: dict) -> None:
    """Writes the native file for a PeftModel; `metadata` says what the adapter is for."""
    state = adapter_state(peft_model)
    modules = [_KEY.match(k).group("module") for k in state if _KEY.match(k)]
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "target_modules": json.dumps(targets_of(modules))}
    header.update(encode_header(metadata))
    save_reproducible(state, path, header)


def save_reproducible(state: dict, path: str | Path, metadata: dict) -> None:
    """safetensors' save_file, with the header's entries in sorted order: its writer keeps them in hash maps whose
    order changes from one process to the next, so the same adapter would not be the same bytes."""
    save_file(state, str(path), metadata=metadata)
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        meta = header.pop("__metadata__", None)
        ordered = {"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}
        text = json.dumps({**ordered, **dict(sorted(header.items()))}, separators=(",", ":"),
                          ensure_ascii=False).encode()
        if len(text) <= size:  # the same fields in another order: the same length (padded as the format pads)
            f.seek(8)
            f.write(text + b" " * (size - len(text)))


def read_adapter_metadata(path: str | Path) -> dict:
    """The adapter's header, with JSON-looking values decoded (numbers, lists)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several kinds for a damaged file
        raise InputError(f"{Path(path).name} is not a safetensors adapter: {exc}") from exc
    return decode_header(raw)


@dataclass
class NativeAdapter:
    """A checked native adapter: its header and, per adapted module path (`blocks.0.self_attn.to_qkv`),
    (A [rank, in], B [out, rank]) in float32."""

    metadata: dict
    modules: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def rank(self) -> int:
        return int(self.metadata["rank"])

    @property
    def alpha(self) -> float:
        return float(self.metadata["alpha"])

    @property
    def scaling(self) -> float:
        """PEFT's scale of B·A: alpha / rank (the trainer does not use rank-stabilised LoRA)."""
        return self.alpha / self.rank

    def delta(self, module: str, strength: float = 1.0) -> torch.Tensor:
        """The weight change strength · alpha/rank · B·A of one module, in float32."""
        a, b = self.modules[module]
        return (strength * self.scaling) * (b @ a)

    def peft_state(self) -> dict[str, torch.Tensor]:
        out = {}
        for module, (a, b) in self.modules.items():
            out[f"{PEFT_PREFIX}{module}.lora_A.weight"] = a
            out[f"{PEFT_PREFIX}{module}.lora_B.weight"] = b
        return out


def read_native(path: str | Path) -> NativeAdapter:
    """Reads and checks a native adapter file; any problem is an InputError naming it."""
    name = Path(path).name
    meta = read_adapter_metadata(path)
    if meta.get("format") != FORMAT:
        raise InputError(f"{name} is not a TRELLIS.2 LoRA adapter of this project (header format "
                         f"{meta.get('format')!r}); convert reads the .safetensors that training returns")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{name} has adapter format version {meta['format_version']}; this worker reads up to "
                         f"{FORMAT_VERSION}")
    for field in ("denoiser", "rank", "alpha"):
        if field not in meta:
            raise InputError(f"{name} has no {field!r} in its header")
    try:
        rank, alpha = int(meta["rank"]), float(meta["alpha"])
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} has a rank or alpha that is not a number") from exc
    if rank < 1 or not math.isfinite(alpha):
        raise InputError(f"{name} has rank {meta['rank']} and alpha {meta['alpha']}: not a usable LoRA")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            m = _KEY.match(key)
            if not m:
                raise InputError(f"{name} has an unexpected tensor {key!r} (not a PEFT LoRA key)")
            parts.setdefault(m.group("module"), {})[m.group("part")] = f.get_tensor(key).to(torch.float32)
    if not parts:
        raise InputError(f"{name} holds no LoRA weights")
    modules = {}
    for module, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise InputError(f"{name}: module {module} has only lora_{''.join(ab)}")
        a, b = ab["A"], ab["B"]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise InputError(f"{name}: module {module} has lora_A {list(a.shape)} and lora_B {list(b.shape)}, "
                             f"which do not make a rank-{rank} LoRA")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise InputError(f"{name}: module {module} has non-finite weights")
        modules[module] = (a, b)
    return NativeAdapter(meta, modules)
