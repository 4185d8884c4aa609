"""`trellis2-worker evaluate --pred A --gt B`: surface metrics of one mesh file against another, as given.

No re-normalisation: both files are compared in their own coordinates (a generated mesh and the ground truth from
preprocessing already share the unit-cube frame). Prints and returns
`{"chamfer_l1", "chamfer_l2", "fscore": {"0.01", "0.02"}, "normal_consistency", "samples"}`."""

from __future__ import annotations

import json

from ..errors import InputError
from .metrics import DEFAULT_SAMPLES, FSCORE_THRESHOLDS, load_mesh, mesh_metrics

MAX_SAMPLES = 10_000_000  # beyond this the KD-trees need several GB; 100k is the usual figure


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="Chamfer distance, F-score and normal consistency of two mesh files")
    p.add_argument("--pred", required=True, help="the generated mesh (glb, obj, ply or stl)")
    p.add_argument("--gt", required=True, help="the ground-truth mesh (glb, obj, ply or stl)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"surface samples per mesh (default {DEFAULT_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="sampling seed: the same seed gives the same figures")
    p.add_argument("--report", help="write the JSON report here too")
    p.set_defaults(func=run)


def run(args) -> dict:
    if not 1 <= args.samples <= MAX_SAMPLES:
        raise InputError(f"--samples must be from 1 to {MAX_SAMPLES}, got {args.samples}")
    if args.seed < 0:
        raise InputError(f"--seed must not be negative, got {args.seed}")
    pred = load_mesh(args.pred, label=args.pred)
    gt = load_mesh(args.gt, label=args.gt)
    report = mesh_metrics(pred, gt, samples=args.samples, thresholds=FSCORE_THRESHOLDS, seed=args.seed)
    print(json.dumps(report))
    return report
