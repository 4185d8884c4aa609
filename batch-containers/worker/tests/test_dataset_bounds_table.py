"""The dataset bounds Java's inspection mirrors (tests/dataset_bounds_cases.json) are the worker's own."""

import json
from pathlib import Path

from trellis2_worker.dataset import limits
from trellis2_worker.ingest import rules


def test_the_shared_table_holds_the_worker_bounds():
    bounds = json.loads(Path(__file__).with_name("dataset_bounds_cases.json").read_text())["bounds"]
    assert bounds == {
        "max_objects": limits.MAX_OBJECTS,
        "max_tokens": {str(r): n for r, n in limits.MAX_TOKENS.items()},
        "max_renders": limits.MAX_RENDERS,
        "max_info_bytes": limits.MAX_INFO_BYTES,
    }
    # prepared_dataset.json's size cap is archive_rules.json's, which Java reads directly.
    assert limits.MAX_INFO_BYTES == rules.PREPARED_DATASET_MAX_BYTES
