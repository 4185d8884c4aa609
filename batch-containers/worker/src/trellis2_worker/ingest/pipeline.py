"""The ingest stage: input → safe extraction → discovery → one Blender pass per asset → metadata.csv + report.

Output layout (the contract with the O-Voxel and latent stages):
    DIR/metadata.csv, DIR/ingest_report.json,
    DIR/dumps/<sha256>/{mesh.npz, materials.json, *.png}, DIR/renders_cond/<sha256>/{000..015.png, transforms.json}
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from trellis2_worker import storage
from trellis2_worker.errors import InputError
from trellis2_worker.ingest import quality
from trellis2_worker.ingest.archive import MAX_ARCHIVE_BYTES, MAX_UNCOMPRESSED_BYTES, extract_zip
from trellis2_worker.ingest.discovery import (
    METADATA_COLUMNS, SUPPORTED_FORMATS, Asset, discover, file_format, other_files, preflight,
)
from trellis2_worker.ingest.references import shown
from trellis2_worker.render import NUM_COND_VIEWS, seed_for

DEFAULT_TIMEOUT_S = 1800


def default_memory_mb(workers: int) -> int:
    """Memory cap per Blender process: a fair share of this machine's memory, at least 4 GB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        total = 16384
    return max(4096, int(total * 0.8 / max(1, workers)))


def _resolve_input(uri: str, workdir: Path, max_archive_bytes: int, max_uncompressed_bytes: int):
    """(root directory, files under it or None to walk it, whether the input is one 3D file)."""
    local = storage.open_input(uri, workdir / "download", max_bytes=max_archive_bytes)
    if local.is_dir():
        return local, None, False
    if local.suffix.lower() == ".zip" or zipfile.is_zipfile(local):
        root = workdir / "extracted"
        files = extract_zip(local, root, max_archive_bytes, max_uncompressed_bytes)
        return root, files, False
    if file_format(local.name):
        return local.parent, [local.name], True  # its folder's other files are only its resources
    raise InputError(f"input is neither a zip archive, a directory nor a 3D file ({', '.join(SUPPORTED_FORMATS)}): "
                     f"{uri}")


# What running into the cap looks like in the log (thread stacks count too: EAGAIN from std::thread).
_OOM_MARKS = ("bad_alloc", "MemoryError", "Cannot allocate", "cannot map", "failed to map", "out of memory",
              "Resource temporarily unavailable")


# Lines of Blender's log that say a texture or image could not be read, e.g. glTF's "ERROR: Missing image file
# (index 0): /x/a.png", Blender's "Error: Cannot read image ...", "Image ... not found".
_MISSING_IMAGE_LINE = re.compile(
    r"(missing image|image.*(not found|cannot|could not|couldn't|failed|unable)|"
    r"(cannot|could not|couldn't|failed to|unable to) (read|load|open|find).*(image|texture)|texture.*not found)",
    re.IGNORECASE)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s'\"]+")
_LOG_TIME = re.compile(r"^\d\d:\d\d:\d\d \| ")
MAX_LOG_WARNINGS = 10  # per object: a file can name thousands of images


def blender_warnings(log_text: str, root: Path) -> list[str]:
    """Blender's own lines about images and textures it could not read, for the object's report entry: in order,
    each once, at most MAX_LOG_WARNINGS, with the archive's folder cut from paths (any other absolute path shown by
    its file name only), printable and bounded."""
    prefix = os.path.abspath(root).rstrip("/") + "/"
    seen: list[str] = []
    for line in log_text.splitlines():
        if not _MISSING_IMAGE_LINE.search(line):
            continue
        line = _LOG_TIME.sub("", line.strip()).replace(prefix, "")
        line = _ABSOLUTE_PATH.sub(lambda m: os.path.basename(m.group(0)) or "/", line)
        line = shown(line)
        if line not in seen:
            seen.append(line)
            if len(seen) == MAX_LOG_WARNINGS:
                break
    return seen


# Environment variables the Blender pass never needs and must not be able to hand on (cloud credentials, keys).
_SECRET_ENV_PREFIXES = ("AWS_", "ECS_")
_SECRET_ENV_WORDS = ("SECRET", "TOKEN", "PASSWORD", "CREDENTIAL", "_KEY")


