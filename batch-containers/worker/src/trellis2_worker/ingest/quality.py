"""Data-quality checks of one ingested object, before any GPU time is spent on it (docs/rendering.md#data-quality).

Measured on what the Blender pass wrote: the mesh dump (non-finite or degenerate geometry, flatness) and the
condition renders' alpha and colour (coverage, transparency, colour variance), plus the images the file names that
Blender could not read. An object that cannot teach anything is refused with its reason; one of doubtful value is
kept and flagged. The thresholds and the metadata.csv columns are defined here once (numpy and Pillow only: the
Blender pass imports this module too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A pixel is part of the silhouette when its alpha is above 0 (Cycles' transparent film leaves the background at
# exactly 0); colour variance is taken over the pixels at least half opaque, so edges do not dilute it.
OPAQUE_ALPHA = 128
# Flagged "mostly_transparent" when fewer than half the views show any pixel, when the silhouettes cover under
# 0.2 % of all pixels on average (a normal object fills 5-50 % of a view: the cameras frame the unit cube), or when
# the silhouette's pixels are on average under 20 % opaque (antialiased edges of thin parts stay well above that).
MIN_VIEWS_COVERED = 0.5
MIN_ALPHA_COVERAGE = 0.002
MIN_OPACITY = 0.2
# Flagged "flat" when the smallest bound-box extent is under 1 % of the largest (a plane, a single triangle, a decal).
FLAT_RATIO = 0.01
# A triangle has an area when it exceeds 1e-12 of the squared largest extent (float32 coordinates round to ~1e-7).
MIN_RELATIVE_AREA = 1e-12
# Flagged "uniform_colour" when the visible pixels' colour standard deviation (0-255, mean over R, G, B and all
# views) is under 2: a flat silhouette, e.g. white because every texture is missing. Shading alone gives far more.
MIN_COLOUR_STD = 2.0

# What each flag means, as the report's summary says it.
FLAGS = {
    "mostly_transparent": f"fewer than {MIN_VIEWS_COVERED:.0%} of the views show it, it covers under "
                          f"{MIN_ALPHA_COVERAGE:.1%} of their pixels, or it is under {MIN_OPACITY:.0%} opaque",
    "textures_missing": "the file names images that could not be read; its materials render without them",
    "uniform_colour": f"its visible pixels vary in colour by under {MIN_COLOUR_STD:g}/255 (a flat silhouette)",
    "flat": f"its smallest extent is under {FLAT_RATIO:.0%} of its largest (no volume)",
}

# metadata.csv columns of the checks (empty where not measured, e.g. with --no-render), in this order.
COLUMNS = ("views_covered", "alpha_coverage", "opacity", "colour_std", "flatness", "images_missing", "quality_flags")
FLAG_SEPARATOR = ";"


def nonfinite_refusal(bad: int, total: int) -> str | None:
    if bad:
        return (f"non-finite geometry: {bad} of {total} vertices have infinite or NaN coordinates "
                f"(the object cannot be placed or voxelised)")
    return None


def geometry_refusal(vertices: np.ndarray, faces: np.ndarray) -> str | None:
    """Why this geometry cannot be trained on (non-finite coordinates, no triangle with an area), else None."""
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    reason = nonfinite_refusal(int((~np.isfinite(v).all(axis=1)).sum()), len(v))
    if reason:
        return reason
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(f) == 0 or len(v) == 0:
        return "degenerate geometry: no triangles"
    extent = float((v.max(0) - v.min(0)).max())
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if extent <= 0 or not (area > MIN_RELATIVE_AREA * extent * extent).any():
        return f"degenerate geometry: none of its {len(f)} triangles has a non-zero area"
    return None


def flatness(vertices: np.ndarray) -> float:
    """Smallest over largest bound-box extent (0 for a plane, 1 for a cube); finite vertices assumed."""
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    extent = v.max(0) - v.min(0)
    return float(extent.min() / extent.max()) if extent.max() > 0 else 0.0


def render_stats(views: list[np.ndarray]) -> dict:
    """Coverage and colour of RGBA uint8 renders: `views_covered` (fraction of views with any pixel of alpha > 0),
    `alpha_coverage` (mean alpha over every pixel of every view, 0-1), `opacity` (mean alpha of the pixels with
    alpha > 0, 0-1), `colour_std` (standard deviation of the at least half opaque pixels' R, G, B over all views,
    0-255, the channels' mean; 0 when there are none)."""
    covered, alpha_sum, pixels, silhouette, rgb = 0, 0.0, 0, 0, []
    for view in views:
        view = np.asarray(view)
        alpha = view[..., 3]
        inside = int((alpha > 0).sum())
        covered += inside > 0
        silhouette += inside
        alpha_sum += float(alpha.sum(dtype=np.float64)) / 255.0
        pixels += alpha.size
        rgb.append(view[alpha >= OPAQUE_ALPHA][:, :3])
    visible = np.concatenate(rgb) if rgb else np.zeros((0, 3), np.uint8)
    std = float(visible.astype(np.float64).std(axis=0).mean()) if len(visible) > 1 else 0.0
    return {
        "views_covered": round(covered / len(views), 4) if views else 0.0,
        "alpha_coverage": round(alpha_sum / pixels, 6) if pixels else 0.0,
        "opacity": round(alpha_sum / silhouette, 4) if silhouette else 0.0,
        "colour_std": round(std, 3),
    }


def render_refusal(stats: dict, views: int) -> str | None:
    if stats["views_covered"] == 0:
        return (f"nothing visible: all {views} condition renders are empty (alpha 0 everywhere; a fully "
                f"transparent material?)")
    return None


def flags_of(measured: dict) -> list[str]:
    """The doubtful-value flags of measured values (keys of COLUMNS; missing keys are not judged)."""
    flags = []
    if "views_covered" in measured and (measured["views_covered"] < MIN_VIEWS_COVERED
                                        or measured["alpha_coverage"] < MIN_ALPHA_COVERAGE
                                        or measured["opacity"] < MIN_OPACITY):
        flags.append("mostly_transparent")
    if measured.get("images_missing"):
        flags.append("textures_missing")
    if "colour_std" in measured and measured["colour_std"] < MIN_COLOUR_STD:
        flags.append("uniform_colour")
    if "flatness" in measured and measured["flatness"] < FLAT_RATIO:
        flags.append("flat")
    return flags


def load_views(render_dir: Path) -> list[np.ndarray]:
    from PIL import Image

    views = []
    for path in sorted(Path(render_dir).glob("[0-9][0-9][0-9].png")):
        with Image.open(path) as im:
            views.append(np.asarray(im.convert("RGBA")))
    return views


def assess(dump_dir: Path, render_dir: Path | None, images_missing: int = 0) -> tuple[str | None, dict]:
    """(refusal reason or None, the COLUMNS values) of one object's dump and renders."""
    with np.load(Path(dump_dir) / "mesh.npz", allow_pickle=False) as mesh:
        vertices, faces = mesh["vertices"], mesh["faces"]
    reason = geometry_refusal(vertices, faces)
    if reason:
        return reason, {}
    measured: dict = {"flatness": round(flatness(vertices), 6), "images_missing": int(images_missing)}
    if render_dir is not None:
        views = load_views(render_dir)
        stats = render_stats(views)
        reason = render_refusal(stats, len(views))
        if reason:
            return reason, {}
        measured.update(stats)
    flags = flags_of(measured)
    row = {c: measured.get(c, "") for c in COLUMNS}
    row["quality_flags"] = FLAG_SEPARATOR.join(flags)
    return None, row


def flags_in(row: dict) -> list[str]:
    """The flags a metadata row (or report entry) carries."""
    text = row.get("quality_flags") or ""
    return [f for f in text.split(FLAG_SEPARATOR) if f]
