"""A TRELLIS.2 base: the official layout (pipeline.json + ckpts/<name>.{json,safetensors}, the sparse-structure VAE
from TRELLIS-image-large, DINOv3) from a Hugging Face repo, a local directory, or the generated `tiny` base."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import torch
import torch.nn as nn

from trellis2_worker import DEFAULT_BASE

from .conditioner import ImageConditioner
from .loading import load_checkpoint, sha256_file

DINOV3_REPO = "facebook/dinov3-vitl16-pretrain-lvd1689m"

# Models the data-preparation side needs that the image-to-3D pipeline.json does not list
# (docs/models.md#which-models-each-task-needs).
EXTRA_MODELS = {
    "sparse_structure_encoder": "microsoft/TRELLIS-image-large/ckpts/ss_enc_conv3d_16l8_fp16",
    "shape_slat_encoder": "ckpts/shape_enc_next_dc_f16c32_fp16",
    "tex_slat_encoder": "ckpts/tex_enc_next_dc_f16c32_fp16",
}

NORMALIZATION_KEYS = {"shape": "shape_slat_normalization", "tex": "tex_slat_normalization"}


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trellis2-lora"


def _is_repo_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))


class Base:
    """One base model set. Models load lazily, strictly, once per process; frozen and in eval mode."""

    def __init__(self, model_id: str, root: Path, pipeline: dict, repo_id: str | None = None, token: str | None = None):
        self.model_id = model_id
        self.root = Path(root)
        self.pipeline = pipeline
        self.repo_id = repo_id
        self._token = token
        self._models: dict[tuple[str, str], nn.Module] = {}
        self._files: dict[str, tuple[Path, Path]] = {}
        self._sha: dict[str, str] = {}
        self._conditioner: dict[str, ImageConditioner] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Base({self.model_id!r}, root={str(self.root)!r})"

    # -- which files -------------------------------------------------------------------------------------------
    @property
    def model_paths(self) -> dict[str, str]:
        paths = dict(EXTRA_MODELS)
        paths.update(self.pipeline.get("args", {}).get("models", {}))
        return paths

    def keys(self) -> list[str]:
        return sorted(self.model_paths)

    def files(self, key: str) -> tuple[Path, Path]:
        """(config .json, .safetensors) of a model key, downloading them if needed."""
        if key in self._files:
            return self._files[key]
        paths = self.model_paths
        if key not in paths:
            raise KeyError(f"unknown model key {key!r}; this base has: {', '.join(self.keys())}")
        rel = paths[key]
        local = self.root / rel
        if Path(f"{local}.json").is_file() and Path(f"{local}.safetensors").is_file():
            found = (Path(f"{local}.json"), Path(f"{local}.safetensors"))
        else:
            found = self._download(rel)
        self._files[key] = found
        return found

    def _download(self, rel: str) -> tuple[Path, Path]:
        # The reference first asks the base repo for `rel`, then falls back to `rel` as a hub path of its own
        # (how the SS VAE in microsoft/TRELLIS-image-large is found).
        from huggingface_hub import hf_hub_download

        attempts = []
        if self.repo_id:
            attempts.append((self.repo_id, rel))
        parts = rel.split("/")
        if len(parts) >= 3:
            attempts.append(("/".join(parts[:2]), "/".join(parts[2:])))
        errors = []
        for repo, name in attempts:
            try:
                j = hf_hub_download(repo, f"{name}.json", token=self._token)
                w = hf_hub_download(repo, f"{name}.safetensors", token=self._token)
                return Path(j), Path(w)
            except Exception as exc:  # noqa: BLE001 - try the next place, report all at the end
                errors.append(f"{repo}/{name}: {type(exc).__name__}")
        raise FileNotFoundError(f"checkpoint {rel!r} not found under {self.root} nor on the hub ({'; '.join(errors) or 'no hub path'})")

    # -- models ------------------------------------------------------------------------------------------------
    def load(self, key: str, device: str | torch.device = "cpu") -> nn.Module:
        dev = str(torch.device(device))
        with self._lock:
            if (key, dev) not in self._models:
                j, w = self.files(key)
                model = load_checkpoint(j, w, device=dev)
                model.eval()
                model.requires_grad_(False)
                self._models[(key, dev)] = model
            return self._models[(key, dev)]

    def config(self, key: str) -> dict:
        return json.loads(self.files(key)[0].read_text())

    def checkpoint_sha256(self, key: str) -> str:
        if key not in self._sha:
            self._sha[key] = sha256_file(self.files(key)[1])
        return self._sha[key]

    def normalization(self, key: str) -> dict:
        """Latent normalisation {"mean": [32], "std": [32]} for "shape" or "tex" (or any key naming one)."""
        k = key.lower()
        which = "tex" if ("tex" in k or "pbr" in k) else "shape" if "shape" in k else None
        if which is None:
            raise KeyError(f"no latent normalisation for {key!r} (the sparse-structure latent is not normalised)")
        norm = self.pipeline.get("args", {}).get(NORMALIZATION_KEYS[which])
        if not norm:
            raise KeyError(f"pipeline.json of {self.model_id} has no {NORMALIZATION_KEYS[which]}")
        return {"mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]]}

    def image_conditioner(self, device: str | torch.device = "cpu", image_size: int = 512) -> ImageConditioner:
        dev = str(torch.device(device))
        with self._lock:
            if dev not in self._conditioner:
                from transformers import DINOv3ViTModel

                name = self.pipeline.get("args", {}).get("image_cond_model", {}).get("args", {}).get("model_name", DINOV3_REPO)
                local = self.root / name
                src = str(local) if local.is_dir() else name
                model = DINOv3ViTModel.from_pretrained(src, token=self._token, dtype=torch.float32)
                cond = ImageConditioner(model, image_size=image_size).to(dev)
                cond.eval().requires_grad_(False)
                self._conditioner[dev] = cond
            c = self._conditioner[dev]
            c.image_size = image_size
            return c


_BASES: dict[tuple[str, str | None], Base] = {}


def load_base(base: str = DEFAULT_BASE, token: str | None = None) -> Base:
    """`tiny`, a local directory in the official layout, or a Hugging Face repo id (token for gated files)."""
    token = token or os.environ.get("HF_TOKEN") or None
    key = (base, token)
    if key in _BASES:
        return _BASES[key]
    if base == "tiny":
        from .tiny import ensure_tiny_base

        root = ensure_tiny_base()
        b = Base("tiny", root, json.loads((root / "pipeline.json").read_text()))
    elif Path(base).expanduser().is_dir():
        root = Path(base).expanduser().resolve()
        pj = root / "pipeline.json"
        if not pj.is_file():
            raise FileNotFoundError(f"{root} has no pipeline.json (expected the official TRELLIS.2 layout)")
        b = Base(root.name, root, json.loads(pj.read_text()), token=token)
    elif _is_repo_id(base):
        from huggingface_hub import hf_hub_download

        pj = Path(hf_hub_download(base, "pipeline.json", token=token))
        b = Base(base, pj.parent, json.loads(pj.read_text()), repo_id=base, token=token)
    else:
        raise FileNotFoundError(f"base {base!r} is neither 'tiny', a directory, nor a Hugging Face repo id")
    _BASES[key] = b
    return b
