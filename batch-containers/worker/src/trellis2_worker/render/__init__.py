"""Condition-render camera and light sampling (docs/rendering.md), shared by the Blender pass and its tests.

Pure numpy: the Blender side (`trellis2_worker.ingest.blender_pass`) only places what this module draws.
"""

from trellis2_worker.render.cameras import (
    FOV_MAX,
    FOV_MIN,
    NUM_COND_VIEWS,
    camera_location,
    lights_for_view,
    radical_inverse_base2,
    sample_views,
    seed_for,
)

__all__ = [
    "FOV_MAX",
    "FOV_MIN",
    "NUM_COND_VIEWS",
    "camera_location",
    "lights_for_view",
    "radical_inverse_base2",
    "sample_views",
    "seed_for",
]
