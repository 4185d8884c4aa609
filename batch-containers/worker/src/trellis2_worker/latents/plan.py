"""A shard of a preprocess run: the objects of shard I of N, taken from a plan file instead of the archive's listing.

The plan is JSON with `objects`: a list of `{"file": <path in the archive>, "sha256": <its object key>}` in a fixed
order (a preprocess report's `objects` has that form, so one run's report plans the next). Shard I of N holds the
contiguous block `objects[I*n//N : (I+1)*n//N]`; the archive's other 3D files are never hashed, read or rendered.
Each object's dataset members are the same bytes in any shard (the renders, latents and rows depend on the object
alone), so the shards' datasets hold exactly the members of a one-shard run.
"""

from __future__ import annotations

import json
import re

from trellis2_worker.dataset.limits import MAX_OBJECTS
from trellis2_worker.errors import InputError

MAX_PLAN_BYTES = 16 << 20  # ~100 bytes an object: far above MAX_OBJECTS entries
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SHARD = re.compile(r"^(\d{1,6})/(\d{1,6})$")


def parse_shard(text: str) -> tuple[int, int]:
    m = _SHARD.match(text or "")
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise InputError(f"--shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_objects(plan_uri: str, shard: str | None) -> dict[str, str]:
    """{file: sha256} of the plan's objects in this shard (all of them without `shard`)."""
    from trellis2_worker import storage

    index, count = parse_shard(shard) if shard is not None else (0, 1)
    try:
        plan = json.loads(storage.read_bytes(plan_uri, max_bytes=MAX_PLAN_BYTES))
    except ValueError as exc:
        raise InputError(f"--objects-from: not a JSON plan: {exc}") from None
    objects = plan.get("objects") if isinstance(plan, dict) else None
    if not isinstance(objects, list) or not objects:
        raise InputError("--objects-from: the plan needs a non-empty 'objects' list")
    if len(objects) > MAX_OBJECTS:
        raise InputError(f"--objects-from: {len(objects)} objects, more than the {MAX_OBJECTS} a dataset may hold")
    seen: dict[str, str] = {}
    for i, o in enumerate(objects):
        if not (isinstance(o, dict) and isinstance(o.get("file"), str) and o["file"]
                and isinstance(o.get("sha256"), str) and _SHA.match(o["sha256"])):
            raise InputError(f"--objects-from: object {i} needs a 'file' and a lowercase hex 'sha256'")
        if o["file"] in seen:
            raise InputError(f"--objects-from: {o['file']} is listed twice")
        seen[o["file"]] = o["sha256"]
    n = len(objects)
    block = objects[index * n // count:(index + 1) * n // count]
    if not block:
        raise InputError(f"--shard {index}/{count}: no object falls in it (the plan has {n})")
    return {o["file"]: o["sha256"] for o in block}
