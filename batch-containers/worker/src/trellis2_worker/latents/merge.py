"""`merge`: the shards of one preprocess run (the children of an array job, plan.py) → the run's one dataset and report.

Each shard left a report and, when any of its objects survived, a dataset zip. The merge takes every shard's
dataset as untrusted input (validate_dataset, the dataset limits; the shards must agree with each other and with
the request on everything but their objects, and hold only objects of their own block of the plan), then writes
the dataset a one-shard run writes: the objects in the order that run finds them (their paths, sorted), the members
copied in chunks from the shard zips (no shard is held in memory), metadata.csv's rows carried with every column,
and prepared_dataset.json with the objects joined. The report has every planned object's outcome and each shard's
details and timings. A shard that left no report (it never finished) fails its planned objects, not the run: the
run fails (exit 2) only when no object survives anywhere.
"""

from __future__ import annotations

import datetime
import json
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

from trellis2_worker.dataset import layout, open_dataset, validate_dataset
from trellis2_worker.dataset.writing import info_text, write_metadata_csv, zip_members
from trellis2_worker.errors import InputError, one_line
from trellis2_worker.latents.plan import SHARD_FIELD, base_model_id, block, check_count, load_plan

MAX_SHARD_REPORT_BYTES = 64 << 20  # a report is ~1 KB an object; MAX_OBJECTS of them stay far below
_MAX_REASON = 500  # one failure's reason as carried from a shard report


def _say(text: str) -> None:
    print(f"merge: {text}", file=sys.stderr, flush=True)


