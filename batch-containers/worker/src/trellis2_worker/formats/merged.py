"""The merged checkpoint: an adapter folded, at a given strength, into its base flow, written as a full flow
checkpoint in the official layout (`ckpts/<name>.json` + `.safetensors`: the base file's keys, shapes and dtypes),
inside a base directory that holds every other file of the base as it is (linked), so that `--base DIR` here and
the official pipeline load it exactly as they load the original base."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from trellis2_worker.errors import InputError

from .native import FORMAT, NativeAdapter

MERGE_HEADER = "trellis2_merge"  # safetensors header key of the merged flow: what was folded in, at which strength


def merge_state(state: dict[str, torch.Tensor], adapter: NativeAdapter, strength: float = 1.0) -> dict[str, torch.Tensor]:
    """`state` with W + strength·alpha/rank·B·A on every adapted Linear, each weight kept in its own dtype (the sum
    is taken in float32). Any module the state lacks, or of another shape, is an InputError."""
    out = dict(state)
    for module in adapter.modules:
        key = f"{module}.weight"
        if key not in state:
            raise InputError(f"the base checkpoint has no {key}: this adapter is for another model")
        w = state[key]
        delta = adapter.delta(module, strength)
        if tuple(delta.shape) != tuple(w.shape):
            raise InputError(f"{key} is {list(w.shape)} in the base checkpoint but the adapter changes a "
                             f"{list(delta.shape)} weight: this adapter is for another model")
        out[key] = (w.to(torch.float32) + delta).to(w.dtype).contiguous()
    return out


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _link(src: Path, dst: Path) -> None:
    """A hard link (survives a cache cleanup of the original), else a symbolic one (another file system)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    target = src.resolve()
    try:
        os.link(target, dst)
    except OSError:
        os.symlink(target, dst)


def write_merged_base(adapter: NativeAdapter, base, out_dir: str | Path, strength: float = 1.0) -> dict:
    """Writes the merged base directory `out_dir` (new or empty) from `base` (a models.Base); returns a report."""
    meta = adapter.metadata
    key = meta.get("model_key")
    if not key:
        raise InputError("the adapter header has no model_key, so the flow checkpoint to merge into is unknown")
    if key not in base.model_paths:
        raise InputError(f"base {base.model_id!r} has no {key} for this {meta['denoiser']} adapter")
    recorded = meta.get("base_checkpoint_sha256")
    have = base.checkpoint_sha256(key)
    if recorded and recorded != have:
        raise InputError(f"this adapter was trained on another {key} checkpoint (sha256 {str(recorded)[:12]}) than "
                         f"base {base.model_id!r} has ({have[:12]}); pass the base it was trained on with --base")
    out = Path(out_dir).expanduser().resolve()
    root = base.root.resolve()
    if out == root or root in out.parents or out in root.parents:
        raise InputError("the merged base directory must be outside the base directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out_dir} already exists and is not an empty directory")
    if base.repo_id:
        for k in base.keys():  # a hub base: every checkpoint of the repo, so that the new directory is complete
            try:
                base.files(k)
            except FileNotFoundError:
                pass  # in another repo (the SS VAE): both loaders fetch that by its hub path, as for the original
    config_path, weights_path = base.files(key)
    rel = base.model_paths[key]
    state, file_meta = _read(weights_path)
    merged = merge_state(state, adapter, strength)

    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        replaced = {f"{rel}.json", f"{rel}.safetensors", "pipeline.json"}
        linked = 0
        for src in sorted(root.rglob("*")):
            name = src.relative_to(root).as_posix()
            if src.is_dir() or name in replaced or name.startswith(".") or "/." in name:
                continue
            _link(src, tmp / name)
            linked += 1
        shutil.copyfile(root / "pipeline.json", tmp / "pipeline.json")
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config_path, f"{target}.json")
        file_meta[MERGE_HEADER] = json.dumps({**{k: v for k, v in meta.items() if k != "format"},
                                              "source_format": FORMAT, "strength": strength,
                                              "original_checkpoint_sha256": have})
        save_file(merged, f"{target}.safetensors", metadata=file_meta)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"model_key": key, "checkpoint": f"{rel}.safetensors", "strength": strength,
            "modules_merged": len(adapter.modules), "tensors": len(merged), "files_linked": linked}
