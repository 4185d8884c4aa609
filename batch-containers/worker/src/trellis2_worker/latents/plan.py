"""A shard of a preprocess run: the objects of shard I of N, taken from a plan file instead of the archive's listing.

The plan is JSON with `objects`: a list of `{"file": <path in the archive>, ...}` in a fixed order. `sha256` (the
object key) is optional: Prepare writes the plan from the zip's central directory, which cannot know it, so a shard
hashes its own objects; when given (a preprocess report's `objects` has that form, so one run's report plans the
next) the object must have it. Other keys (the zip's `crc32`, `size`) are ignored. Shard I of N holds the contiguous
block `objects[I*n//N : (I+1)*n//N]`; the archive's other 3D files are never hashed, read or rendered. Each object's
dataset members are the same bytes in any shard (the renders, latents and rows depend on the object alone), so the
shards' datasets hold exactly the members of a one-shard run, and `merge` puts them back together.

The shard index comes from `--shard I/N`, or with `--shard-count N` from `AWS_BATCH_JOB_ARRAY_INDEX`, which AWS Batch
sets in each child of an array job (the local runner sets it too); `{shard}` in the output URIs becomes the index.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from trellis2_worker.dataset.limits import MAX_OBJECTS
from trellis2_worker.errors import InputError

MAX_PLAN_BYTES = 16 << 20  # ~100 bytes an object: far above MAX_OBJECTS entries
ARRAY_INDEX_ENV = "AWS_BATCH_JOB_ARRAY_INDEX"  # the AWS Batch array-job contract
SHARD_FIELD = "{shard}"  # replaced by the shard index in output URIs (Batch cannot put env vars into a command)
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SHARD = re.compile(r"^(\d{1,6})/(\d{1,6})$")
_INDEX = re.compile(r"^\d{1,6}$")


def parse_shard(text: str) -> tuple[int, int]:
    m = _SHARD.match(text or "")
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise InputError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def check_count(count: int) -> int:
    if not 1 <= count <= MAX_OBJECTS:
        raise InputError(f"--shard-count must be between 1 and {MAX_OBJECTS}, got {count}")
    return count


def index_from_env(count: int, environ=None) -> int:
    """This array child's index in [0, count) from AWS_BATCH_JOB_ARRAY_INDEX. Batch arrays have at least two
    children, so a one-shard run is a plain job without the variable: with `count` 1 an unset variable means 0."""
    check_count(count)
    raw = (os.environ if environ is None else environ).get(ARRAY_INDEX_ENV)
    if raw is None and count == 1:
        return 0
    if raw is None:
        raise InputError(f"--shard-count {count} needs {ARRAY_INDEX_ENV} (set by AWS Batch in each array child)")
    if not _INDEX.match(raw) or int(raw) >= count:
        raise InputError(f"{ARRAY_INDEX_ENV} must be an integer in [0, {count}), got {raw[:20]!r}")
    return int(raw)


def fill_shard(uri: str | None, index: int | None, option: str) -> str | None:
    """`uri` with `{shard}` replaced by the index; `{shard}` without a shard index is refused (it would be a path)."""
    if uri is None or SHARD_FIELD not in uri:
        return uri
    if index is None:
        raise InputError(f"{option} holds {SHARD_FIELD} but no shard is given (--shard or --shard-count)")
    return uri.replace(SHARD_FIELD, str(index))


def load_plan(plan_uri: str, option: str = "--objects-from") -> list[dict]:
    """The plan's objects, checked: each a `file` (once), an optional lowercase hex `sha256`; other keys dropped."""
    from trellis2_worker import storage

    try:
        plan = json.loads(storage.read_bytes(plan_uri, max_bytes=MAX_PLAN_BYTES))
    except ValueError as exc:
        raise InputError(f"{option}: not a JSON plan: {exc}") from None
    objects = plan.get("objects") if isinstance(plan, dict) else None
    if not isinstance(objects, list) or not objects:
        raise InputError(f"{option}: the plan needs a non-empty 'objects' list")
    if len(objects) > MAX_OBJECTS:
        raise InputError(f"{option}: {len(objects)} objects, more than the {MAX_OBJECTS} a dataset may hold")
    seen: set[str] = set()
    out = []
    for i, o in enumerate(objects):
        if not (isinstance(o, dict) and isinstance(o.get("file"), str) and o["file"]):
            raise InputError(f"{option}: object {i} needs a 'file'")
        sha = o.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA.match(sha)):
            raise InputError(f"{option}: object {i} has a 'sha256' that is not lowercase hex")
        if o["file"] in seen:
            raise InputError(f"{option}: {o['file']} is listed twice")
        seen.add(o["file"])
        out.append({"file": o["file"], "sha256": sha})
    return out


def block(objects: list, index: int, count: int) -> list:
    """Shard `index` of `count`: the contiguous block of the plan's objects it owns."""
    n = len(objects)
    return objects[index * n // count:(index + 1) * n // count]


def shard_objects(plan_uri: str, shard: str | None) -> dict[str, str | None]:
    """{file: sha256 or None} of the plan's objects in this shard (all of them without `shard`)."""
    index, count = parse_shard(shard) if shard is not None else (0, 1)
    objects = load_plan(plan_uri)
    mine = block(objects, index, count)
    if not mine:
        raise InputError(f"--shard {index}/{count}: no object falls in it (the plan has {len(objects)})")
    return {o["file"]: o["sha256"] for o in mine}


def base_model_id(base: str) -> str:
    """The id `load_base(base).model_id` would give, without loading anything: what a reused dataset or a shard's
    dataset must have been made for."""
    if base == "tiny":
        return "tiny"
    p = Path(base)
    if p.is_dir():
        return p.resolve().name
    return base
