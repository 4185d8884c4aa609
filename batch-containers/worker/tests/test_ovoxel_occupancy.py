"""The 64³ sparse-structure occupancy computed without the 1024 dual grid equals unique(coords_1024 // 16) of it."""

import os

import numpy as np
import pytest
import trimesh

from trellis2_worker.ovoxel import mesh_to_flexible_dual_grid, normalize_unit_cube, occupancy_grid, ss_occupancy


def _real_mesh(shared_dir, rel):
    mesh = trimesh.load(shared_dir / "assets/real" / rel, force="mesh")
    return normalize_unit_cube(np.asarray(mesh.vertices, np.float32)), np.asarray(mesh.faces, np.int64)


def _reference(vertices, faces):
    coords, _, _ = mesh_to_flexible_dual_grid(vertices, faces, 1024)
    return np.unique(coords // 16, axis=0).astype(np.int32)


# Small enough for the 1024 dual grid to run in seconds; spider.obj is the one whose occupancy the 512 grid gets wrong.
FAST = ["assimp/OBJ/spider.obj", "assimp/STL/triangle.stl", "assimp/PLY/float-color.ply", "assimp/PLY/Wuson.ply"]
ALL = FAST + [
    "trimesh/Duck.glb",
    "trimesh/monkey.glb",
    "trimesh/featuretype.STL",
    "assimp/STL/sphereWithHole.stl",
    "assimp/glTF2/ClearCoat-glTF/ClearCoatTest.gltf",
    "assimp/glTF2/BoxTextured-glTF-Binary/BoxTextured.glb",
    "assimp/glTF2/2CylinderEngine-glTF-Binary/2CylinderEngine.glb",
    "damaged-helmet/DamagedHelmet.gltf",
]


@pytest.mark.parametrize("rel", FAST)
def test_occupancy_equals_the_1024_dual_grid_cells(shared_dir, rel):
    v, f = _real_mesh(shared_dir, rel)
    np.testing.assert_array_equal(ss_occupancy(v, f), _reference(v, f))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TRELLIS2_SLOW_TESTS"), reason="set TRELLIS2_SLOW_TESTS=1 (about 2 min of 1024 grids)")
@pytest.mark.parametrize("rel", ALL[len(FAST):])
def test_occupancy_equals_the_1024_dual_grid_cells_all_assets(shared_dir, rel):
    v, f = _real_mesh(shared_dir, rel)
    np.testing.assert_array_equal(ss_occupancy(v, f), _reference(v, f))


def test_the_512_grid_is_not_enough(shared_dir):
    # The even 1024-lattice lines are the 512 ones: spider.obj has a part that crosses only odd lines in one cell.
    v, f = _real_mesh(shared_dir, "assimp/OBJ/spider.obj")
    at_1024 = {tuple(c) for c in ss_occupancy(v, f)}
    from_512 = {tuple(c) for c in ss_occupancy(v, f, fine=512)}
    assert from_512 < at_1024


def test_small_triangle_between_lattice_lines():
    # A triangle inside one 1024-voxel crosses no lattice line: no active voxel, no occupied cell (like the reference).
    h = 1.0 / 1024
    base = np.float32(-0.5 + 100.25 * h)
    tiny = np.array([[base, base, base], [base + 0.5 * h, base, base], [base, base + 0.5 * h, base + 0.3 * h]], np.float32)
    f = np.array([[0, 1, 2]])
    assert len(ss_occupancy(tiny, f)) == 0
    assert len(_reference(tiny, f)) == 0
    # Stretched so that it crosses one lattice line, the z-line at (x, y) = (101h, 101h), both odd: the voxels around
    # that crossing lie in cell (6, 6, 6), which the 1024 grid occupies and the 512 grid (even lines only) never sees.
    wide = tiny.copy()
    wide[1, 0] = np.float32(-0.5 + 102.5 * h)
    wide[2, 1] = np.float32(-0.5 + 102.5 * h)
    got = ss_occupancy(wide, f)
    np.testing.assert_array_equal(got, _reference(wide, f))
    np.testing.assert_array_equal(got, [[6, 6, 6]])
    assert len(ss_occupancy(wide, f, fine=512)) == 0


def test_dense_grid_marks_exactly_the_cells():
    coords = np.array([[0, 0, 0], [63, 1, 2], [5, 6, 7]])
    occ = occupancy_grid(coords)
    assert occ.shape == (1, 64, 64, 64) and occ.dtype == np.float32
    assert occ.sum() == 3 and occ[0, 63, 1, 2] == 1
    with pytest.raises(ValueError):
        occupancy_grid(np.array([[64, 0, 0]]))
