"""The reference condition-view distribution (docs/rendering.md#cameras) and per-view lighting
(docs/rendering.md#lights-and-render-settings).

Views are drawn from a seeded generator so an asset renders the same way every time (the seed comes from its sha256);
the reference draws them from an unseeded one, which changes nothing in their distribution.
"""

from __future__ import annotations

import math

import numpy as np

NUM_COND_VIEWS = 16
FOV_MIN = math.radians(10.0)
FOV_MAX = math.radians(70.0)
# The unit cube's bounding sphere (radius sqrt(3)/2) exactly fills a view of angle fov at distance r.
_HALF_DIAG = math.sqrt(3.0) / 2.0
R_MIN = _HALF_DIAG / math.sin(FOV_MAX / 2)
R_MAX = _HALF_DIAG / math.sin(FOV_MIN / 2)


def seed_for(sha256: str) -> int:
    return int(sha256[:16], 16) if sha256 else 0


def radical_inverse_base2(i: int) -> float:
    """Van der Corput: the bits of i mirrored about the binary point (0.5, 0.25, 0.75, ...)."""
    result, f = 0.0, 0.5
    while i:
        result += f * (i & 1)
        i >>= 1
        f *= 0.5
    return result


def sample_views(n: int = NUM_COND_VIEWS, seed: int = 0) -> list[dict]:
    """n views as {yaw, pitch, radius, fov} in radians: a randomly offset Hammersley set on the sphere, warped so
    a quarter of the views lie below the horizon, with radius uniform in 1/r^2 and the fov that frames the cube."""
    rng = np.random.default_rng(seed)
    offset = rng.random(2)
    views = []
    for i in range(n):
        u = i / n + offset[0] / n
        v = (radical_inverse_base2(i) + offset[1]) % 1.0  # yaw is periodic, so wrapping changes nothing
        u = 2 * u if u < 0.25 else 2 * u / 3 + 1 / 3
        pitch = math.acos(1 - 2 * u) - math.pi / 2
        yaw = 2 * math.pi * v
        k = rng.uniform(1 / R_MAX**2, 1 / R_MIN**2)
        radius = 1 / math.sqrt(k)
        fov = 2 * math.asin(_HALF_DIAG / radius)
        views.append({"yaw": yaw, "pitch": pitch, "radius": radius, "fov": fov})
    return views


def camera_location(view: dict) -> np.ndarray:
    """Camera position in the Z-up world, looking at the origin."""
    cp = math.cos(view["pitch"])
    return view["radius"] * np.array(
        [math.cos(view["yaw"]) * cp, math.sin(view["yaw"]) * cp, math.sin(view["pitch"])]
    )


def lights_for_view(view: dict, rng: np.random.Generator) -> tuple[list[dict], float]:
    """1-3 point lights ({location, energy, radius}) and the world background strength for one view.

    The lights share a budget of 1.5: each one takes a part that depends on how much it faces the camera side,
    and what is left lights the white world, so views are neither black nor blown out."""
    cam_dir = camera_location(view)
    cam_dir = cam_dir / np.linalg.norm(cam_dir)
    remaining = 1.5
    lights = []
    for _ in range(int(rng.integers(1, 4))):
        direction = rng.standard_normal(3) + np.array([0.0, 0.0, 0.6])
        direction /= np.linalg.norm(direction)
        dist = 1 / rng.uniform(1 / 100, 1 / 10)
        dot = float(cam_dir @ direction)
        share = math.sqrt(rng.uniform(0.01, 1.0)) * remaining / (0.45 * dot + 0.55)
        lights.append(
            {
                "location": (direction * dist).tolist(),
                "energy": share * dist**2 * 31.4,
                "radius": float(rng.uniform(0.1, 0.1 * dist)),
            }
        )
        remaining -= (0.5 * dot + 0.5) * share
    return lights, max(remaining, 0.0)