def _pass_env(work: Path, gpu_cache: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(_SECRET_ENV_PREFIXES) and not any(w in k.upper() for w in _SECRET_ENV_WORDS)}
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # Blender's temporary files and user folders go to the pass's own work folder, the one place it may write.
    env["HOME"] = env["TMPDIR"] = env["XDG_CACHE_HOME"] = str(work)
    if gpu_cache is not None:  # the GPU driver's compiled-kernel caches, shared by this run's passes
        env["CUDA_CACHE_PATH"], env["OPTIX_CACHE_PATH"] = str(gpu_cache / "cuda"), str(gpu_cache / "optix")
    return env


def run_blender_pass(asset: Asset, dump_dir: Path, render_dir: Path | None, *, render_size: int,
                     render_samples: int, threads: int, timeout_s: float, memory_mb: int, log_path: Path,
                     views: int = NUM_COND_VIEWS, denoise: str = "accurate", root: Path | None = None) -> dict:
    """Runs the Blender pass for one asset in a child process, sandboxed (sandbox.py): it reads the asset's folder
    `root` (default: the asset's own folder), writes only its dump and render folders and a work folder, and has no
    network. Returns its result dict (ok or reason), with the protections it had under "sandbox"."""
    root = Path(os.path.abspath(root if root is not None else asset.path.parent))
    work = log_path.with_suffix("")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result_path = work / "result.json"
    writable = [dump_dir] + ([render_dir] if render_dir is not None else [])
    gpu_cache = log_path.parent / "gpu-cache"
    for d in [*writable, gpu_cache]:
        Path(d).mkdir(parents=True, exist_ok=True)
    # The launcher by its file, not `-m`: importing this package first would cost it most of a second.
    cmd = [sys.executable, str(Path(__file__).with_name("sandbox.py")), "--read", str(root)]
    for d in [*writable, work, gpu_cache]:
        cmd += ["--write", str(Path(d).resolve())]
    cmd += [
        "--", sys.executable, "-m", "trellis2_worker.ingest.blender_pass",
        "--input", os.path.abspath(asset.path), "--format", asset.format, "--root", str(root),
        "--dump-dir", str(Path(dump_dir).resolve()),
        "--render-size", str(render_size), "--render-samples", str(render_samples), "--views", str(views),
        "--denoise", denoise,
        "--seed", str(seed_for(asset.sha256)), "--threads", str(threads), "--memory-mb", str(memory_mb),
        "--result", str(result_path),
    ]
    if render_dir is not None:
        cmd += ["--render-dir", str(Path(render_dir).resolve())]
    env = _pass_env(work, gpu_cache)
    started = time.time()
    with open(log_path, "wb") as log:
        # Its working folder is the archive's: Blender's OBJ importer tries a texture path relative to it.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=root, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: Blender and anything it started
            proc.wait()
            return {"ok": False, "reason": f"timeout: the Blender pass took more than {timeout_s:.0f} s"}
    seconds = time.time() - started
    log_text = log_path.read_text(errors="replace")
    result = _outcome(result_path, log_text, code, memory_mb)
    result["seconds"] = round(seconds, 3)
    said = [w for w in blender_warnings(log_text, root) if w not in result.get("warnings", [])]
    if said:
        result["warnings"] = [*result.get("warnings", []), *(f"Blender: {w}" for w in said)]
    if "sandbox" not in result:  # it never got to say: the launcher's own line in the log
        lines = [ln for ln in log_text.splitlines() if ln.startswith("sandbox: ")]
        result["sandbox"] = lines[0].removeprefix("sandbox: ") if lines else "not started"
    return result


def _outcome(result_path: Path, log_text: str, code: int, memory_mb: int) -> dict:
    if result_path.is_file():
        return json.loads(result_path.read_text())
    if code < 0:
        sig = signal.Signals(-code).name
        if any(s in log_text for s in _OOM_MARKS):
            return {"ok": False, "reason": f"out of memory (cap {memory_mb} MB): Blender crashed with {sig}"}
        hint = f" (likely out of memory, cap {memory_mb} MB)" if -code == signal.SIGKILL else ""
        return {"ok": False, "reason": f"Blender crashed with {sig}{hint}"}
    # Not its log's last line: importers print lines of the files they read, and a reason never echoes file bytes.
    return {"ok": False, "reason": f"Blender exited with code {code} before writing its result"}


