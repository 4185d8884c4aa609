"""Latents and the preprocessed dataset: encode O-Voxels into TRELLIS.2 latents, write / read / validate the dataset zip.

Readers (the train stage): `open_dataset(zip_or_dir) -> Dataset` with `.resolution`, `.base_model`, `.objects`
(sha256 keys) and per-object `ss_latent`, `shape_latent`, `pbr_latent`, `renders`.
"""

from trellis2_worker.latents import layout
from trellis2_worker.latents.dataset import (
    Dataset,
    DatasetStager,
    SparseLatent,
    classify_archive,
    open_dataset,
    validate_dataset,
)

__all__ = [
    "Dataset",
    "DatasetStager",
    "SparseLatent",
    "classify_archive",
    "layout",
    "open_dataset",
    "validate_dataset",
]
