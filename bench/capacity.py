#!/usr/bin/env python3
"""Wall time and spot cost of a whole run (preprocess, then the three stages' training) for 100 / 1,000 / 10,000
objects, from measured per-object and per-step costs, beside the hosted service's price per object.

Figures come from, in this order: flags; the JSON the other benches write (`bench/preprocess_bench.py --json FILE`:
its preprocess reports; `bench/train_bench.py`'s stdout saved to a file: one JSON row per stage); else the project's
own measurements, labelled as such in the output: an idle 2-core CPU VM with the tiny base at 512 and 128² renders
(batch-containers/worker/src/trellis2_worker/latents/README.md: 11.33 s per object, mean of 24 real assets;
train/README.md: 1.13 / 2.33 / 2.23 s per step for sparse_structure / geometry / texture, 8 objects a step). No GPU
figure has been measured by this project yet: for a GPU type, pass its own figures (run the two benches there) and
its spot price.

Model: the objects are split evenly over `--shards` preprocess jobs, each on one instance (its wall time: its share
of objects times the per-object cost, plus `--startup-s`); training then runs each stage's steps on one instance
(data-parallel over its GPUs when it has several: measure `--per-step-s` on that instance), the stages one after
another. Cost = instance-hours × `--usd-per-hour` (the spot price of the instance type, which the script cannot
know: pass it, from the Spot price history of your region).

  python bench/capacity.py --shards 10 --gpu "g6e.xlarge (L40S)" --usd-per-hour 0.95 \\
      --preprocess-json pre.json --train-json train_rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HOSTED_USD_PER_OBJECT = 0.10023  # the hosted service's price per object, the comparison this script is for
STAGES = ("sparse_structure", "geometry", "texture")
MEASURED_CPU = {
    "label": "measured: idle 2-core CPU VM, tiny base, 512, renders 128² (latents/README.md, train/README.md)",
    "per_object_s": 11.33,
    "per_step_s": {"sparse_structure": 1.13, "geometry": 2.33, "texture": 2.23},
}
SIZES = (100, 1_000, 10_000)


def per_object_from_reports(path: Path) -> float:
    """Mean seconds per object over preprocess reports (Blender pass + O-Voxel + encoders, as preprocess_bench)."""
    reports = json.loads(path.read_text())
    reports = reports if isinstance(reports, list) else [reports]
    per = [(o.get("blender_s") or 0.0) + sum(o.get("seconds", {}).values())
           for r in reports for o in r.get("objects", []) if not o.get("from_cache")]
    if not per:
        sys.exit(f"capacity: {path}: no freshly preprocessed object in these reports")
    return sum(per) / len(per)


def per_step_from_rows(path: Path) -> dict[str, float]:
    """Seconds per step by stage from train_bench's JSON rows (lines of JSON, or `RESULT {...}` lines)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip().removeprefix("RESULT ").strip()
        if line.startswith("{"):
            row = json.loads(line)
            if "stage" in row and "seconds_per_step" in row:
                out[row["stage"]] = float(row["seconds_per_step"])
    if not out:
        sys.exit(f"capacity: {path}: no train_bench row (stage, seconds_per_step)")
    return out


def estimate(n: int, shards: int, per_object_s: float, per_step_s: dict, steps: int, startup_s: float,
             usd_per_hour: float | None) -> dict:
    used = min(shards, n)
    prep_wall = math.ceil(n / used) * per_object_s + startup_s
    prep_hours = (n * per_object_s + used * startup_s) / 3600
    train_s = sum(per_step_s[s] * steps + startup_s for s in STAGES)
    hours = prep_hours + train_s / 3600
    row = {"objects": n, "shards": used, "preprocess_wall_s": prep_wall, "train_wall_s": train_s,
           "wall_s": prep_wall + train_s, "instance_hours": hours, "hosted_usd": n * HOSTED_USD_PER_OBJECT}
    if usd_per_hour is not None:
        row["spot_usd"] = hours * usd_per_hour
        row["spot_usd_per_object"] = row["spot_usd"] / n
    return row


