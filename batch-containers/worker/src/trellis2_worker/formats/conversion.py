"""`convert`: a native adapter to a PEFT directory, a ComfyUI file, or a merged base directory."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

from trellis2_worker.errors import InputError

from . import TARGETS
from .comfyui import write_comfyui
from .native import read_native
from .peft_dir import write_peft_dir

# What a converted file's report repeats from the adapter header, so a user sees what the output is for.
SUMMARY_FIELDS = ("denoiser", "resolution", "model_key", "rank", "alpha", "base_model", "base_checkpoint_sha256")


def _is_remote(uri: str) -> bool:
    from trellis2_worker import storage

    return storage.is_s3(uri) or storage.is_http(uri)


def convert(adapter: str, to: str, output: str, scale: float | None = None, base: str | None = None) -> dict:
    """Converts the native adapter at `adapter` (local path or URI) and returns the report. `scale` (the strength
    folded in) and `base` (default: the base named in the adapter header) apply to `merged` only."""
    if to not in TARGETS:
        raise InputError(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    if to != "merged" and (scale is not None or base is not None):
        raise InputError("--scale and --base apply to --to merged; PEFT and ComfyUI take the strength when they "
                         "load the adapter")
    strength = 1.0 if scale is None else float(scale)
    if not math.isfinite(strength):
        raise InputError(f"--scale must be a finite number, not {scale}")
    from trellis2_worker import storage

    work = Path(tempfile.mkdtemp(prefix="trellis2-convert-"))
    try:
        native = read_native(storage.open_input(adapter, work / "in"))
        report = {"to": to, "output": output,
                  "adapter": {k: native.metadata[k] for k in SUMMARY_FIELDS if k in native.metadata}}
        if to == "comfyui":
            if not output.endswith(".safetensors"):
                raise InputError("--output for --to comfyui is the .safetensors file to write")
            local = work / "out" / Path(output).name
            local.parent.mkdir()
            info = write_comfyui(native, local)
            storage.upload_file(local, output)
            report.update(submodel=info["submodel"], modules=info["modules"], file_size=local.stat().st_size)
            if info["warning"]:
                report["warnings"] = [info["warning"]]
        elif to == "peft":
            files = write_peft_dir(native, work / "out")
            for f in files:
                storage.upload_file(f, f"{output.rstrip('/')}/{f.name}")
            report["files"] = [f.name for f in files]
        else:
            if _is_remote(output):
                raise InputError("--output for --to merged is a local directory (the new base)")
            from trellis2_worker.models import load_base

            base_id = base or native.metadata.get("base_model")
            if not base_id:
                raise InputError("the adapter header names no base model; pass --base")
            try:
                loaded = load_base(str(base_id))
            except FileNotFoundError as exc:
                raise InputError(f"base {base_id!r} cannot be found: {exc}") from exc
            from .merged import write_merged_base

            report.update(write_merged_base(native, loaded, output, strength))
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