class _Progress:
    def __init__(self, total: int, workers: int, stream=sys.stderr):
        self.total, self.workers, self.stream = total, max(1, workers), stream
        self.done, self.started = 0, time.time()
        self.lock = threading.Lock()

    def update(self, asset: Asset, result: dict) -> None:
        with self.lock:
            self.done += 1
            elapsed = time.time() - self.started
            eta = elapsed / self.done * (self.total - self.done)
            status = "ok" if result.get("ok") else f"FAILED: {result.get('reason')}"
            print(f"[{self.done}/{self.total}] {asset.local_path}: {status} "
                  f"({result.get('seconds', 0):.1f} s; elapsed {elapsed:.0f} s, ETA {eta:.0f} s)",
                  file=self.stream, flush=True)


def ingest(input_uri: str, out_dir: str | os.PathLike, render_size: int = 1024, render_samples: int = 32,
           workers: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int | None = None,
           render: bool = True, max_archive_bytes: int = MAX_ARCHIVE_BYTES,
           max_uncompressed_bytes: int = MAX_UNCOMPRESSED_BYTES, progress: bool = True,
           denoise: str = "accurate", on_result=None) -> dict:
    """Runs the ingest stage; returns the report (also written to DIR/ingest_report.json).

    Per-asset failures are recorded and never stop the run. Raises InputError (exit 2) when the input itself is
    unusable or when no asset survives (the report is written first). `on_result(asset, result)` is called as each
    object finishes (a caller's own progress counter; `progress` prints this run's)."""
    if render_size < 8 or render_samples < 1:
        raise InputError("--render-size must be at least 8 and --render-samples at least 1")
    if denoise not in ("accurate", "fast", "off"):
        raise InputError(f"--denoise must be accurate, fast or off, not {denoise!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, int(workers))
    memory_mb = memory_mb or default_memory_mb(workers)
    threads = max(1, (os.cpu_count() or 1) // workers)
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix=".ingest-work-", dir=out))
    try:
        root, files, single_file = _resolve_input(str(input_uri), workdir, max_archive_bytes,
                                                  max_uncompressed_bytes)
        found = discover(root, files, use_manifest=not single_file)
        if not found.assets:
            detail = ""
            if found.manifest_missing:
                detail = f"; manifest.csv names {len(found.manifest_missing)} missing file(s)"
            raise InputError(f"no supported 3D object ({', '.join(SUPPORTED_FORMATS)}) in the input{detail}")
        (out / "dumps").mkdir(exist_ok=True)
        (out / "renders_cond").mkdir(exist_ok=True)
        logs = workdir / "logs"
        logs.mkdir()
        bar = _Progress(len(found.assets), workers) if progress else None

        def work(asset: Asset) -> dict:
            t0 = time.time()
            reason = preflight(asset, root)
            if reason:
                result = {"ok": False, "reason": reason, "seconds": round(time.time() - t0, 3)}
            else:
                dump_dir = out / "dumps" / asset.sha256
                render_dir = out / "renders_cond" / asset.sha256 if render else None
                for d in (dump_dir, render_dir):
                    if d is not None and d.exists():
                        shutil.rmtree(d)  # never mix a previous run's files with this one's
                result = run_blender_pass(
                    asset, dump_dir, render_dir, render_size=render_size, render_samples=render_samples,
                    threads=threads, timeout_s=timeout_s, memory_mb=memory_mb,
                    log_path=logs / f"{asset.sha256}.log", denoise=denoise, root=root,
                )
                if result.get("ok"):
                    _assess(result, dump_dir, render_dir)
                if not result.get("ok"):
                    for d in (dump_dir, render_dir):
                        if d is not None:
                            shutil.rmtree(d, ignore_errors=True)
            if bar:
                bar.update(asset, result)
            if on_result is not None:
                on_result(asset, result)
            return result

        results: dict[str, dict] = {}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(work, a): a for a in found.assets}
            for fut in as_completed(futures):
                results[futures[fut].sha256] = fut.result()

        report = _write_outputs(out, str(input_uri), found, results, render, render_size, render_samples,
                                denoise, time.time() - started, root)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if progress:
        for line in summary_lines(report["flagged"]):
            print(line, file=sys.stderr, flush=True)
    if report["succeeded"] == 0:
        reasons = "; ".join(f"{f['file']}: {f['reason']}" for f in report["failed"][:3])
        raise InputError(f"none of the {report['objects_found']} objects could be ingested ({reasons})")
    return report


