"""O-Voxel conversion: the reference converter's golden output is reproduced, and on simple and real meshes the
voxels, flags, dual vertices, colours and the mesh extracted back are where the surface is."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from ovoxel_helpers import blocks_texture, cube_mesh, fin_mesh, sphere_mesh, trimesh_to_dump, wavy_plane, write_dump
from trellis2_worker.errors import InputError
from trellis2_worker.ovoxel import (dual_grid_attrs, flexible_dual_grid_to_mesh, load_dump, mesh_to_flexible_dual_grid,
                                    normalize_unit_cube, normalized_dump, pbr_voxels, read_vxz)


def _keys(c, res):
    c = np.asarray(c).astype(np.int64)
    return (c[:, 0] * res + c[:, 1]) * res + c[:, 2]


def _sorted(coords, attrs, res):
    o = np.argsort(_keys(coords, res))
    return coords[o], {k: v[o] for k, v in attrs.items()}


# ------------------------------------------------------------------------------------------------ golden files

@pytest.fixture(scope="module")
def golden(shared_dir):
    return shared_dir / "fixtures" / "ovoxel-golden"


@pytest.fixture(scope="module")
def golden_dual_grid(golden):
    m = np.load(golden / "mesh.npz")
    return mesh_to_flexible_dual_grid(m["vertices"], m["faces"], 256)


def test_dual_grid_reproduces_the_reference_converter(golden, golden_dual_grid):
    coords, dual, inter = golden_dual_grid
    ours = dual_grid_attrs(coords, dual, inter, 256)
    ref_coords, ref = read_vxz(golden / "dg_256.vxz")
    c1, a1 = _sorted(coords, ours, 256)
    c2, a2 = _sorted(ref_coords, ref, 256)
    np.testing.assert_array_equal(c1, c2)                                    # same voxel set
    np.testing.assert_array_equal(a1["intersected"], a2["intersected"])      # same edge flags
    diff = np.abs(a1["vertices"].astype(int) - a2["vertices"].astype(int))
    assert diff.max() <= 1                                                   # dual vertices within ±1/255
    assert (diff == 0).mean() > 0.999                                        # (in fact bit-exact here)


def test_pbr_voxels_reproduce_the_reference_converter(golden, golden_dual_grid):
    coords = golden_dual_grid[0]
    attrs = pbr_voxels(load_dump(golden), coords, 256)                      # golden mesh is already normalised
    assert list(attrs) == ["base_color", "metallic", "roughness", "alpha"]
    ref_coords, ref = read_vxz(golden / "pbr_256.vxz")
    c1, a1 = _sorted(coords, attrs, 256)
    c2, a2 = _sorted(ref_coords, ref, 256)
    np.testing.assert_array_equal(c1, c2)
    for k in ref:
        assert a1[k].dtype == np.uint8 and a1[k].shape == a2[k].shape
        assert np.abs(a1[k].astype(int) - a2[k].astype(int)).max() <= 1, k
    # the checker sphere has both checker colours, the untextured plane the default grey 0.8 -> 204
    assert len(np.unique(a1["base_color"], axis=0)) > 10
    assert np.array_equal(np.unique(a1["metallic"]), [0, 76])                # 0.3*255=76.5 truncated; default 0


# ------------------------------------------------------------------------------------------------ geometry

def _check_inside(coords, dual, res):
    local = dual * np.float32(res) - coords
    assert local.min() >= -1e-3 and local.max() <= 1 + 1e-3


def _surface_points(v, f, n, seed=0):
    return trimesh.Trimesh(v, f, process=False).sample(n, return_index=False, seed=seed)


def _chamfer(v1, f1, v2, f2, h):
    """Mean of both directions' mean distance between the two surfaces, each surface densely sampled
    (about 4 points per voxel face, so sampling adds well under a voxel)."""
    area = max(trimesh.Trimesh(v1, f1, process=False).area, trimesh.Trimesh(v2, f2, process=False).area)
    dense = int(min(2_000_000, 4 * area / h ** 2))
    a_q, b_q = _surface_points(v1, f1, 20_000, 1), _surface_points(v2, f2, 20_000, 2)
    a_d, b_d = _surface_points(v1, f1, dense, 3), _surface_points(v2, f2, dense, 4)
    d1 = cKDTree(b_d).query(a_q)[0]
    d2 = cKDTree(a_d).query(b_q)[0]
    return 0.5 * (d1.mean() + d2.mean()), max(np.percentile(d1, 99), np.percentile(d2, 99))


def _round_trip(v, f, res):
    coords, dual, inter = mesh_to_flexible_dual_grid(v, f, res)
    _check_inside(coords, dual, res)
    a = dual_grid_attrs(coords, dual, inter, res)
    mv, mf = flexible_dual_grid_to_mesh(coords, a["vertices"] / 255.0, a["intersected"], res)
    assert len(mf) > 0
    return coords, dual, inter, mv, mf


@pytest.mark.parametrize("res", [256, 512])
def test_sphere_round_trip_stays_within_one_voxel(res):
    v, f = sphere_mesh(subdivisions=4, radius=0.2)
    _, _, _, mv, mf = _round_trip(v, f, res)
    h = 1.0 / res
    mean, p99 = _chamfer(v, f, mv, mf, h)
    assert mean < h and p99 < 2 * h, (mean / h, p99 / h)
    # every extracted vertex is close to the sphere mesh (the polyhedron lies within 0.2 of the centre)
    r = np.linalg.norm(mv, axis=1)
    assert np.abs(r - 0.2).max() < 2 * h


@pytest.mark.parametrize("res", [256, 512])
def test_open_wavy_plane_round_trip_stays_within_one_voxel(res):
    v, f = wavy_plane(n=40, size=0.6)
    coords, _, _, mv, mf = _round_trip(v, f, res)
    h = 1.0 / res
    mean, p99 = _chamfer(v, f, mv, mf, h)
    assert mean < h and p99 < 2 * h, (mean / h, p99 / h)
    # an open surface stays open: the extracted mesh has a boundary, and does not grow past the plane's border
    assert np.abs(mv[:, :2]).max() < 0.3 + 2 * h


def test_cube_keeps_its_sharp_corners():
    v, f = cube_mesh()
    _, _, _, mv, mf = _round_trip(v, f, 128)
    h = 1 / 128
    mean, _ = _chamfer(v, f, mv, mf, h)
    assert mean < h
    for corner in np.array(np.meshgrid([-0.4, 0.4], [-0.4, 0.4], [-0.4, 0.4])).T.reshape(-1, 3):
        assert np.linalg.norm(mv - corner, axis=1).min() < 0.75 * h      # the QEF puts a vertex on each corner


def test_non_manifold_fin_converts_and_round_trips():
    v, f = fin_mesh()
    coords, dual, inter, mv, mf = _round_trip(v, f, 128)
    assert inter.any(axis=1).all() or inter.any()
    mean, _ = _chamfer(v, f, mv, mf, 1 / 128)
    assert mean < 1 / 128


def test_intersected_flags_are_exactly_the_lattice_edges_the_surface_crosses():
    v, f = sphere_mesh(subdivisions=2, radius=0.37)  # convex: inside = behind every face plane
    res = 64
    coords, dual, inter = mesh_to_flexible_dual_grid(v, f, res)
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    if (n * tri[:, 0]).sum(1).mean() < 0:
        n = -n
    off = (n * tri[:, 0]).sum(1)

    def sdist(p):  # signed distance-like: > 0 outside the convex polyhedron
        return (p @ n.T - off).max(axis=1)

    h = 1.0 / res
    flagged = set()
    for a in range(3):
        b, c = (a + 1) % 3, (a + 2) % 3
        for vox in coords[inter[:, a]]:
            flagged.add((a, *vox))
    # all lattice edges near the surface: test every edge of every active voxel's +b+c corner line
    cand = {(a, *vox) for a in range(3) for vox in coords}
    edges = np.array(sorted(cand))
    a = edges[:, 0]
    vox = edges[:, 1:]
    e = np.eye(3, dtype=int)
    p0 = (vox + e[(a + 1) % 3] + e[(a + 2) % 3]) * h - 0.5
    p1 = p0 + e[a] * h
    s0, s1 = sdist(p0), sdist(p1)
    crosses = (s0 > 0) != (s1 > 0)
    clear = np.minimum(np.abs(s0), np.abs(s1)) > 1e-6
    is_flagged = np.array([tuple(x) in flagged for x in edges.tolist()])
    assert crosses.sum() > 1000
    np.testing.assert_array_equal(is_flagged[clear], crosses[clear])


def test_normalisation_is_the_reference_formula():
    v = np.array([[0, 0, 0], [2, 1, 4], [1, 3, 2]], np.float32)
    out = normalize_unit_cube(v)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.max(0) - out.min(0), [0.499995, 0.7499925, 0.99999], rtol=1e-6)
    np.testing.assert_allclose((out.max(0) + out.min(0)) / 2, 0, atol=1e-7)


def test_normalisation_scale_is_bit_identical_to_torch_for_every_extent():
    # The reference normalises torch float32 tensors: `0.99999 / extent` is `reciprocal(extent) * 0.99999` there.
    import torch

    from trellis2_worker.ovoxel.dump import unit_cube_scale

    rng = np.random.default_rng(5)
    extents = (10.0 ** rng.uniform(-4, 4, 1_000_000)).astype(np.float32)
    want = (torch.reciprocal(torch.from_numpy(extents)) * 0.99999).numpy()
    assert np.array_equal(unit_cube_scale(extents), want)
    # and the whole normalisation of a mesh, as the reference toolkit writes it on tensors
    for _ in range(200):
        size = 10.0 ** rng.uniform(-3, 3)
        v = ((rng.normal(size=(20, 3)) + rng.normal(size=3)) * size).astype(np.float32)
        t = torch.from_numpy(v)
        vmin, vmax = t.min(dim=0)[0], t.max(dim=0)[0]
        ref = ((t - (vmin + vmax) / 2) * (0.99999 / (vmax - vmin).max())).numpy()
        assert np.array_equal(normalize_unit_cube(v), ref)


def test_a_mesh_that_float32_cannot_normalise_fails_as_that_objects_input():
    # 2 mm wide, 2 units from the origin: (v - center) rounds past the half extent, as in the reference (its assert)
    v = np.array([[-0.00065383, 0.99987036, -1.89921606], [0.00149343, 0.99874091, -1.89848602],
                  [0.00134588, 1.0007813, -1.89973557], [-0.00031392, 1.00145805, -1.8980397]], np.float32)
    with pytest.raises(InputError, match="too small for its distance from the origin"):
        normalize_unit_cube(v)


# ------------------------------------------------------------------------------------------------ colours

def test_flat_textured_plane_colours_match_direct_texture_lookup(tmp_path):
    # A flat square with UVs spanning [0,1]^2 and a texture of 16-texel colour blocks.
    s = 0.45
    v = np.array([[-s, -s, 0.0], [s, -s, 0.0], [s, s, 0.0], [-s, s, 0.0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv_of = lambda p: (p[..., :2] + s) / (2 * s)                       # noqa: E731
    uvs = uv_of(v[f]).astype(np.float32)
    tex = blocks_texture(64, 16, seed=3)
    mat = {"baseColorFactor": [1, 1, 1, 1], "alphaFactor": 1.0, "metallicFactor": 0.25, "roughnessFactor": 0.75,
           "alphaMode": "OPAQUE", "alphaCutoff": 0.5, "alphaTexture": None, "metallicTexture": None,
           "roughnessTexture": None,
           "baseColorTexture": {"image": "blocks.png", "interpolation": "Linear", "extension": "REPEAT"}}
    d = write_dump(tmp_path / "d", v, f, uvs, np.ones(2, bool), np.zeros(2, np.int32), [mat], {"blocks.png": tex})
    dump = load_dump(d)                      # already inside the unit cube: use it as is
    res = 256
    coords, _, _ = mesh_to_flexible_dual_grid(dump.vertices, dump.faces, res)
    attrs = pbr_voxels(dump, coords, res)
    img = np.asarray(tex)
    centre = (coords + 0.5) / res - 0.5
    uv = uv_of(centre)
    # the direct lookup of docs/data-formats.md#pbr-voxels: column u*W, row v*H of the stored image
    x, y = uv[:, 0] * 64, uv[:, 1] * 64
    inner = (np.abs(x / 16 - np.round(x / 16)) > 2 / 16) & (np.abs(y / 16 - np.round(y / 16)) > 2 / 16)
    inner &= (uv.min(1) > 0.02) & (uv.max(1) < 0.98)
    expect = img[np.clip(y.astype(int), 0, 63), np.clip(x.astype(int), 0, 63)]
    got = attrs["base_color"]
    assert inner.sum() > 1000
    assert np.abs(got[inner].astype(int) - expect[inner].astype(int)).max() <= 2
    assert (attrs["metallic"] == 63).all() and (attrs["roughness"] == 191).all() and (attrs["alpha"] == 255).all()


def test_faces_without_material_get_the_default_material(tmp_path):
    v, f = sphere_mesh(subdivisions=2, radius=0.4)
    d = write_dump(tmp_path / "d", v, f)       # no UVs, mat_ids -1
    dump = normalized_dump(load_dump(d))
    coords, _, _ = mesh_to_flexible_dual_grid(dump.vertices, dump.faces, 64)
    a = pbr_voxels(dump, coords, 64)
    # grey 0.8 * 255 = 204, truncated after float32 averaging: 203 or 204
    assert set(np.unique(a["base_color"])) <= {203, 204} and (a["metallic"] == 0).all()
    assert (a["roughness"] == 127).all() and (a["alpha"] == 255).all()


def test_mask_alpha_texture_and_mirror_wrap(tmp_path):
    # alpha texture: left half 0, right half 255; MASK cut-off 0.5 gives exactly 0 or 255 per voxel
    s = 0.45
    v = np.array([[-s, -s, 0.0], [s, -s, 0.0], [s, s, 0.0], [-s, s, 0.0]], np.float32)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = ((v[f][..., :2] + s) / (2 * s) * 2).astype(np.float32)    # UVs over [0,2]: mirrored past 1
    alpha = np.zeros((32, 32), np.uint8)
    alpha[:, 16:] = 255
    mat = {"baseColorFactor": [1, 0, 0], "alphaFactor": 1.0, "metallicFactor": 0.0, "roughnessFactor": 1.0,
           "alphaMode": "MASK", "alphaCutoff": 0.5, "baseColorTexture": None, "metallicTexture": None,
           "roughnessTexture": None,
           "alphaTexture": {"image": "a.png", "interpolation": "Closest", "extension": "MIRROR"}}
    d = write_dump(tmp_path / "d", v, f, uvs, np.ones(2, bool), np.zeros(2, np.int32), [mat],
                   {"a.png": Image.fromarray(alpha, mode="L")})
    dump = load_dump(d)
    coords, _, _ = mesh_to_flexible_dual_grid(dump.vertices, dump.faces, 128)
    a = pbr_voxels(dump, coords, 128)
    u = ((coords[:, 0] + 0.5) / 128 - 0.5 + s) / (2 * s) * 2
    assert set(np.unique(a["alpha"])) <= {0, 255}
    far = np.abs(((u * 32) % 16) - 8) < 6                                  # away from the texel-column edges
    # mirrored: u in [0,0.5) -> 0, [0.5,1) -> 255, [1,1.5) -> 255, [1.5,2) -> 0
    want = np.where((u % 2 < 0.5) | (u % 2 >= 1.5), 0, 255)
    assert np.array_equal(a["alpha"][far, 0], want[far])
    assert (a["base_color"][:, 0] == 255).all() and (a["base_color"][:, 1:] == 0).all()


# ------------------------------------------------------------------------------------------------ real assets

def test_real_asset_duck_round_trips_with_plausible_colours(shared_dir, tmp_path):
    d = trimesh_to_dump(shared_dir / "assets" / "real" / "trimesh" / "Duck.glb", tmp_path / "duck")
    dump = normalized_dump(load_dump(d))
    res = 256
    coords, dual, inter = mesh_to_flexible_dual_grid(dump.vertices, dump.faces, res)
    _check_inside(coords, dual, res)
    attrs = pbr_voxels(dump, coords, res)
    shape = dual_grid_attrs(coords, dual, inter, res)
    mv, mf = flexible_dual_grid_to_mesh(coords, shape["vertices"] / 255.0, shape["intersected"], res)
    mean, _ = _chamfer(dump.vertices, dump.faces, mv, mf, 1 / res)
    assert mean < 1 / res
    rgb = attrs["base_color"].astype(float).mean(0)
    assert rgb[0] > 1.5 * rgb[2] and rgb[1] > 1.2 * rgb[2]          # a yellow duck


def test_extraction_follows_split_weights_and_drops_incomplete_quads():
    # four voxels around one z edge -> one quad; a fifth, flagged, voxel without neighbours -> nothing
    coords = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0], [5, 5, 5]])
    local = np.full((5, 3), 0.5, np.float32)
    inter = np.zeros((5, 3), bool)
    inter[0, 2] = inter[4, 2] = True
    v, f = flexible_dual_grid_to_mesh(coords, local, inter, 8)
    assert f.tolist() == [[0, 1, 2], [0, 2, 3]]                        # default: diagonal 0-2
    np.testing.assert_allclose(v[0], (np.array([0.5, 0.5, 0.5]) / 8) - 0.5)
    w = np.array([1, 3, 1, 3, 1], np.float32)                          # w0*w2 < w1*w3 -> diagonal 1-3
    _, f = flexible_dual_grid_to_mesh(coords, local, inter, 8, split_weight=w)
    assert f.tolist() == [[0, 1, 3], [3, 1, 2]]
    _, f = flexible_dual_grid_to_mesh(coords, local, np.array([4, 0, 0, 0, 4], np.uint8), 8)  # stored bits form
    assert len(f) == 2
