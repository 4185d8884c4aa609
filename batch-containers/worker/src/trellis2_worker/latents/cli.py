"""`trellis2-worker preprocess`."""

from __future__ import annotations

import argparse

from trellis2_worker import DEFAULT_BASE


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "preprocess",
        help="raw 3D assets → preprocessed dataset zip (latents + condition renders); a dataset zip is validated and passed through",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="zip of raw assets or a preprocessed dataset zip: local path, s3:// or https://")
    p.add_argument("--resolution", type=int, required=True, choices=(512, 1024), help="O-Voxel / latent resolution")
    p.add_argument("--base", default=DEFAULT_BASE, help="base model: HF repo id, local directory or 'tiny'")
    p.add_argument("--output", required=True, help="where to write the dataset zip (local path or s3://)")
    p.add_argument("--report", default=None, help="where to write the report JSON (local path or s3://)")
    p.add_argument("--render-size", type=int, default=None, help="condition render size in pixels (default 1024)")
    p.add_argument("--workers", type=int, default=1, help="Blender processes run at once")
    p.add_argument("--cache-dir", default=None,
                   help="per-object cache, so a rerun continues where it stopped "
                   "(default $TRELLIS2_PREPROCESS_CACHE or ~/.cache/trellis2-lora/preprocess)")
    p.add_argument("--input-record", default=None,
                   help="Prepare's record of the inspected input (bytes, sha256, entries, objects): the input must "
                   "be that archive (exit 2 otherwise)")
    p.add_argument("--objects-from", default=None,
                   help="a plan ({objects: [{file, sha256}...]}, e.g. a preprocess report): preprocess only its objects")
    p.add_argument("--shard", default=None,
                   help="I/N: only shard I (from 0) of N of the plan's objects, a contiguous block; each object's "
                   "dataset members are the bytes a one-shard run writes")
    p.add_argument("--allow-other-base", action="store_true",
                   help="accept a preprocessed dataset made for another base model")
    p.set_defaults(func=run)


def run(args) -> dict:
    from trellis2_worker.ingest import recorded_input

    with recorded_input(args.input, args.input_record) as input_uri:  # checked before the heavy imports
        from trellis2_worker.latents.preprocess import preprocess

        return preprocess(
            input_uri, args.resolution, args.base, args.output,
            render_size=args.render_size, workers=args.workers, cache_dir=args.cache_dir,
            allow_other_base=args.allow_other_base, objects_from=args.objects_from, shard=args.shard,
        )
