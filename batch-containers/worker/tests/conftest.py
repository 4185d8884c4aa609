"""Shared test fixtures: where ../shared lies (CI puts it beside the clone), the tiny base, one torch thread."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared is missing: expected it at {SHARED}")
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """For modules that run the tiny models (`pytestmark = pytest.mark.usefixtures("one_thread")`): they are far too
    small to gain from threads, and on a busy machine spinning threads cost 10x."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def base():
    """The tiny base (load_base caches it per process)."""
    from trellis2_worker.models import load_base

    return load_base("tiny")
