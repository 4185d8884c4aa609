"""The condition-view camera distribution of the reference (docs/rendering.md#cameras)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trellis2_worker.render import camera_location, lights_for_view, radical_inverse_base2, sample_views, seed_for
from trellis2_worker.render.cameras import R_MAX, R_MIN


def test_radical_inverse_mirrors_the_bits():
    assert [radical_inverse_base2(i) for i in range(6)] == [0.0, 0.5, 0.25, 0.75, 0.125, 0.625]


def test_views_follow_the_reference_distribution():
    assert R_MIN == pytest.approx(1.510, abs=1e-3) and R_MAX == pytest.approx(9.937, abs=1e-3)
    below, inv_r2 = 0, []
    for seed in range(200):
        views = sample_views(16, seed=seed)
        assert len(views) == 16
        for v in views:
            assert math.radians(10) - 1e-9 <= v["fov"] <= math.radians(70) + 1e-9
            assert R_MIN - 1e-9 <= v["radius"] <= R_MAX + 1e-9
            assert math.sin(v["fov"] / 2) * v["radius"] == pytest.approx(math.sqrt(3) / 2)  # sphere fills the view
            assert -math.pi / 2 <= v["pitch"] <= math.pi / 2
            assert np.linalg.norm(camera_location(v)) == pytest.approx(v["radius"])
            below += v["pitch"] < 0
            inv_r2.append(1 / v["radius"] ** 2)
        # Stratified in u: pitches are sorted low to high within one asset's 16 views.
        pitches = [v["pitch"] for v in views]
        assert pitches == sorted(pitches)
    assert below / (200 * 16) == pytest.approx(0.25, abs=0.02)
    # Uniform in 1/r^2: its mean is the midpoint of the range.
    assert np.mean(inv_r2) == pytest.approx((1 / R_MIN**2 + 1 / R_MAX**2) / 2, rel=0.05)


def test_views_are_deterministic_per_asset_and_differ_between_assets():
    a, b = "ab" * 32, "cd" * 32
    assert sample_views(seed=seed_for(a)) == sample_views(seed=seed_for(a))
    assert sample_views(seed=seed_for(a)) != sample_views(seed=seed_for(b))


def test_lights_share_the_reference_budget():
    rng = np.random.default_rng(0)
    for view in sample_views(16, seed=3):
        lights, world = lights_for_view(view, rng)
        assert 1 <= len(lights) <= 3
        assert 0 <= world <= 1.5
        for light in lights:
            dist = np.linalg.norm(light["location"])
            assert 10 - 1e-6 <= dist <= 100 + 1e-6
            assert 0.1 <= light["radius"] <= 0.1 * dist
            assert light["energy"] > 0
