"""Hard bounds on a preprocessed dataset, checked before any value in it is used (a dataset comes back from users).

Each bound is defined here once; the Java inspection (Prepare) mirrors them, and docs/data-formats.md#dataset-bounds
lists the numbers with the reason for each.
"""

from __future__ import annotations

from trellis2_worker.dataset.layout import INFO_FILE, LATENT_DOWNSAMPLE, METADATA_FILE, RESOLUTIONS
from trellis2_worker.ingest import rules
from trellis2_worker.render.cameras import NUM_COND_VIEWS

MiB = 1 << 20

# Condition views per object: no more than the renderer makes (the reference's 16).
MAX_RENDERS = NUM_COND_VIEWS
# Latent tokens per object: one per cell of the (R/16)^3 latent grid at most, the coords being unique cells.
MAX_TOKENS = {r: (r // LATENT_DOWNSAMPLE) ** 3 for r in RESOLUTIONS}
# Objects per dataset: every object costs at least ~1 MB (16 PNG views + three latents) and archives are capped at
# 8 GiB by the Java inspection, so 10,000 is above any real dataset and keeps the name checks (~21 per object) small.
MAX_OBJECTS = 10_000
# Declared size of one member, checked before it is read: the largest real member is a 1024 latent at its token cap
# (262,144 x 32 float32 = 32 MiB); a 1024² RGBA render is at most ~4 MiB.
MAX_MEMBER_BYTES = 256 * MiB
# prepared_dataset.json: the archive rules' bound, which Java's inspection reads too (a real one is ~200 bytes an object).
MAX_INFO_BYTES = rules.PREPARED_DATASET_MAX_BYTES
# metadata.csv: parsed into Python rows, so tighter than a binary member (a real one is well under 1 KB an object).
MAX_METADATA_BYTES = 16 * MiB
# Whole archive once decompressed, refused before reading anything: the archive rules' bound, as for raw archives.
MAX_UNCOMPRESSED_BYTES = rules.MAX_UNCOMPRESSED_BYTES


def member_cap(name: str) -> int:
    """The most bytes the dataset file `name` (its path inside the dataset) may declare."""
    return {INFO_FILE: MAX_INFO_BYTES, METADATA_FILE: MAX_METADATA_BYTES}.get(name, MAX_MEMBER_BYTES)


__all__ = [
    "MAX_INFO_BYTES", "MAX_MEMBER_BYTES", "MAX_METADATA_BYTES", "MAX_OBJECTS", "MAX_RENDERS", "MAX_TOKENS",
    "MAX_UNCOMPRESSED_BYTES", "member_cap",
]
