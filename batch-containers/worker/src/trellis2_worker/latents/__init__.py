"""Latents: encode O-Voxels into TRELLIS.2 latents and write them as the preprocessed dataset (`preprocess`).

The dataset format itself (names, reading, validation, writing) is the `trellis2_worker.dataset` package.
`preprocess` (module) holds the command, `preprocess.preprocess(input, resolution, base, output, ...) -> report`;
`encode_object(dump_dir, resolution, encoders)` gives one object's O-Voxels and latents, `EncodingError` the failure
that skips one object; `plan` cuts a run into shards of a plan's objects (`--objects-from`, `--shard I/N` or
`--shard-count N` in an array job), and `merge` (module and command) joins the shards' datasets into the one a
one-shard run writes.
"""

# Imported on first use (PEP 562): torch takes seconds to import, and every `trellis2-worker` command loads this
# package's CLI. (`preprocess` is not among them: the submodule of that name would shadow a function.)
_EXPORTS = {"EncodingError": "encode", "encode_object": "preprocess"}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


__all__ = ["EncodingError", "encode_object", "preprocess"]
