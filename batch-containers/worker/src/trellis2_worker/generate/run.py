"""One generate request end to end: fetch and check the inputs (adapters before anything is sampled), prepare the
image, run the pipeline with the adapters on, export the GLB (and the O-Voxel), and say what was done."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from trellis2_worker import DEFAULT_BASE
from trellis2_worker.errors import InputError

from .options import (DEFAULT_DECIMATE, DEFAULT_PIPELINE_TYPE, DEFAULT_RESOLUTION, DEFAULT_SEED, DEFAULT_TEXTURE_SIZE,
                      MAX_ADAPTER_BYTES, MAX_IMAGE_BYTES, MAX_NUM_TOKENS, MAX_SEED, MIN_DECIMATE, MIN_SEED,
                      PIPELINE_TYPES_AT, TEXTURE_SIZES, VXZ_LZMA_PRESET, check_sampler_overrides, check_scale)


@dataclass
class GenerateRequest:
    image: str
    output: str
    base: str = DEFAULT_BASE
    seed: int = DEFAULT_SEED
    resolution: int = DEFAULT_RESOLUTION
    pipeline_type: str = DEFAULT_PIPELINE_TYPE[DEFAULT_RESOLUTION]
    adapters: list = field(default_factory=list)  # [(stage, uri, scale)]
    texture_size: int = DEFAULT_TEXTURE_SIZE
    decimate: int = DEFAULT_DECIMATE
    vxz: str | None = None
    allow_base_only: bool = False
    sampler: dict = field(default_factory=dict)   # {STAGE: {param: value}}
    max_tokens: int | None = None
    device: str | None = None
    progress: bool = True


def _say(enabled: bool, text: str) -> None:
    if enabled:
        print(f"[generate] {text}", file=sys.stderr, flush=True)


def check_request(req: GenerateRequest) -> None:
    """What can be refused from the request alone."""
    if not req.output.lower().endswith(".glb"):
        raise InputError(f"--output must end in .glb: {req.output}")
    if req.vxz and not req.vxz.lower().endswith(".vxz"):
        raise InputError(f"--vxz must end in .vxz: {req.vxz}")
    if req.resolution not in PIPELINE_TYPES_AT:
        raise InputError(f"resolution must be one of {', '.join(map(str, PIPELINE_TYPES_AT))}, got {req.resolution}")
    if req.pipeline_type not in PIPELINE_TYPES_AT[req.resolution]:
        raise InputError(f"pipeline type {req.pipeline_type} does not sample at resolution {req.resolution} "
                         f"(at {req.resolution}: {', '.join(PIPELINE_TYPES_AT[req.resolution])})")
    if req.texture_size not in TEXTURE_SIZES:
        raise InputError(f"texture size must be one of {', '.join(map(str, TEXTURE_SIZES))}, got {req.texture_size}")
    if req.decimate < MIN_DECIMATE:
        raise InputError(f"--decimate must be 0 (off) or a face count, got {req.decimate}")
    if req.max_tokens is not None and req.max_tokens < 1:
        raise InputError(f"--max-tokens must be positive, got {req.max_tokens}")
    if not MIN_SEED <= req.seed <= MAX_SEED:
        raise InputError(f"--seed must be from {MIN_SEED} to {MAX_SEED}, got {req.seed}")
    for stage, _, scale in req.adapters:
        check_scale(stage, scale)
    check_sampler_overrides(req.sampler)
    if not req.adapters and not req.allow_base_only:
        raise InputError("no adapter given: pass at least one of --sparse-structure-lora, --geometry-lora, "
                         "--texture-lora, or --allow-base-only to generate with the base alone")


def _device(name: str | None):
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but this machine has no CUDA device")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def generate(req: GenerateRequest) -> dict:
    check_request(req)
    from trellis2_worker.models import load_base
    from trellis2_worker.ovoxel import write_vxz
    from trellis2_worker.storage import open_input, upload_file, write_bytes

    from .adapters import AdapterRequest, adapters_applied, check_adapters, file_name
    from .export import EmptyMeshError, to_glb, vxz_attrs
    from .image import background_remover, has_transparency, load_image, preprocess
    from .pipeline import PIPELINE_TYPES, Trellis2Pipeline

    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def phase(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(timings.get(name, 0.0) + now - clock[0], 3)
        clock[0] = now

    say = lambda text: _say(req.progress, text)  # noqa: E731
    device = _device(req.device)
    pt = PIPELINE_TYPES[req.pipeline_type]
    work = Path(tempfile.mkdtemp(prefix="trellis2-generate-"))
    try:
        say(f"base {req.base}, pipeline type {pt.name}, device {device}")
        try:
            base = load_base(req.base)
        except FileNotFoundError as exc:
            raise InputError(str(exc)) from exc
        fetched = {}

        def fetch(uri: str, limit: int) -> Path:
            if uri not in fetched:
                local = Path(open_input(uri, work / f"in{len(fetched)}", max_bytes=limit))
                if not local.is_file():
                    raise InputError(f"not a file: {file_name(uri)}")
                if local.stat().st_size > limit:
                    raise InputError(f"{file_name(uri)} is larger than the {limit // (1024 * 1024)} MB limit")
                fetched[uri] = local
            return fetched[uri]

        requests = [AdapterRequest(stage, uri, scale) for stage, uri, scale in req.adapters]
        adapters = check_adapters(requests, lambda uri: fetch(uri, MAX_ADAPTER_BYTES), base, pt, req.resolution)
        for a in adapters:
            say(f"adapter {a.stage}: {a.file} at strength {a.scale:g} on {a.model_key}")
        pipeline = Trellis2Pipeline(base, device=device, sampler_params=req.sampler, progress=req.progress)
        pipeline.check_models(pt)
        phase("fetch_and_check")

        image = load_image(fetch(req.image, MAX_IMAGE_BYTES))
        remover = None
        if not has_transparency(image):
            remover = background_remover(base, str(device))
        prepared = preprocess(image, remover)
        del remover
        phase("preprocess")

        say("image conditions (DINOv3)")
        conds = {512: pipeline.get_cond(prepared, 512)}
        if pt.cond_resolution != 512:
            conds[pt.cond_resolution] = pipeline.get_cond(prepared, pt.cond_resolution)
        phase("condition")

        say("loading the flows and decoders")
        for key in pt.models:
            pipeline.model(key)
        phase("load_models")
        pipeline.on_stage = lambda name: say(f"stage {name}")
        with adapters_applied(pipeline, adapters):
            phase("load_adapters")
            gen = pipeline.run(conds, seed=req.seed, pipeline_type=pt.name,
                               max_num_tokens=req.max_tokens or MAX_NUM_TOKENS)
        timings.update(gen.timings)
        clock[0] = time.perf_counter()
        say(f"mesh: {len(gen.vertices):,} vertices, {len(gen.faces):,} faces at {gen.resolution}; exporting")
        if len(gen.faces) == 0:  # deterministic for this image and seed: retrying would not help
            raise InputError("the generated shape has no surface (no faces): try another seed or image")
        try:
            glb = to_glb(gen.vertices, gen.faces, gen.voxel_coords, gen.voxel_attrs, gen.resolution,
                         texture_size=req.texture_size, decimate=req.decimate,
                         progress=lambda step: say(f"export: {step}"))
        except EmptyMeshError as exc:  # deterministic for this image and seed: retrying would not help
            raise InputError(f"{exc}: try another seed or image") from exc
        phase("export")
        write_bytes(req.output, glb.data)
        if req.vxz:
            local = work / "out.vxz"
            write_vxz(local, gen.voxel_coords, vxz_attrs(gen.voxel_attrs), compression_level=VXZ_LZMA_PRESET)
            upload_file(local, req.vxz)
        phase("write")
        say(f"wrote {req.output} ({len(glb.data):,} bytes)")
        report = {
            "seed": req.seed, "resolution": req.resolution, "pipeline_type": pt.name,
            "resolution_out": gen.resolution, "tokens": gen.tokens,
            "adapters": [a.record() for a in adapters],
            "sampler": {stage: s.as_params() for stage, s in pipeline.samplers.items()},
            "timings": timings,
            "glb": {"file_size": len(glb.data), "faces": glb.faces, "vertices": glb.vertices,
                    "texture_size": glb.texture_size},
            "output": req.output,
        }
        if req.vxz:
            report["vxz"] = req.vxz
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
