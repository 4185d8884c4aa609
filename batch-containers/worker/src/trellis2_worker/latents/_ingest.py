"""The ingest half of `preprocess`, with a per-object cache of the Blender results so that a rerun skips them.

`trellis2_worker.ingest.ingest` runs every asset of its input; to resume after a crash without redoing finished
Blender passes, the input is discovered here first (the ingest package's own `discover`, so the sha256 keys agree),
assets already in the cache are left out, and the rest are ingested in small batches, each batch from a hard-linked
copy of the input tree that holds only that batch's 3D files (side files such as .bin/.mtl/textures are all kept).
Each finished batch is moved into the cache at once, so a crash loses at most one batch. One progress counter runs
over all batches, object by object.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from trellis2_worker.errors import InputError
from trellis2_worker.dataset import layout


class IngestCache:
    """`root/<render_size>/<sha256>/{dump/, renders/, row.json, done.json}` for objects whose Blender pass succeeded
    and that passed the quality checks (an entry from before those checks has no `quality_flags` and is redone)."""

    def __init__(self, root: Path, render_size: int):
        self.dir = Path(root) / "ingest" / str(render_size)

    def obj(self, sha: str) -> Path:
        return self.dir / sha

    def has(self, sha: str) -> bool:
        d = self.obj(sha)
        if not ((d / "done.json").is_file() and (d / "dump" / "mesh.npz").is_file()
                and (d / "renders" / layout.TRANSFORMS_FILE).is_file()):
            return False
        try:
            return "quality_flags" in self.row(sha)
        except (OSError, ValueError):
            return False

    def row(self, sha: str) -> dict:
        return json.loads((self.obj(sha) / "row.json").read_text())

    def done(self, sha: str) -> dict:
        """{seconds, warnings, quality} of the object's Blender pass and checks (warnings, quality when any)."""
        return json.loads((self.obj(sha) / "done.json").read_text())

    def seconds(self, sha: str) -> float | None:
        return self.done(sha).get("seconds")

    def put(self, sha: str, dump_dir: Path, render_dir: Path, row: dict, seconds, entry: dict | None = None) -> None:
        d = self.obj(sha)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        shutil.move(str(dump_dir), d / "dump")
        shutil.move(str(render_dir), d / "renders")
        (d / "row.json").write_text(json.dumps(row))
        notes = {k: (entry or {})[k] for k in ("warnings", "quality") if (entry or {}).get(k)}
        (d / "done.json").write_text(json.dumps({"seconds": seconds, **notes}))  # last: marks it complete


def _resolve(local: Path, work: Path) -> tuple[Path, list[str] | None]:
    from trellis2_worker.ingest import SUPPORTED_FORMATS, extract_zip
    from trellis2_worker.ingest.discovery import file_format

    if local.is_dir():
        return local, None
    if local.suffix.lower() == ".zip" or zipfile.is_zipfile(local):
        root = work / "extracted"
        return root, extract_zip(local, root)
    if file_format(local.name):
        return local.parent, [local.name]
    raise InputError(f"input is neither a zip archive, a directory nor a 3D file ({', '.join(SUPPORTED_FORMATS)})")


def _link_tree(root: Path, files: list[str], keep, dest: Path) -> None:
    for rel in files:
        if not keep(rel):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(root / rel, target)
        except OSError:
            shutil.copyfile(root / rel, target)


def _filtered_manifest(root: Path, wanted: set[str], dest: Path) -> None:
    from trellis2_worker.ingest.discovery import MANIFEST

    path = root / MANIFEST
    if not path.is_file():
        return
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=reader.fieldnames or ["file"])
    writer.writeheader()
    for row in reader:
        name = (row.get("file") or "").strip().replace("\\", "/")
        while name.startswith("./"):
            name = name[2:]
        if name in wanted or name.lower() in {w.lower() for w in wanted}:
            writer.writerow(row)
    (dest / MANIFEST).write_text(out.getvalue())


