"""The preview pictures: what is in front hides what is behind, silhouettes have the area their shapes project to
(orthographic, and in perspective from a condition render's camera), voxels show only their outer faces, and the
panel is a PNG of one row per object; the texture stage's render PSNR on the condition's alpha mask."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from PIL import Image

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import blender_camera  # noqa: E402

from trellis2_worker.evaluate.metrics import render_psnr  # noqa: E402
from trellis2_worker.evaluate.preview import (  # noqa: E402
    camera_face_ids,
    colour_faces,
    occupancy_surface,
    preview_panel,
    render_camera,
    render_mesh,
    render_occupancy,
)
from trellis2_worker.render import sample_views  # noqa: E402

SIZE = 96


def covered(img: np.ndarray) -> float:
    return float((img.min(axis=2) < 255).mean())


def test_a_sphere_covers_the_disc_it_projects_to():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    img = render_mesh(sphere.vertices, sphere.faces, size=SIZE)
    # orthographic over [-0.55, 0.55]²: the disc is π·0.4² of 1.1² (pixels on the rim go either way)
    assert covered(img) == pytest.approx(np.pi * 0.4**2 / 1.1**2, abs=0.02)


def test_the_nearer_surface_hides_the_farther_one():
    big = trimesh.creation.box(extents=(0.8, 0.8, 0.8))
    small = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    small.apply_translation((0.5, 0.0, 0.0))              # in front of the big box, seen from +x
    mesh = trimesh.util.concatenate([big, small])
    colours = np.zeros((len(mesh.faces), 3))
    colours[:12] = (0, 0, 1)
    colours[12:] = (1, 0, 0)
    front = render_mesh(mesh.vertices, mesh.faces, size=SIZE, azimuth=0, elevation=0, face_colors=colours)
    back = render_mesh(mesh.vertices, mesh.faces, size=SIZE, azimuth=180, elevation=0, face_colors=colours)
    centre = SIZE // 2
    assert front[centre, centre, 0] > 150 and front[centre, centre, 2] == 0       # red: the small box
    assert back[centre, centre, 2] > 150 and back[centre, centre, 0] == 0         # blue: it is hidden from behind


def test_voxels_show_their_outer_faces_only():
    occ = np.zeros((8, 8, 8), bool)
    occ[2:6, 2:6, 2:6] = True
    vertices, faces = occupancy_surface(occ)
    assert len(faces) == 6 * 16 * 2                      # a 4³ block: 16 exposed quads per side, two triangles each
    mesh = trimesh.Trimesh(vertices, faces)
    assert mesh.area == pytest.approx(6 * 0.5**2)        # its faces span [-0.25, 0.25]³
    assert np.allclose(mesh.bounds, [[-0.25] * 3, [0.25] * 3])
    front = render_occupancy(occ, size=SIZE, azimuth=0, elevation=0)
    assert covered(front) == pytest.approx(0.5**2 / 1.1**2, abs=0.03)
    assert covered(render_occupancy(np.zeros((8, 8, 8), bool), size=SIZE)) == 0.0


def test_the_panel_is_a_png_with_one_row_per_object():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    view = render_mesh(sphere.vertices, sphere.faces, size=32)
    condition = np.zeros((40, 40, 4), np.uint8)
    condition[10:30, 10:30] = (200, 50, 50, 255)
    rows = [{"condition": condition, "base": [view, view], "adapted": [view, view], "title": f"object {i}",
             "base_caption": "chamfer 0.0512", "adapted_caption": "chamfer 0.0311"} for i in range(3)]
    png = preview_panel(rows, tile=48)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width == 5 * 48
    assert image.height > 3 * 48


def test_a_condition_camera_sees_a_sphere_as_its_perspective_disc():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    for view in sample_views(4, seed=7):
        img = render_camera(sphere.vertices, sphere.faces, blender_camera(view), view["fov"], size=SIZE)
        # the disc's radius on the picture plane: tan(asin(r / distance)) against the half-width tan(fov / 2)
        rho = np.tan(np.arcsin(0.4 / view["radius"])) / np.tan(view["fov"] / 2)
        assert covered(img) == pytest.approx(np.pi * rho**2 / 4, abs=0.02)


def test_a_condition_camera_keeps_up_up_and_right_right():
    # the camera on +x at the horizon looking at the origin: world +z is up in the picture, world +y to the right
    view = {"yaw": 0.0, "pitch": 0.0, "radius": 2.0, "fov": 2 * np.arcsin(np.sqrt(3) / 4)}
    up = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    up.apply_translation((0.0, 0.0, 0.3))
    right = trimesh.creation.box(extents=(0.2, 0.2, 0.2))
    right.apply_translation((0.0, 0.3, 0.0))
    mesh = trimesh.util.concatenate([up, right])
    colours = np.zeros((len(mesh.faces), 3))
    colours[:12] = (0, 0, 1)
    colours[12:] = (1, 0, 0)
    img = render_camera(mesh.vertices, mesh.faces, blender_camera(view), view["fov"], size=SIZE, face_colors=colours)
    blue = (img[..., 2] == 255) & (img[..., 0] == 0)
    red = (img[..., 0] == 255) & (img[..., 2] == 0)
    ys, xs = np.nonzero(blue)
    assert blue.sum() > 20 and ys.max() < SIZE // 2 and abs(xs.mean() - SIZE / 2) < 2
    ys, xs = np.nonzero(red)
    assert red.sum() > 20 and xs.min() > SIZE // 2 and abs(ys.mean() - SIZE / 2) < 2
    # and nothing behind the eye is drawn (a point behind it would project mirrored into the picture)
    behind = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
    behind.apply_translation((3.0, 0.0, 0.0))
    assert covered(render_camera(behind.vertices, behind.faces, blender_camera(view), view["fov"], size=SIZE)) == 0


def _condition(mesh, colour, view, size):
    """A stand-in condition render: the mesh in `colour` from the view's camera, as RGBA with its silhouette."""
    img = render_camera(mesh.vertices, mesh.faces, blender_camera(view), view["fov"], size=size,
                        face_colors=np.tile(colour, (len(mesh.faces), 1)))
    mask = img.min(axis=2) < 255
    return img / 255.0, mask


