"""The dataset bounds Java's inspection mirrors (tests/dataset_bounds_cases.json) are the worker's own."""

import json
from pathlib import Path

import pytest

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


def _case_info(case: dict) -> dict:
    """The case's prepared_dataset.json, built as the table's `_about` says (Java's test builds the same)."""
    from trellis2_worker.dataset import layout

    info = {"format_version": layout.FORMAT_VERSION, "resolution": 512, "base_model": "tiny",
            "objects": [{"sha256": f"{i:064x}", "shape_tokens": 100, "pbr_tokens": 100, "renders": 16}
                        for i in range(case["object_count"])]}
    info.update(case.get("info", {}))
    info["objects"][0].update(case.get("object", {}))
    return info


@pytest.mark.parametrize("case", json.loads(Path(__file__).with_name("dataset_bounds_cases.json").read_text())["cases"],
                         ids=lambda c: c["id"])
def test_the_worker_gives_the_tables_verdict(case):
    """Same verdict as Java's inspection on every case: a dataset Prepare accepts is one the worker reads, and back."""
    from trellis2_worker.dataset.reading import check_info
    from trellis2_worker.errors import InputError

    if "refused" in case:
        with pytest.raises(InputError):
            check_info(_case_info(case))
    else:
        check_info(_case_info(case))