def run(local: Path, work: Path, cache: IngestCache, *, render_size: int, workers: int, batch_size: int = 0,
        only: dict[str, str] | None = None) -> dict:
    """Ingest every asset not yet cached; returns {found, objects: {sha: row}, failed, seconds: {sha: s},
    notes: {sha: {warnings, quality}}, other_files, ...}.
    `only` ({file: sha256}, a shard of a plan: plan.py): those objects alone; the archive's other 3D files are
    never hashed."""
    from trellis2_worker.ingest import discover
    from trellis2_worker.ingest.discovery import file_format, list_files

    work.mkdir(parents=True, exist_ok=True)
    root, files = _resolve(local, work)
    if files is None:
        files, _ = list_files(root)
    if only is not None:
        absent = sorted(set(only) - set(files))
        if absent:
            raise InputError(f"--objects-from: {len(absent)} planned object(s) are not in the input, e.g. {absent[0]}")
        files = [f for f in files if file_format(f) is None or f in only]
    found = discover(root, files)
    if not found.assets:
        raise InputError("no supported 3D object in the input")
    if only is not None:
        for a in found.assets:
            planned = only.get(a.local_path)  # a plan from the zip's directory alone names no sha256
            if planned is not None and planned != a.sha256:
                raise InputError(f"--objects-from: {a.local_path} is not the object the plan names (other bytes)")
    todo = [a for a in found.assets if not cache.has(a.sha256)]
    batch_size = batch_size or max(4, 4 * max(1, workers))
    failed: list[dict] = []
    sandbox: set[str] = set()  # the protections this run's Blender passes had (ingest_report.json's "sandbox")
    print(f"preprocess: {len(found.assets)} object(s) found, {len(found.assets) - len(todo)} already ingested "
          f"(cache), {len(todo)} to ingest with Blender", file=sys.stderr, flush=True)
    from trellis2_worker.progress import counter

    # One counter over every batch, moved as each object finishes (each batch's own ingest() counter is off: it
    # would restart at 1 every batch).
    bar = counter(len(todo), "ingest (Blender)", "object", bool(todo))
    try:
        _run_batches(root, files, todo, batch_size, work, cache, failed, sandbox, bar, render_size, workers)
    finally:
        bar.close()

    from trellis2_worker.ingest.discovery import other_files

    objects, seconds, notes = {}, {}, {}
    for a in found.assets:
        if not cache.has(a.sha256):
            continue
        row = cache.row(a.sha256)
        # the cached row may come from another archive holding the same file: paths and manifest columns are this one's
        row.update({"local_path": a.local_path, "file_identifier": a.local_path, **a.extra})
        objects[a.sha256] = row
        done = cache.done(a.sha256)
        seconds[a.sha256] = done.get("seconds")
        notes[a.sha256] = {k: done[k] for k in ("warnings", "quality") if done.get(k)}
    return {
        "found": len(found.assets),
        "objects": objects,
        "failed": failed,
        "seconds": seconds,
        "notes": notes,
        "other_files": other_files(found.files, found, root),
        "cached": len(found.assets) - len(todo),
        "duplicates": sum(len(a.duplicates) for a in found.assets),
        "sandbox": sorted(sandbox),
    }


def _run_batches(root, files, todo, batch_size, work, cache, failed, sandbox, bar, render_size, workers) -> None:
    from trellis2_worker.ingest import ingest
    from trellis2_worker.ingest.discovery import MANIFEST, file_format

    for b in range(0, len(todo), batch_size):
        batch = todo[b : b + batch_size]
        wanted = {p for a in batch for p in [a.local_path, *a.duplicates]}
        bdir = work / f"batch-{b // batch_size}"
        src, out = bdir / "input", bdir / "out"
        _link_tree(root, files, lambda rel: rel != MANIFEST and (file_format(rel) is None or rel in wanted), src)
        _filtered_manifest(root, wanted, src)
        def finished(asset, result) -> None:
            if not result.get("ok"):
                bar.write(f"ingest: {asset.local_path}: FAILED: {result.get('reason')}", file=sys.stderr)
            bar.update(1)

        try:
            report = ingest(str(src), out, render_size=render_size, workers=workers, progress=False,
                            on_result=finished)
        except InputError:
            # a batch where nothing survived still wrote its report; anything else is the input's fault as a whole
            if not (out / "ingest_report.json").is_file():
                raise
            report = json.loads((out / "ingest_report.json").read_text())
        with open(out / "metadata.csv", newline="") as f:
            rows = {r["sha256"]: r for r in csv.DictReader(f)}
        sandbox.update(report.get("sandbox", []))
        for obj in report.get("objects", []):
            sha = obj["sha256"]
            if obj.get("status") == "succeeded" and sha in rows:
                cache.put(sha, out / "dumps" / sha, out / layout.RENDERS_DIR / sha, rows[sha], obj.get("seconds"),
                          obj)
            else:
                entry = {"file": obj.get("file"), "reason": obj.get("reason", "ingest failed")}
                if obj.get("warnings"):
                    entry["warnings"] = obj["warnings"]
                failed.append(entry)
        shutil.rmtree(bdir, ignore_errors=True)
        bar.set_postfix(failed=len(failed))
