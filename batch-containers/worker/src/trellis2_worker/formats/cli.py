"""`trellis2-worker convert ADAPTER --to peft|comfyui|merged --output OUT [--scale S] [--base BASE]`."""

from __future__ import annotations

import argparse

from . import TARGETS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="convert an adapter to a PEFT directory, a ComfyUI LoRA file, or a merged base",
        description="Converts an adapter that training returned (<denoiser>.safetensors) into: a PEFT directory "
                    "(adapter_config.json + adapter_model.safetensors, loadable with PeftModel.from_pretrained); "
                    "a ComfyUI LoRA file (for ComfyUI's native TRELLIS.2 nodes and its LoRA loader); or a merged "
                    "base directory (the base with the adapter folded into its flow at --scale, usable as --base "
                    "here and by the official TRELLIS.2 pipeline). The outputs keep the adapter's metadata.")
    p.add_argument("adapter", help="the adapter .safetensors: local path or s3:// / https:// URI")
    p.add_argument("--to", required=True, choices=TARGETS)
    p.add_argument("--output", required=True,
                   help="peft: a directory (or s3:// prefix); comfyui: a .safetensors path or URI; "
                        "merged: the new base directory (local, new or empty)")
    p.add_argument("--scale", type=float, default=None, help="merged only: the adapter strength folded in (default 1)")
    p.add_argument("--base", default=None,
                   help="merged only: the base to merge into (default: the base named in the adapter; "
                        "HF repo id, local dir, or 'tiny')")
    p.add_argument("--report", help="where the JSON report goes (URI)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    from .conversion import convert

    return convert(args.adapter, args.to, args.output, scale=args.scale, base=args.base)
