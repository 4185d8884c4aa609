"""`trellis2-worker generate`: an image to a textured GLB with a TRELLIS.2 base and LoRA adapters."""

from __future__ import annotations

import argparse
import json

from trellis2_worker import DEFAULT_BASE
from trellis2_worker.errors import InputError

from .options import (ADAPTER_STAGES, DEFAULT_DECIMATE, DEFAULT_PIPELINE_TYPE, DEFAULT_RESOLUTION, DEFAULT_SCALE,
                      DEFAULT_SEED, DEFAULT_TEXTURE_SIZE, PIPELINE_TYPE_NAMES, RESOLUTIONS, SAMPLER_STAGES,
                      TEXTURE_SIZES)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="generate a textured GLB from an image, with optional LoRA adapters",
        description="Runs the TRELLIS.2 image-to-3D pipeline (sparse structure, shape, texture) with at most one "
                    "LoRA adapter per stage, and writes a GLB with PBR textures. At least one adapter is needed "
                    "unless --allow-base-only.")
    p.add_argument("--image", required=True, help="input image: path, s3:// or https:// URI (RGBA with a "
                   "transparent background, or opaque when the base has a background-removal model)")
    p.add_argument("--output", required=True, help="where the GLB goes (path or s3:// URI ending in .glb)")
    p.add_argument("--report", help="where the JSON report goes (URI)")
    p.add_argument("--base", default=DEFAULT_BASE, help="HF repo id, local dir, or 'tiny'")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION, choices=RESOLUTIONS,
                   help="the resolution the adapters were trained at; 1024 runs the cascade by default")
    p.add_argument("--pipeline-type", choices=PIPELINE_TYPE_NAMES, default=None,
                   help="default: " + ", ".join(f"{t} for --resolution {r}" for r, t in DEFAULT_PIPELINE_TYPE.items()))
    for stage in ADAPTER_STAGES:
        flag = stage.replace("_", "-")
        p.add_argument(f"--{flag}-lora", dest=f"{stage}_lora", metavar="URI", help=f"{stage} adapter (.safetensors)")
        p.add_argument(f"--{flag}-scale", dest=f"{stage}_scale", type=float, default=DEFAULT_SCALE, metavar="X",
                       help=f"its strength (default {DEFAULT_SCALE})")
    p.add_argument("--texture-size", type=int, default=DEFAULT_TEXTURE_SIZE, choices=TEXTURE_SIZES)
    p.add_argument("--decimate", type=int, default=DEFAULT_DECIMATE, metavar="FACES",
                   help="simplify the mesh to about this many faces (0: keep every face)")
    p.add_argument("--vxz", metavar="URI", help="also write the decoded O-Voxel (.vxz)")
    p.add_argument("--allow-base-only", action="store_true", help="generate with no adapter at all")
    p.add_argument("--sampler", action="extend", nargs="+", default=[], metavar="STAGE.PARAM=VALUE",
                   help="override a pipeline.json sampler parameter, e.g. shape.steps=8 or "
                        "sparse_structure.guidance_interval=[0.5,1]; STAGE in sparse_structure|shape|texture; "
                        "VALUE is JSON")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="the cascade's high-resolution token cap (default: the reference's 49152)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress output")
    p.set_defaults(func=run)


def parse_sampler_overrides(items: list[str]) -> dict[str, dict]:
    """["shape.steps=8", ...] -> {"shape": {"steps": 8}}; parameter names are checked by the pipeline."""
    out: dict[str, dict] = {}
    for item in items:
        target, sep, value = item.partition("=")
        stage, dot, param = target.partition(".")
        if not sep or not dot or not param:
            raise InputError(f"--sampler {item!r}: expected STAGE.PARAM=VALUE, e.g. shape.steps=8")
        if stage not in SAMPLER_STAGES:
            raise InputError(f"--sampler {item!r}: unknown stage {stage!r} (known: {', '.join(SAMPLER_STAGES)})")
        try:
            parsed = json.loads(value)
        except ValueError:
            raise InputError(f"--sampler {item!r}: the value is not JSON") from None
        out.setdefault(stage, {})[param] = parsed
    return out


def run(args: argparse.Namespace) -> dict:
    from .run import GenerateRequest, generate

    adapters = [(stage, getattr(args, f"{stage}_lora"), getattr(args, f"{stage}_scale"))
                for stage in ADAPTER_STAGES if getattr(args, f"{stage}_lora")]
    req = GenerateRequest(
        image=args.image, output=args.output, base=args.base, seed=args.seed, resolution=args.resolution,
        pipeline_type=args.pipeline_type or DEFAULT_PIPELINE_TYPE[args.resolution], adapters=adapters,
        texture_size=args.texture_size, decimate=args.decimate, vxz=args.vxz, allow_base_only=args.allow_base_only,
        sampler=parse_sampler_overrides(args.sampler), max_tokens=args.max_tokens, device=args.device,
        progress=args.progress)
    return generate(req)
