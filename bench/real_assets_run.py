#!/usr/bin/env python
"""The worker end to end on every file of ../shared/assets/real: `preprocess` once, then `train` for each stage.

What the preprocess and train issues ask to see working: a zip of all the real assets becomes a dataset zip, that
zip is accepted again by `preprocess` (passed through unchanged), and `train` makes an adapter per stage from it.
Each command runs as its own process, one after another (so each has the whole machine); per command it prints the
wall time, peak RSS, and for training the seconds per step and the fixed-noise flow loss, base against adapted, on
the training objects (as the adapter record says it and as recomputed from the saved adapter file,
`evaluate_adapter`) and on the objects held out of training.

    PY=$(bin/venv-path)/bin/python
    $PY bench/real_assets_run.py                                   # tiny base, 512, renders 128², 100 steps
    $PY bench/real_assets_run.py --steps 1000 --base microsoft/TRELLIS.2-4B --render-size 1024   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "batch-containers" / "worker" / "src"))
REAL = REPO.parent / "shared" / "assets" / "real"
WORKER = REPO / "bin" / "trellis2-worker"
STAGES = ("sparse_structure", "geometry", "texture")


def timed(cmd: list[str], log: Path) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS GiB) of one worker command, its output kept in `log`."""
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="tiny")
    ap.add_argument("--resolution", type=int, default=512, choices=(512, 1024))
    ap.add_argument("--render-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--out", default=None, help="keep everything here (default: a temporary folder)")
    args = ap.parse_args()

    from functools import cache

    from trellis2_worker.models import load_base
    from trellis2_worker.train import evaluate_adapter

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # DINOv3's weight-loading bar would break the table
    base = cache(lambda: load_base(args.base))
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="real-assets-run-"))
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "real.zip"
    with zipfile.ZipFile(raw, "w") as zf:
        for p in sorted(REAL.rglob("*")):
            if p.is_file() and p.name != "SOURCES.md":
                zf.write(p, p.relative_to(REAL).as_posix())
    common = ["--resolution", str(args.resolution), "--base", args.base]
    dataset = out / "dataset.zip"
    print(f"{out}: {len(zipfile.ZipFile(raw).namelist())} files of {REAL}; base {args.base}, {args.resolution}, "
          f"cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}")

    code, wall, rss = timed([str(WORKER), "preprocess", "--input", str(raw), "--output", str(dataset),
                             "--report", str(out / "preprocess.json"), "--render-size", str(args.render_size),
                             "--cache-dir", str(out / "cache"), *common], out / "preprocess.log")
    rep = json.loads((out / "preprocess.json").read_text())
    if code != 0:
        print(f"preprocess failed (exit {code}): {rep.get('error')}")
        return 1
    print(f"preprocess: {rep['objects_found']} found, {rep['objects_succeeded']} succeeded, {rep['objects_failed']} "
          f"failed; {wall:.0f} s wall, peak RSS {rss:.2f} GiB (the largest of it and its Blender children)")
    # every file of the archive with its outcome: objects (kept, with their quality flags, or failed with the
    # reason) and the other files (companions, unsupported or no extension)
    for o in rep["objects"]:
        print(f"  kept:   {o['file']}: {', '.join(o.get('flags', [])) or 'no flags'}")
    for f in rep["failed"]:
        print(f"  failed: {f['file']}: {f['reason']}")
    for f in rep.get("other_files", []):
        print(f"  other:  {f['file']}: {f['outcome']}")

    again = out / "dataset-again.zip"
    code, wall, _ = timed([str(WORKER), "preprocess", "--input", str(dataset), "--output", str(again),
                           "--report", str(out / "preprocess-again.json"), *common], out / "preprocess-again.log")
    same = code == 0 and again.read_bytes() == dataset.read_bytes()
    print(f"preprocess given its own output: exit {code}, {wall:.1f} s, output identical: {same}")

    print(f"\n{'stage':18s} {'wall s':>7s} {'s/step':>7s} {'peak RSS':>9s} {'trained base':>13s} {'adapted':>8s} "
          f"{'from file':>9s} {'held-out base':>14s} {'adapted':>8s}")
    failures = 0 if same else 1
    for stage in args.stages:
        adapter = out / "adapters" / f"{stage}.safetensors"
        adapter.parent.mkdir(exist_ok=True)
        report = out / f"train-{stage}.json"
        code, wall, rss = timed([str(WORKER), "train", "--dataset", str(dataset), "--denoiser", stage,
                                 "--rank", str(args.rank), "--learning-rate", str(args.learning_rate),
                                 "--training-steps", str(args.steps), "--output", str(adapter), "--report",
                                 str(report), "--no-progress", *common], out / f"train-{stage}.log")
        r = json.loads(report.read_text())
        if code != 0:
            failures += 1
            print(f"{stage:18s} failed (exit {code}): {r.get('error')}")
            continue
        log = [json.loads(line) for line in (out / "adapters" / f"{stage}.loss.jsonl").read_text().splitlines()]
        per_step = (log[-1]["seconds"] - log[0]["seconds"]) / max(1, len(log) - 1)
        m = r["metrics"]
        fit = m["train_objects_flow_loss"]
        held = m.get("held_out", {}).get("flow_loss", {"base": float("nan"), "adapted": float("nan")})
        again = evaluate_adapter(adapter, dataset, base(), eval_objects=fit["objects"])
        print(f"{stage:18s} {wall:7.0f} {per_step:7.2f} {rss:6.2f} GiB {fit['base']:13.3f} {fit['adapted']:8.3f} "
              f"{again['train_objects_flow_loss']['adapted']:9.3f} {held['base']:14.3f} {held['adapted']:8.3f}")
    print(f"\nadapters, records, loss logs and curves: {out / 'adapters'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
