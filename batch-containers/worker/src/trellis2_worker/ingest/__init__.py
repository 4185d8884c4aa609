"""Ingest stage: input archive → safe extraction → discovery → Blender pass (mesh/PBR dump, condition renders).

Public surface: `ingest(input_uri, out_dir, ...) -> report dict`, plus the pieces other stages and tests use; the
data-quality checks, their thresholds and metadata columns are `ingest.quality` (docs/rendering.md#data-quality).
"""

from trellis2_worker.ingest.archive import extract_zip, recorded_input
from trellis2_worker.ingest.discovery import SUPPORTED_FORMATS, discover
from trellis2_worker.ingest.pipeline import METADATA_COLUMNS, ingest
from trellis2_worker.ingest.samples import make_samples

__all__ = ["METADATA_COLUMNS", "SUPPORTED_FORMATS", "discover", "extract_zip", "ingest", "make_samples", "recorded_input"]
