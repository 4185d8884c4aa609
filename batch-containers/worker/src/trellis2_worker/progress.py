"""The progress counter every long worker loop shows (preprocess, training, evaluation): tqdm on stderr, with the
count, rate and ETA; stdout stays the command's report. Its redraws end lines for the local runner, which thins
them out (mininterval keeps a slow loop from flooding a Batch job's log)."""

from __future__ import annotations

import sys


def counter(total: int, desc: str, unit: str, enabled: bool = True, **kwargs):
    """A tqdm bar of `total` `unit`s labelled `desc`; a silent one when not `enabled`."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=1.0,
                disable=not enabled, **kwargs)
