"""Image to textured 3D with a TRELLIS.2 base and optional LoRA adapters (docs/pipeline.md); `trellis2-worker
generate` is its command.

- `generate(GenerateRequest(...)) -> report`: one request end to end (inputs, checks, pipeline, GLB, O-Voxel).
- `Trellis2Pipeline(base, device, sampler_params, models).run(conds, seed, pipeline_type) -> Generation`: the
  reference pipeline's stages (sparse structure, shape latent direct or cascade, texture latent, both decoders,
  the mesh); `PIPELINE_TYPES` says which models and resolutions each type uses.
- `sample(model, noise, cond, neg_cond, SamplerSettings)`: the guided flow Euler sampler.
- `check_adapters(...)`, `adapters_applied(pipeline, adapters)`: adapters checked against their slots, and put on
  the flows at their strengths for a block.
- `preprocess(image, remove_background)`: the reference's image preparation; `to_glb(...)`: the textured GLB.
"""

# Imported on first use (PEP 562): every `trellis2-worker` command loads this package's CLI, which needs none of
# torch's weight.
_EXPORTS = {
    "Generation": "pipeline", "PIPELINE_TYPES": "pipeline", "PipelineType": "pipeline",
    "Trellis2Pipeline": "pipeline", "SAMPLER_PARAMS": "sampler", "SamplerSettings": "sampler", "sample": "sampler",
    "timesteps": "sampler", "AdapterRequest": "adapters", "CheckedAdapter": "adapters",
    "adapters_applied": "adapters", "check_adapters": "adapters", "GlbResult": "export", "to_glb": "export",
    "load_image": "image", "preprocess": "image", "GenerateRequest": "run", "generate": "run",
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