def _assess(result: dict, dump_dir: Path, render_dir: Path | None) -> None:
    """The data-quality checks (quality.py) on a successful pass: a refusal turns it into a failure with the
    reason; otherwise the measured values and flags join the result."""
    try:
        reason, row = quality.assess(dump_dir, render_dir, result.get("images_missing", 0))
    except (OSError, ValueError, KeyError) as exc:  # a dump or render the pass wrote but that cannot be read back
        reason, row = f"the Blender pass's output cannot be read back: {type(exc).__name__}", {}
    if reason:
        result.update(ok=False, reason=f"refused: {reason}")
    else:
        result["quality"] = row


def quality_entry(row: dict, missing_names: list[str]) -> dict:
    """A report entry's view of the quality checks: the measured values and the flags as a list."""
    if not row:
        return {}
    measured = {k: row[k] for k in quality.COLUMNS if k != "quality_flags" and row.get(k) not in ("", None)}
    if missing_names:
        measured["images_missing_names"] = missing_names
    return {"quality": measured, "flags": quality.flags_in(row)}


def summary_lines(flagged: list[dict]) -> list[str]:
    """The end-of-run lines for the objects kept but flagged, one per object with what each flag means."""
    return [f"flagged: {f['file']}: " + "; ".join(f"{flag} ({quality.FLAGS.get(flag, '')})" for flag in f["flags"])
            for f in flagged]


def _write_outputs(out: Path, input_uri: str, found, results: dict, render: bool, render_size: int,
                   render_samples: int, denoise: str, seconds: float, root: Path) -> dict:
    rows, objects, failed = [], [], []
    for asset in found.assets:
        res = results[asset.sha256]
        ok = bool(res.get("ok"))
        row = {
            "sha256": asset.sha256, "file_identifier": asset.local_path, "local_path": asset.local_path,
            "format": asset.format, "size": asset.size,
            "mesh_dumped": ok, "pbr_dumped": ok, "cond_rendered": ok and render,
            "ingest_error": "" if ok else res.get("reason", ""),
        }
        for key in ("num_faces", "num_vertices", "num_materials", "num_basecolor_tex", "num_metallic_tex",
                    "num_roughness_tex", "num_alpha_tex"):
            row[key] = res.get(key, "") if ok else ""
        row.update(res.get("quality", {}) if ok else {})
        row.update(asset.extra)
        rows.append(row)
        entry = {"file": asset.local_path, "sha256": asset.sha256, "format": asset.format, "size": asset.size,
                 "status": "succeeded" if ok else "failed", "seconds": res.get("seconds")}
        if res.get("sandbox"):
            entry["sandbox"] = res["sandbox"]  # which protections its Blender pass ran under
        if ok:
            entry.update({k: res[k] for k in ("num_vertices", "num_faces", "num_materials", "num_basecolor_tex",
                                                "num_metallic_tex", "num_roughness_tex", "num_alpha_tex")})
            entry.update(quality_entry(res.get("quality", {}), res.get("images_missing_names", [])))
        else:
            entry["reason"] = res.get("reason", "unknown error")
            failed.append({"file": asset.local_path, "reason": entry["reason"]})
        if res.get("warnings"):
            entry["warnings"] = res["warnings"]
        if asset.duplicates:
            entry["duplicates"] = asset.duplicates
        objects.append(entry)
    with open(out / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METADATA_COLUMNS + found.extra_columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    report = {
        "input": input_uri,
        "objects_found": len(found.assets),
        "succeeded": sum(o["status"] == "succeeded" for o in objects),
        "failed": failed,
        # kept but of doubtful value (docs/rendering.md#data-quality)
        "flagged": [{"file": o["file"], "flags": o["flags"]} for o in objects if o.get("flags")],
        "objects": objects,
        # every other file of the input and what became of it
        "other_files": other_files(found.files, found, root),
        "duplicates": sum(len(a.duplicates) for a in found.assets),
        "manifest_missing": found.manifest_missing,
        "manifest_unsupported": found.manifest_unsupported,
        "skipped": found.skipped,
        # The protections the Blender passes had (one line each kind; objects refused before Blender have none).
        "sandbox": sorted({o["sandbox"] for o in objects if o.get("sandbox")}),
        "render_size": render_size if render else None,
        "render_samples": render_samples if render else None,
        "views": NUM_COND_VIEWS if render else 0,
        "denoise": denoise if render else None,
        "seconds": round(seconds, 1),
    }
    (out / "ingest_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
