"""`trellis2-worker ingest` and `trellis2-worker make-samples`."""

from __future__ import annotations

import argparse

from trellis2_worker.ingest.pipeline import DEFAULT_TIMEOUT_S


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="extract assets, dump meshes/materials and render condition views (the first half of preprocess)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--input", required=True, help="zip archive, directory or 3D file: local path, s3:// or https://")
    p.add_argument("--out", required=True, help="output directory (dumps/, renders_cond/, metadata.csv, report)")
    p.add_argument("--render-size", type=int, default=1024, help="condition render size in pixels")
    p.add_argument("--render-samples", type=int, default=32, help="Cycles samples per condition render")
    p.add_argument("--denoise", choices=("accurate", "fast", "off"), default="accurate",
                   help="OpenImageDenoise quality for the renders (accurate = the reference's)")
    p.add_argument("--workers", type=int, default=1, help="Blender processes run at once")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds allowed per asset")
    p.add_argument("--memory-mb", type=int, default=0, help="memory (data) cap per Blender process (0: automatic)")
    p.add_argument("--no-render", action="store_true", help="dump meshes and materials only")
    p.add_argument("--report", default=None, help="also write the report JSON here (local path or s3://)")
    p.set_defaults(func=run_ingest)

    s = subparsers.add_parser(
        "make-samples",
        help="write a small zip of textured and coloured sample shapes (the demo's training data)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    s.add_argument("--out", required=True, help="the .zip file to write")
    s.add_argument("--count", type=int, default=8, help="number of sample objects")
    s.set_defaults(func=run_make_samples)


def run_ingest(args) -> dict:
    from trellis2_worker.ingest.pipeline import ingest

    return ingest(
        args.input, args.out, render_size=args.render_size, render_samples=args.render_samples,
        workers=args.workers, timeout_s=args.timeout, denoise=args.denoise, memory_mb=args.memory_mb or None,
        render=not args.no_render,
    )


def run_make_samples(args) -> dict:
    from trellis2_worker.ingest.samples import make_samples

    return make_samples(args.out, count=args.count)