def test_render_psnr_compares_the_base_colour_on_the_conditions_alpha_mask():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.4)
    views = sample_views(2, seed=3)
    targets = [(i, {"transform_matrix": blender_camera(v).tolist(), "camera_angle_x": v["fov"]},
                *_condition(sphere, (1.0, 0.0, 0.0), v, 64)) for i, v in enumerate(views)]
    colours = {"near": np.tile((0.9, 0.0, 0.0), (len(sphere.faces), 1)),
               "far": np.tile((0.0, 0.0, 1.0), (len(sphere.faces), 1))}
    scores = render_psnr(sphere.vertices, sphere.faces, colours, targets)
    # the same silhouette, off by 0.1 in one channel of three: MSE 0.01 / 3; blue against red: MSE 2 / 3
    assert scores["near"] == pytest.approx(10 * np.log10(3 / 0.01), abs=0.2)
    assert scores["far"] == pytest.approx(10 * np.log10(1.5), abs=0.05)
    # nothing generated: white against red on the mask, MSE 2 / 3 (what lies outside the mask does not count)
    empty = render_psnr(np.zeros((0, 3)), np.zeros((0, 3), np.int64), {"base": None}, targets)
    assert empty["base"] == pytest.approx(10 * np.log10(1.5), abs=1e-6)
    assert render_psnr(sphere.vertices, sphere.faces, colours, []) == {"near": None, "far": None}


def test_colouring_the_face_ids_is_the_unshaded_render():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    view = sample_views(1, seed=5)[0]
    rng = np.random.default_rng(0)
    fc = rng.random((len(sphere.faces), 3))
    ids = camera_face_ids(sphere.vertices, sphere.faces, blender_camera(view), view["fov"], size=48)
    direct = render_camera(sphere.vertices, sphere.faces, blender_camera(view), view["fov"], size=48, face_colors=fc)
    assert (ids >= 0).any() and np.array_equal(colour_faces(ids, fc), direct)
