"""Which objects of a dataset a run holds out of training to judge the adapter on.

The dataset stays whole (the same zip serves every stage and every run); the split is a pure function of the
objects' content hashes, so the three stages of a request, a resumed run and a rerun all hold out the same objects,
and adding objects to a dataset moves only the new ones in or out. Each sha256 is hashed again under a fixed key
before ranking so the held-out part does not follow the order of any listing or the training seed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from trellis2_worker.errors import InputError

HELD_OUT_FRACTION = 0.1   # of the dataset's objects, rounded up
MIN_OBJECTS_TO_HOLD_OUT = 5  # below this every object trains: one held out would be a fifth or more of the data
MAX_HELD_OUT_FRACTION = 0.5
_RANK_KEY = b"trellis2-lora/held-out/v1\0"


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]      # in dataset order
    held_out: tuple[str, ...]   # in dataset order
    note: str | None = None     # why nothing is held out, when nothing is

    def partition(self, objects: list, key=lambda o: o.sha256) -> tuple[list, list]:
        """(trained, held out): `objects` (in their order) by which side of the split their sha256 falls."""
        held = set(self.held_out)
        return [o for o in objects if key(o) not in held], [o for o in objects if key(o) in held]

    def as_record(self) -> dict:
        rec = {"objects_held_out": len(self.held_out), "held_out_sha256": list(self.held_out)}
        if self.note:
            rec["held_out_note"] = self.note
        return rec


def held_out_count(n: int, fraction: float = HELD_OUT_FRACTION) -> int:
    """⌈fraction·n⌉ objects (at least 1) once the dataset has MIN_OBJECTS_TO_HOLD_OUT, none below."""
    if n < MIN_OBJECTS_TO_HOLD_OUT or fraction == 0:
        return 0
    return max(1, math.ceil(round(fraction * n, 9)))  # round: 0.1·30 is 3.0000000000000004 in floating point


def held_out_split(shas, fraction: float = HELD_OUT_FRACTION) -> Split:
    """Split the dataset's objects (their sha256 keys) into those trained on and those held out."""
    shas = list(shas)
    if not (0 <= fraction <= MAX_HELD_OUT_FRACTION) or math.isnan(fraction):
        raise InputError(f"held-out-fraction must be from 0 to {MAX_HELD_OUT_FRACTION}, got {fraction}")
    if len(set(shas)) != len(shas):
        raise InputError("the dataset lists an object twice")
    k = held_out_count(len(shas), fraction)
    if k == 0:
        why = ("the held-out fraction is 0" if fraction == 0 and len(shas) >= MIN_OBJECTS_TO_HOLD_OUT else
               f"the dataset has {len(shas)} object{'s' if len(shas) != 1 else ''}, fewer than the "
               f"{MIN_OBJECTS_TO_HOLD_OUT} needed to hold one out")
        return Split(tuple(shas), (), f"no object held out: {why}; the held-out metrics are absent")
    ranked = sorted(shas, key=lambda s: hashlib.sha256(_RANK_KEY + s.encode()).digest())
    held = set(ranked[:k])
    return Split(tuple(s for s in shas if s not in held), tuple(s for s in shas if s in held))