def merge(plan_uri: str, count: int, resolution: int, base: str, shard_outputs: str, shard_reports: str,
          output_uri: str, work_dir: str | Path | None = None) -> dict:
    """The `merge` command; returns the run's report (InputError when no object survives or a shard is invalid)."""
    from trellis2_worker import storage

    t_start = time.perf_counter()
    if resolution not in layout.RESOLUTIONS:
        raise InputError(f"resolution must be one of {list(layout.RESOLUTIONS)}, got {resolution}")
    for option, pattern in (("--shard-outputs", shard_outputs), ("--shard-reports", shard_reports)):
        if SHARD_FIELD not in pattern:
            raise InputError(f"{option} must hold {SHARD_FIELD} (each shard's index), got {pattern!r}")
    check_count(count)
    plan = load_plan(plan_uri, "--plan")
    if count > len(plan):
        raise InputError(f"--shard-count {count} is more than the plan's {len(plan)} objects")
    base_id = base_model_id(base)
    own_work = work_dir is None
    work = Path(work_dir or tempfile.mkdtemp(prefix="trellis2-merge-"))
    work.mkdir(parents=True, exist_ok=True)
    opened = []
    try:
        shards, failed, kept = [], [], {}  # kept: sha256 -> (path, shard, object entry, metadata row, dataset)
        for i in range(count):
            mine = block(plan, i, count)
            shard = _read_shard(i, count, mine, shard_reports.replace(SHARD_FIELD, str(i)),
                                shard_outputs.replace(SHARD_FIELD, str(i)), work, resolution, base_id, failed)
            shards.append(shard["summary"])
            ds = shard.get("dataset")
            if ds is None:
                continue
            opened.append(ds)
            for o, row in shard["objects"]:
                path = row["local_path"]
                other = kept.get(o["sha256"])
                if other is not None:  # the same bytes planned twice, in two shards: kept once, as one run does
                    if path >= other[0]:
                        continue
                kept[o["sha256"]] = (path, i, o, row, ds)

        if not kept:
            reasons = "; ".join(f"{f['file']}: {f['reason']}" for f in failed[:3])
            raise InputError(f"no object could be preprocessed in any of the {count} shards ({len(plan)} planned)"
                             + (f": {reasons}" if reasons else ""))
        _check_agree([s for s in shards if "info" in s])
        # A one-shard run finds the objects in sorted path order, one per distinct content (discovery).
        order = sorted(kept.values(), key=lambda k: k[0])
        t = time.perf_counter()
        out_zip = work / "preprocessed.zip"
        info = _write(order, [s for s in shards if "info" in s][0]["info"], work / "staged", out_zip)
        _say(f"uploading the dataset ({out_zip.stat().st_size / 2**20:.1f} MiB)")
        storage.upload_file(out_zip, output_uri)
        write_s = time.perf_counter() - t
    finally:
        for ds in opened:
            ds.close()
        if own_work:
            shutil.rmtree(work, ignore_errors=True)

    per_object = [{**_object_entry(k[2], k[1], k[3], shards[k[1]]["report_objects"]), "shard": k[1]} for k in order]
    kept_files = {o["file"] for o in per_object}
    duplicates = [{"file": path, "of": kept[sha][0]} for sha, path in _all_paths(shards) if path not in kept_files
                  and sha in kept]
    for s in shards:
        s.pop("report_objects", None)
        s.pop("info", None)
    device = {s.get("device") for s in shards if s.get("device")}
    render = {s.get("render_size") for s in shards if s.get("render_size")}
    return {
        "kind": "raw",
        "reused": False,
        "merged": True,
        "resolution": info["resolution"],
        "base_model": info["base_model"],
        "render_size": render.pop() if len(render) == 1 else None,
        "objects_found": len(plan),
        "objects_succeeded": len(per_object),
        "objects_failed": len(failed),
        "failed": failed,
        "duplicates": duplicates,
        "objects": per_object,
        "tokens": {o["sha256"]: {"shape": o["shape_tokens"], "pbr": o["pbr_tokens"]} for o in per_object},
        "shards": shards,
        "timings": {"merge_write_s": round(write_s, 3),
                    "shards_max_s": max((s["seconds"] or 0 for s in shards), default=0)},
        "device": device.pop() if len(device) == 1 else None,
        "output": output_uri,
        "seconds": round(time.perf_counter() - t_start, 3),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _read_shard(i: int, count: int, mine: list[dict], report_uri: str, output_uri: str, work: Path,
                resolution: int, base_id: str, failed: list) -> dict:
    """One shard: its summary for the report, its failures appended to `failed`, and (when any of its objects
    survived) its dataset opened, with its objects and their metadata rows."""
    from trellis2_worker import storage

    planned = {o["file"]: o["sha256"] for o in mine}
    summary = {"index": i, "planned": len(mine), "succeeded": 0, "failed": 0, "seconds": None, "status": None,
               "report_objects": {}}

    def fail_all(status: str, reason: str) -> dict:
        summary.update(status=status, failed=len(mine), error=reason)
        failed.extend({"file": f, "reason": reason, "shard": i} for f in planned)
        return {"summary": summary}

    try:
        report = json.loads(storage.read_bytes(report_uri, max_bytes=MAX_SHARD_REPORT_BYTES))
    except InputError:  # never written: the child did not finish (stopped, out of retries)
        return fail_all("missing", f"shard {i} of {count} did not finish (it left no report)")
    except ValueError:
        return fail_all("missing", f"shard {i} of {count} left a report that is not JSON")
    if not isinstance(report, dict):
        return fail_all("missing", f"shard {i} of {count} left a report that is not a JSON object")
    if "error" in report:
        return fail_all("failed", f"shard {i} of {count} failed: {_text(report['error'])}")
    got = report["shard"].get("shard") if isinstance(report.get("shard"), dict) else None
    if got != f"{i}/{count}":
        raise InputError(f"shard {i}'s report is for shard {_text(got)!s}, not {i}/{count} (wrong --shard-reports?)")
    summary.update(status="ok", seconds=_number(report.get("seconds")), timings=report.get("timings"),
                   created_at=_text(report.get("created_at")), device=_text(report.get("device")),
                   render_size=report.get("render_size"),
                   objects_from_cache=report.get("objects_from_cache"))
    summary["report_objects"] = {o.get("sha256"): o for o in report.get("objects") or [] if isinstance(o, dict)}
    for f in report.get("failed") or []:
        if isinstance(f, dict) and f.get("file") in planned:
            failed.append({"file": f["file"], "reason": _text(f.get("reason")) or "failed", "shard": i})
            summary["failed"] += 1
    done = {f["file"] for f in failed if f.get("shard") == i} | {
        o.get("file") for o in summary["report_objects"].values()}
    # e.g. the same bytes as another of its planned files (one object), or a file the archive's manifest leaves out
    summary["no_outcome"] = [f for f in planned if f not in done]
    if not report.get("objects_succeeded"):
        summary["status"] = "empty"  # every object of the shard failed: it wrote no dataset
        return {"summary": summary}

    try:
        local = storage.open_input(output_uri, work / f"shard-{i}")
    except InputError:
        return fail_all("missing", f"shard {i} of {count} reported objects but left no dataset")
    try:
        validate_dataset(local, resolution, base_id)
    except InputError as exc:
        raise InputError(f"shard {i}'s dataset is refused: {one_line(exc)}") from None
    ds = open_dataset(local)
    try:
        rows = {}
        for r in ds.metadata:
            rows.setdefault(r.get("sha256"), {k: v for k, v in r.items() if k is not None})
        objects = []
        for o in ds.info["objects"]:
            row = rows[o["sha256"]]  # validation made sure every object has its row
            path = row.get("local_path")
            if path not in planned:
                raise InputError(f"shard {i}'s dataset holds object {o['sha256'][:12]} ({_text(path)}), "
                                 "which is not in its block of the plan")
            if planned[path] is not None and planned[path] != o["sha256"]:
                raise InputError(f"shard {i}'s dataset holds {path} with other bytes than the plan names")
            objects.append((o, row))
    except BaseException:
        ds.close()
        raise
    summary.update(succeeded=len(objects), info=ds.info)
    return {"summary": summary, "dataset": ds, "objects": objects}


def _check_agree(shards: list[dict]) -> None:
    """Every shard's prepared_dataset.json but its objects is the same (encoders, checkpoints, precision, version)."""
    first = shards[0]
    want = {k: v for k, v in first["info"].items() if k != "objects"}
    for s in shards[1:]:
        got = {k: v for k, v in s["info"].items() if k != "objects"}
        for key in sorted(set(want) | set(got)):
            if want.get(key) != got.get(key):
                raise InputError(f"shard {s['index']}'s dataset differs from shard {first['index']}'s in "
                                 f"{layout.INFO_FILE} {key!r}: the shards were not made alike")


def _write(order: list, info0: dict, staged: Path, out_zip: Path) -> dict:
    """The merged zip: prepared_dataset.json and metadata.csv made here, every other member streamed from its shard."""
    info = {key: ([k[2] for k in order] if key == "objects" else value) for key, value in info0.items()}
    staged.mkdir(parents=True, exist_ok=True)
    (staged / layout.INFO_FILE).write_text(info_text(info))
    # Each row keeps its shard's columns, in its shard's order: the one-shard run's first-seen column order.
    write_metadata_csv(staged / layout.METADATA_FILE, [k[3] for k in order])
    members = {name: (lambda n=name: open(staged / n, "rb")) for name in (layout.INFO_FILE, layout.METADATA_FILE)}
    res = int(info["resolution"])
    for _, shard_index, o, _, ds in order:
        for name in layout.expected_files({"resolution": res, "objects": [o]}) - set(members):
            members[name] = _streamer(ds, name, shard_index)
    _say(f"writing the dataset ({len(order)} objects, {len(members)} members)")
    zip_members(out_zip, members)
    return info


def _streamer(ds, name: str, shard_index: int):
    def opener():
        return _Checked(ds.source.open(name), name, shard_index)

    return opener


class _Checked:
    """A shard member's stream whose damage (bad CRC, broken deflate) is named as the input's fault."""

    def __init__(self, stream, name: str, shard_index: int):
        self._stream, self._name, self._shard = stream, name, shard_index

    def read(self, n: int = -1) -> bytes:
        try:
            return self._stream.read(n)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise InputError(f"shard {self._shard}'s member {self._name} is corrupt: {one_line(exc)}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._stream.close()


def _object_entry(o: dict, shard_index: int, row: dict, report_objects: dict) -> dict:
    entry = dict(report_objects.get(o["sha256"]) or {})
    entry.update(sha256=o["sha256"], file=row.get("local_path"), shape_tokens=o["shape_tokens"],
                 pbr_tokens=o["pbr_tokens"])
    return entry


def _all_paths(shards: list[dict]):
    for s in shards:
        for sha, o in s.get("report_objects", {}).items():
            if isinstance(o.get("file"), str):
                yield sha, o["file"]


def _text(value) -> str | None:
    return None if value is None else one_line(Exception(str(value)))[:_MAX_REASON]


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
