"""The preview pictures: what is in front hides what is behind, silhouettes have the area their shapes project to,
voxels show only their outer faces, and the panel is a PNG of one row per object."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh
from PIL import Image

from trellis2_worker.evaluate.preview import occupancy_surface, preview_panel, render_mesh, render_occupancy

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
