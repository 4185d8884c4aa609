"""`trellis2-worker models manifest CONFIG.json`: the state_dict (names, shapes, dtypes) of the model a checkpoint
config describes, built on the meta device (no memory, no weights), printed as JSON."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from trellis2_worker.errors import InputError


def register(subparsers) -> None:
    models = subparsers.add_parser("models", help="TRELLIS.2 model utilities")
    sub = models.add_subparsers(dest="models_command", required=True)
    p = sub.add_parser("manifest", help="print a checkpoint config's state_dict names, shapes and dtypes as JSON")
    p.add_argument("config", help='checkpoint config JSON: {"name": <reference class>, "args": {...}}')
    p.add_argument("--report", help="also write a short report (class, tensor and parameter counts) here")
    p.set_defaults(func=run_manifest)


def manifest_text(manifest: dict) -> str:
    """JSON with one tensor per line."""
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in manifest["tensors"].items()]
    return ('{\n "name": ' + json.dumps(manifest["name"]) + ',\n "parameters": ' + json.dumps(manifest["parameters"])
            + ',\n "tensors": {\n' + ",\n".join(lines) + "\n }\n}")


def build_manifest(config: dict) -> dict:
    from .loading import build_model

    model = build_model(config, device="meta")
    buffers = {k for k, _ in model.named_buffers()}
    tensors = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()}
    params = sum(math.prod(s) for k, (s, _) in tensors.items() if k not in buffers)
    return {"name": config["name"], "parameters": params, "tensors": tensors}


def run_manifest(args) -> dict:
    path = Path(args.config)
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not JSON: {exc}") from None
    if isinstance(config, dict) and "config" in config and "name" not in config:
        config = config["config"]  # a manifest document from tests/manifests
    if not isinstance(config, dict) or "name" not in config:
        raise InputError(f'{path}: expected {{"name": <class>, "args": {{...}}}}')
    try:
        manifest = build_manifest(config)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: {exc}") from None
    sys.stdout.write(manifest_text(manifest) + "\n")
    return {"name": manifest["name"], "tensors": len(manifest["tensors"]), "parameters": manifest["parameters"]}