def _hms(s: float) -> str:
    h, rem = divmod(int(round(s)), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=1, help="preprocess jobs the objects are split over")
    ap.add_argument("--gpu", default=None, help="instance / GPU type the figures are for (a label in the output)")
    ap.add_argument("--usd-per-hour", type=float, default=None, help="spot price of one such instance")
    ap.add_argument("--per-object-s", type=float, default=None, help="preprocess seconds per object")
    ap.add_argument("--per-step-s", type=float, nargs=3, metavar=("SS", "GEOMETRY", "TEXTURE"), default=None,
                    help="training seconds per step of each stage on that instance")
    ap.add_argument("--preprocess-json", type=Path, help="bench/preprocess_bench.py --json output")
    ap.add_argument("--train-json", type=Path, help="bench/train_bench.py's stdout (its JSON rows)")
    ap.add_argument("--steps", type=int, default=1000, help="training steps per stage (the worker's default)")
    ap.add_argument("--startup-s", type=float, default=0.0,
                    help="per job: instance start, image pull, model load (not measured here; 0 by default)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    if args.shards < 1 or args.steps < 1:
        ap.error("--shards and --steps must be at least 1")

    sources = []
    per_object = args.per_object_s
    if per_object is None and args.preprocess_json:
        per_object = per_object_from_reports(args.preprocess_json)
        sources.append(str(args.preprocess_json))
    elif per_object is not None:
        sources.append("--per-object-s")
    per_step = dict(zip(STAGES, args.per_step_s)) if args.per_step_s else None
    if per_step is None and args.train_json:
        per_step = per_step_from_rows(args.train_json)
        sources.append(str(args.train_json))
    elif per_step is not None:
        sources.append("--per-step-s")
    defaulted = per_object is None or per_step is None or any(s not in per_step for s in STAGES)
    if defaulted:
        per_object = MEASURED_CPU["per_object_s"] if per_object is None else per_object
        per_step = {**MEASURED_CPU["per_step_s"], **(per_step or {})}
        sources.append(f"defaults {MEASURED_CPU['label']}")

    rows = [estimate(n, args.shards, per_object, per_step, args.steps, args.startup_s, args.usd_per_hour)
            for n in SIZES]
    if args.json:
        print(json.dumps({"gpu": args.gpu, "figures": sources, "per_object_s": per_object, "per_step_s": per_step,
                          "rows": rows}, indent=2))
        return 0
    print(f"instance: {args.gpu or '(not named)'}; figures: {'; '.join(sources)}")
    print(f"per object {per_object:.2f} s; per step " + ", ".join(f"{s} {per_step[s]:.2f} s" for s in STAGES)
          + f"; {args.steps} steps per stage; startup {args.startup_s:.0f} s per job")
    head = f"{'objects':>8} {'shards':>6} {'preprocess':>11} {'train':>9} {'wall':>9} {'inst-h':>8}"
    head += f" {'spot $':>9} {'$/object':>9}" if args.usd_per_hour is not None else ""
    print(head + f" {'hosted $':>10}")
    for r in rows:
        line = (f"{r['objects']:>8,} {r['shards']:>6} {_hms(r['preprocess_wall_s']):>11} {_hms(r['train_wall_s']):>9} "
                f"{_hms(r['wall_s']):>9} {r['instance_hours']:>8.2f}")
        if args.usd_per_hour is not None:
            line += f" {r['spot_usd']:>9.2f} {r['spot_usd_per_object']:>9.4f}"
        print(line + f" {r['hosted_usd']:>10.2f}")
    if args.usd_per_hour is None:
        print("spot cost: pass --usd-per-hour (the instance's spot price) to compare with the hosted "
              f"${HOSTED_USD_PER_OBJECT} per object")
    return 0


if __name__ == "__main__":
    sys.exit(main())
