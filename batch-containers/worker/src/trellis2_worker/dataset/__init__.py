"""The preprocessed dataset zip: the contract between `preprocess` (which writes it) and `train` (which reads it).

Its own package, below both stages, so that training reads datasets without importing the preprocessing stage.
Split by what is done with a dataset: `layout` (names and shapes), `limits` (hard bounds on what a handed-back
dataset may declare), `archive` (the files of a zip or directory, names checked), `reading` (`open_dataset`),
`validation` (`validate_dataset`, before reuse), `writing` (`DatasetStager`). Format: docs/data-formats.md#dataset-layout.

Readers (the train stage): `open_dataset(zip_or_dir) -> Dataset` with `.resolution`, `.base_model`, `.objects`
(sha256 keys) and per-object `ss_latent`, `shape_latent`, `pbr_latent`, `renders`.
"""

from trellis2_worker.dataset import layout, limits
from trellis2_worker.dataset.archive import classify_archive
from trellis2_worker.dataset.reading import Dataset, SparseLatent, open_dataset
from trellis2_worker.dataset.validation import validate_dataset
from trellis2_worker.dataset.writing import DatasetStager, save_sparse_latent, save_ss_latent

__all__ = [
    "Dataset",
    "DatasetStager",
    "SparseLatent",
    "classify_archive",
    "layout",
    "limits",
    "open_dataset",
    "save_sparse_latent",
    "save_ss_latent",
    "validate_dataset",
]
