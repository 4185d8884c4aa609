"""Hard bounds on a preprocessed dataset, checked before any value in it is used (a dataset comes back from users).

Each bound is defined here once; the Java inspection (Prepare) mirrors them, and docs/data-formats.md#dataset-bounds
lists the numbers with the reason for each.
"""

from __future__ import annotations

from trellis2_worker.dataset.layout import LATENT_DOWNSAMPLE, RESOLUTIONS
from trellis2_worker.render.cameras import NUM_COND_VIEWS

MiB = 1 << 20
GiB = 1 << 30

# Condition views per object: no more than the renderer makes (the reference's 16).
MAX_RENDERS = NUM_COND_VIEWS
# Latent tokens per object: one per cell of the (R/16)^3 latent grid at most, the coords being unique cells.
MAX_TOKENS = {r: (r // LATENT_DOWNSAMPLE) ** 3 for r in RESOLUTIONS}
# Objects per dataset: every object costs at least ~1 MB (16 PNG views + three latents) and archives are capped at
# 8 GiB by the Java inspection, so 10,000 is above any real dataset and keeps the name checks (~21 per object) small.
MAX_OBJECTS = 10_000
# Declared size of one member, checked before it is read: the largest real member is a 1024 latent at its token cap
# (262,144 x 32 float32 = 32 MiB); renders at the largest render size are smaller.
MAX_MEMBER_BYTES = 256 * MiB
# prepared_dataset.json, as the Java inspection's MAX_PREPARED_JSON.
MAX_INFO_BYTES = 64 * MiB
# Whole archive once decompressed: refuse zip bombs before reading anything.
MAX_UNCOMPRESSED_BYTES = 256 * GiB

__all__ = ["MAX_INFO_BYTES", "MAX_MEMBER_BYTES", "MAX_OBJECTS", "MAX_RENDERS", "MAX_TOKENS", "MAX_UNCOMPRESSED_BYTES"]
