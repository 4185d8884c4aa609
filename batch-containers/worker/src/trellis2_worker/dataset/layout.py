"""Names and shapes of the preprocessed dataset (the contract between `preprocess` and `train`).

The directory names are the reference data toolkit's (docs/data-formats.md#dataset-layout), so a dataset unzipped
next to the reference training code reads as one of its roots.
"""

from __future__ import annotations

import re

from trellis2_worker.ingest.quality import COLUMNS as QUALITY_COLUMNS
from trellis2_worker.ingest.rules import PREPARED_DATASET_FILE

FORMAT_VERSION = 1

# Reference encoder checkpoint names; the latent directories are named after them (docs/data-formats.md#dataset-layout).
SS_ENCODER_NAME = "ss_enc_conv3d_16l8_fp16"
SHAPE_ENCODER_NAME = "shape_enc_next_dc_f16c32_fp16"
TEX_ENCODER_NAME = "tex_enc_next_dc_f16c32_fp16"

SS_GRID = 64  # occupancy grid the SS encoder consumes
SS_LATENT_SHAPE = (8, 16, 16, 16)
LATENT_DOWNSAMPLE = 16  # SC-VAE encoders: 4 stride-2 stages
RESOLUTIONS = (512, 1024)

INFO_FILE = PREPARED_DATASET_FILE  # named by the archive rules: it is what marks an archive as a dataset
METADATA_FILE = "metadata.csv"
RENDERS_DIR = "renders_cond"
TRANSFORMS_FILE = "transforms.json"

SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def ss_dir() -> str:
    return f"ss_latents/{SS_ENCODER_NAME}_{SS_GRID}"


def shape_dir(resolution: int) -> str:
    return f"shape_latents/{SHAPE_ENCODER_NAME}_{resolution}"


def pbr_dir(resolution: int) -> str:
    return f"pbr_latents/{TEX_ENCODER_NAME}_{resolution}"


def ss_path(sha: str) -> str:
    return f"{ss_dir()}/{sha}.npz"


def shape_path(sha: str, resolution: int) -> str:
    return f"{shape_dir(resolution)}/{sha}.npz"


def pbr_path(sha: str, resolution: int) -> str:
    return f"{pbr_dir(resolution)}/{sha}.npz"


def render_path(sha: str, view: int) -> str:
    return f"{RENDERS_DIR}/{sha}/{view:03d}.png"


def transforms_path(sha: str) -> str:
    return f"{RENDERS_DIR}/{sha}/{TRANSFORMS_FILE}"


# Reference column order for the columns this tool knows (docs/data-formats.md#metadata-csv), then this tool's
# data-quality columns (named in ingest/quality.py, docs/rendering.md#data-quality); extra manifest columns follow.
METADATA_COLUMNS = (
    "sha256",
    "file_identifier",
    "local_path",
    "aesthetic_score",
    "num_faces",
    "num_vertices",
    "num_basecolor_tex",
    "num_metallic_tex",
    "num_roughness_tex",
    "num_alpha_tex",
    "cond_rendered",
    "dual_grid_converted",
    "dual_grid_size",
    "pbr_voxelized",
    "num_pbr_voxels",
    "ss_latent_encoded",
    "shape_latent_encoded",
    "shape_latent_tokens",
    "pbr_latent_encoded",
    "pbr_latent_tokens",
    *QUALITY_COLUMNS,
)


def expected_files(info: dict) -> set[str]:
    """Every file a dataset with this `prepared_dataset.json` must hold, and the only ones it may hold."""
    res = int(info["resolution"])
    names = {INFO_FILE, METADATA_FILE}
    for o in info["objects"]:
        sha = o["sha256"]
        names |= {ss_path(sha), shape_path(sha, res), pbr_path(sha, res), transforms_path(sha)}
        names |= {render_path(sha, i) for i in range(o["renders"])}
    return names
