"""Evaluation metrics on cases with known answers: a mesh against itself, concentric spheres, a translated box,
occupancy grids and PSNR.

Tolerances come from the sampling: with N samples per surface a mean over one direction has a standard error of
std/√N; the bounds below are about five of those (derivations beside each test)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from trellis2_worker.evaluate import coords_to_occupancy, mesh_metrics, occupancy_iou, psnr, voxel_psnr

N = 20_000  # per surface: enough for the bounds below, a second or two per comparison on 2 cores


def unit_box(shift_x: float = 0.0) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    box.apply_translation((0.5 + shift_x, 0.5, 0.5))
    return box


def sphere(radius: float) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=4, radius=radius)


def test_a_mesh_against_itself_scores_perfectly():
    # Independent sample streams on both sides: point-to-sample distances alone would average about half the sample
    # spacing (0.5·√(area/N) ≈ 0.004 for this torus); distances to the surface must be far below that.
    torus = trimesh.creation.torus(major_radius=0.35, minor_radius=0.1, major_sections=48, minor_sections=24)
    m = mesh_metrics(torus, torus, samples=N, seed=3)
    assert m["chamfer_l1"] < 4e-4 and m["chamfer_l2"] < 1e-6
    assert m["fscore"] == {"0.01": pytest.approx(1.0, abs=1e-3), "0.02": pytest.approx(1.0, abs=1e-3)}
    assert m["normal_consistency"] > 0.99
    assert m["samples"] == N


def test_the_same_seed_gives_the_same_figures_and_another_seed_nearly_the_same():
    a, b = unit_box(), unit_box(0.1)
    first, again, other = (mesh_metrics(a, b, samples=5_000, seed=s) for s in (7, 7, 8))
    assert first == again
    assert other != first and other["chamfer_l1"] == pytest.approx(first["chamfer_l1"], rel=0.1)


@pytest.mark.parametrize("r1, r2", [(0.5, 0.53), (0.53, 0.5)])
def test_concentric_spheres_are_apart_by_the_difference_of_their_radii(r1, r2):
    # Every point of one sphere is |r1 - r2| from the other (the icospheres' faceting shifts that by < 0.1 %), so
    # Chamfer-L1 = |Δ|, Chamfer-L2 = Δ², and no point is within 0.02 of the other surface: F-score exactly 0.
    m = mesh_metrics(sphere(r1), sphere(r2), samples=N)
    delta = abs(r1 - r2)
    assert m["chamfer_l1"] == pytest.approx(delta, rel=0.01)
    assert m["chamfer_l2"] == pytest.approx(delta**2, rel=0.02)
    assert m["fscore"] == {"0.01": 0.0, "0.02": 0.0}
    assert m["normal_consistency"] > 0.99


def test_spheres_closer_than_the_threshold_count_as_matched():
    m = mesh_metrics(sphere(0.5), sphere(0.504), samples=N)
    assert m["chamfer_l1"] == pytest.approx(0.004, rel=0.02)
    assert m["fscore"]["0.01"] > 0.999 and m["fscore"]["0.02"] > 0.999


def box_expectations(d: float, taus=(0.01, 0.02)) -> dict:
    """Unit box A = [0,1]³ against B = A + (d,0,0), 0 < d ≤ 0.5, with exact surface distances (derivation).

    By symmetry both directions agree; take A's six unit faces:
    - x=0: B's face x=d is straight ahead, distance d.
    - x=1 (inside B): the nearest of B's faces x=1+d, y=0|1, z=0|1, i.e. min(d, m) with m = min(y,1-y,z,1-z);
      P(m > t) = (1-2t)², so E[min(d,m)] = ∫₀ᵈ(1-2t)²dt = (1-(1-2d)³)/6 and
      E[min(d,m)²] = ∫₀ᵈ2t(1-2t)²dt
      = d² - 8d³/3 + 2d⁴, and P(min(d,m) < τ) = 1-(1-2τ)² for τ < d.
    - y=0|1, z=0|1: B covers x ≥ d (distance 0); for x < d the distance is d-x: mean d²/2, mean square d³/3, and the
      part within τ is 1-d+τ.
    """
    l1 = (d + (1 - (1 - 2 * d) ** 3) / 6 + 4 * d * d / 2) / 6
    l2 = (d * d + (d * d - 8 * d**3 / 3 + 2 * d**4) + 4 * d**3 / 3) / 6
    f = {f"{t:g}": (1 - (1 - 2 * t) ** 2 + 4 * (1 - d + t)) / 6 for t in taus}
    return {"chamfer_l1": l1, "chamfer_l2": l2, "fscore": f}


def test_a_box_moved_along_x_matches_the_derived_distances():
    # d = 0.1: Chamfer-L1 0.03356, Chamfer-L2 0.003144, F@0.01 0.6133, F@0.02 0.6264. Per-sample distances have a
    # std of 0.045 (squares: 0.0047), so at N = 20k the two-direction means have a standard error of 0.7 % (L1 and
    # L2), and the F-scores (p ≈ 0.62) one of 0.0024: the bounds are 4-5 of those.
    want = box_expectations(0.1)
    m = mesh_metrics(unit_box(), unit_box(0.1), samples=N, seed=1)
    assert m["chamfer_l1"] == pytest.approx(want["chamfer_l1"], rel=0.04)
    assert m["chamfer_l2"] == pytest.approx(want["chamfer_l2"], rel=0.04)
    for tau, f in want["fscore"].items():
        assert m["fscore"][tau] == pytest.approx(f, abs=0.012)
    # and a larger shift moves every figure the derived way
    far = mesh_metrics(unit_box(), unit_box(0.3), samples=N, seed=1)
    assert far["chamfer_l1"] == pytest.approx(box_expectations(0.3)["chamfer_l1"], rel=0.04)
    assert far["fscore"]["0.02"] == pytest.approx(box_expectations(0.3)["fscore"]["0.02"], abs=0.012)


def test_meshes_as_vertex_and_face_arrays():
    box = unit_box()
    m = mesh_metrics((box.vertices, box.faces), (box.vertices + [0.1, 0, 0], box.faces), samples=5_000)
    assert m["chamfer_l1"] == pytest.approx(box_expectations(0.1)["chamfer_l1"], rel=0.1)


def test_occupancy_iou():
    a = coords_to_occupancy([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], 64)
    b = coords_to_occupancy([[2, 0, 0], [3, 0, 0], [4, 0, 0]], 64)
    assert occupancy_iou(a, b) == pytest.approx(2 / 5)
    assert occupancy_iou(a, a) == 1.0
    assert occupancy_iou(a, np.zeros_like(a)) == 0.0
    with pytest.raises(ValueError):
        coords_to_occupancy([[64, 0, 0]], 64)
    with pytest.raises(ValueError):
        occupancy_iou(a, np.zeros((32, 32, 32), bool))


def test_psnr_of_a_known_error():
    rng = np.random.default_rng(0)
    target = rng.random((16, 16, 3))
    assert psnr(target + 0.1, target) == pytest.approx(20.0)                   # MSE 0.01, peak 1
    assert psnr(target, target) == float("inf")
    mask = np.zeros((16, 16), bool)
    mask[:4] = True
    noisy = target.copy()
    noisy[4:] += 0.5                                                           # outside the mask: ignored
    assert psnr(noisy, target, mask=mask) == float("inf")


def test_voxel_psnr_matches_voxels_by_coordinates_not_order():
    coords = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    colours = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90]], np.uint8)
    order = [2, 0, 1]
    pred = colours[order].astype(np.float64) + 5.1                           # MSE 5.1² everywhere
    extra = np.array([[0, 0, 0]])                                             # a voxel the ground truth lacks
    db, matched = voxel_psnr(np.vstack([coords[order], extra]), np.vstack([pred, [[0, 0, 0]]]), coords, colours)
    assert matched == 3
    assert db == pytest.approx(10 * np.log10(255**2 / 5.1**2))
