"""Shared test fixtures: where ../shared lies (CI puts it beside the clone), the tiny base, one torch thread."""

import os
from pathlib import Path

import pytest

# One compute thread per process for the whole run, this one and the workers it starts (set before any test module
# imports torch; an exported value wins): the models and assets here are far too small to gain from threads, and on
# a 2-core machine shared with other work, spinning OpenMP threads make them slower, not faster (encoding three real
# objects at 512, runs interleaved at load 2-5: 59 s with two threads, 40 s with one). Blender gets --threads itself.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

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
