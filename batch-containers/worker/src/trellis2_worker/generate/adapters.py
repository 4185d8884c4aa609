"""One optional LoRA adapter per stage, each with a strength. An adapter's own header says what it is (stage,
resolution, base checkpoint); every mismatch with the slot it is given in is refused before anything is sampled."""

from __future__ import annotations

import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trellis2_worker.errors import InputError

from .options import ADAPTER_STAGES as STAGES
from .options import DEFAULT_SCALE, check_scale
from .pipeline import PipelineType



@dataclass(frozen=True)
class AdapterRequest:
    stage: str
    uri: str
    scale: float = DEFAULT_SCALE


@dataclass(frozen=True)
class CheckedAdapter:
    stage: str
    path: Path
    file: str
    scale: float
    resolution: int
    base_checkpoint_sha256: str
    model_key: str

    def record(self) -> dict:
        return {"stage": self.stage, "file": self.file, "scale": self.scale, "resolution": self.resolution,
                "base_checkpoint_sha256": self.base_checkpoint_sha256}


def file_name(uri: str) -> str:
    """The file name of a path or URI, without an https URI's query (presigned URLs carry signatures there)."""
    if uri.startswith(("https://", "http://", "s3://")):
        uri = urllib.parse.urlsplit(uri).path
    return Path(uri.rstrip("/")).name or "the file"


def model_key(stage: str, pipeline_type: PipelineType) -> str:
    """The flow an adapter of `stage` goes on in this pipeline type (the cascade's low-resolution shape flow, and
    the 512 flows in the 1024 types, stay the base's)."""
    if stage == "sparse_structure":
        return "sparse_structure_flow_model"
    return pipeline_type.shape_model if stage == "geometry" else pipeline_type.tex_model


def check_adapter(request: AdapterRequest, path: Path, base, pipeline_type: PipelineType, resolution: int,
                  read_metadata) -> CheckedAdapter:
    slot = request.stage
    name = file_name(request.uri)
    scale = request.scale
    check_scale(slot, scale)
    from trellis2_worker.formats import FORMAT

    try:
        meta = read_metadata(path)
    except InputError:  # its message names the local (downloaded) path
        raise InputError(f"{name} (given as the {slot} adapter) is not a safetensors file") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{name} (given as the {slot} adapter) is not a TRELLIS.2 LoRA adapter made by this "
                         f"trainer (header format {meta.get('format')!r})")
    stage = meta.get("denoiser")
    if stage != slot:
        raise InputError(f"{name} is a {stage} adapter (trained for the {stage} stage) and cannot be used as the "
                         f"{slot} adapter; give it as the {stage} adapter instead")
    try:
        trained_at = int(meta.get("resolution"))
    except (TypeError, ValueError):
        raise InputError(f"{name} does not say which resolution it was trained at") from None
    if trained_at != resolution:
        raise InputError(f"{name} was trained at resolution {trained_at}; this generation is at resolution "
                         f"{resolution} (they must match)")
    key = model_key(slot, pipeline_type)
    expected = base.checkpoint_sha256(key)
    got = str(meta.get("base_checkpoint_sha256", ""))
    if got != expected:
        raise InputError(f"{name} was trained on another base checkpoint (sha256 {got[:12] or 'unknown'}...) than "
                         f"this base's {key} (sha256 {expected[:12]}..., base {base.model_id})")
    return CheckedAdapter(slot, path, name, float(scale), trained_at, got, key)


def check_adapters(requests: list[AdapterRequest], fetch, base, pipeline_type: PipelineType,
                   resolution: int) -> list[CheckedAdapter]:
    """Every requested adapter fetched (`fetch(uri) -> local path`) and checked against its slot."""
    from trellis2_worker.formats import read_adapter_metadata

    seen = set()
    out = []
    for r in requests:
        if r.stage not in STAGES:
            raise InputError(f"unknown adapter stage {r.stage!r} (known: {', '.join(STAGES)})")
        if r.stage in seen:
            raise InputError(f"two adapters for the {r.stage} stage; one per stage")
        seen.add(r.stage)
        out.append(check_adapter(r, Path(fetch(r.uri)), base, pipeline_type, resolution, read_adapter_metadata))
    return out


@contextmanager
def adapters_applied(pipeline, adapters: list[CheckedAdapter]):
    """The pipeline's flows with the adapters on them at their strengths, for the duration of the block; the base
    modules are restored afterwards (the base caches its models per process)."""
    if not adapters:  # no peft import (seconds) for a base-only run
        yield pipeline
        return
    from peft.tuners.lora import LoraLayer

    from trellis2_worker.formats import load_adapter

    wrapped = []
    try:
        for a in adapters:
            model = pipeline.model(a.model_key)
            peft_model = load_adapter(model, a.path, a.stage, a.resolution)
            wrapped.append(peft_model)
            for m in peft_model.modules():
                if isinstance(m, LoraLayer):
                    m.set_scale("default", a.scale)
        yield pipeline
    finally:
        for peft_model in wrapped:
            peft_model.unload()  # puts the original Linears back into the base model
