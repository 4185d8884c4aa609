"""`trellis2-worker preprocess` and `trellis2-worker merge` (the shards of one preprocess run)."""

from __future__ import annotations

import argparse

from trellis2_worker import DEFAULT_BASE


def register(subparsers) -> None:
    register_preprocess(subparsers)
    register_merge(subparsers)


def register_preprocess(subparsers) -> None:
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
    shard = p.add_mutually_exclusive_group()
    shard.add_argument("--shard", default=None,
                       help="I/N: only shard I (from 0) of N of the plan's objects, a contiguous block; each object's "
                       "dataset members are the bytes a one-shard run writes")
    shard.add_argument("--shard-count", type=int, default=None, metavar="N",
                       help="as --shard I/N with I from $AWS_BATCH_JOB_ARRAY_INDEX (an AWS Batch array child); "
                       "'{shard}' in --output/--report becomes I")
    p.add_argument("--allow-other-base", action="store_true",
                   help="accept a preprocessed dataset made for another base model")
    p.set_defaults(func=run, resolve=resolve_shard)


def resolve_shard(args) -> None:
    """Before the run (so that even an error report lands at the shard's URI): the shard index and `{shard}`."""
    from trellis2_worker.errors import InputError
    from trellis2_worker.latents.plan import SHARD_FIELD, fill_shard, index_from_env, parse_shard

    index = None
    try:
        if args.shard_count is not None:
            index = index_from_env(args.shard_count)
            args.shard = f"{index}/{args.shard_count}"
        elif args.shard is not None:
            index = parse_shard(args.shard)[0]
        args.output = fill_shard(args.output, index, "--output")
        args.report = fill_shard(args.report, index, "--report")
    except InputError:
        if args.report and SHARD_FIELD in args.report:
            args.report = None  # no index for it: the error goes to stderr only, not to a file named {shard}
        raise


def run(args) -> dict:
    from trellis2_worker.ingest import recorded_input

    with recorded_input(args.input, args.input_record) as input_uri:  # checked before the heavy imports
        from trellis2_worker.latents.preprocess import preprocess

        return preprocess(
            input_uri, args.resolution, args.base, args.output,
            render_size=args.render_size, workers=args.workers, cache_dir=args.cache_dir,
            allow_other_base=args.allow_other_base, objects_from=args.objects_from, shard=args.shard,
        )


def register_merge(subparsers) -> None:
    p = subparsers.add_parser(
        "merge",
        help="the shards of one preprocess run (--shard-count children) -> its one dataset zip and report",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--plan", required=True, help="the plan the shards were cut from (their --objects-from)")
    p.add_argument("--shard-count", type=int, required=True, metavar="N", help="how many shards the run had")
    p.add_argument("--resolution", type=int, required=True, choices=(512, 1024), help="the run's resolution")
    p.add_argument("--base", default=DEFAULT_BASE, help="the run's base model (as given to the shards)")
    p.add_argument("--shard-outputs", required=True,
                   help="the shards' --output, with {shard} where each has its index (local path or s3://)")
    p.add_argument("--shard-reports", required=True, help="the shards' --report, with {shard}")
    p.add_argument("--output", required=True, help="where to write the run's dataset zip (local path or s3://)")
    p.add_argument("--report", default=None, help="where to write the run's report JSON (local path or s3://)")
    p.set_defaults(func=run_merge)


def run_merge(args) -> dict:
    from trellis2_worker.latents.merge import merge

    return merge(args.plan, args.shard_count, args.resolution, args.base, args.shard_outputs, args.shard_reports,
                 args.output)
