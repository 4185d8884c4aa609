"""The held-out split: deterministic from the objects' hashes, the documented size, disjoint from what trains, and
stable when objects are added or reordered."""

from __future__ import annotations

import hashlib

import pytest

from trellis2_worker.errors import InputError
from trellis2_worker.train.split import MIN_OBJECTS_TO_HOLD_OUT, held_out_count, held_out_split


def shas(n: int, salt: str = "") -> list[str]:
    return [hashlib.sha256(f"object {salt}{i}".encode()).hexdigest() for i in range(n)]


@pytest.mark.parametrize("n, held", [(1, 0), (4, 0), (5, 1), (10, 1), (11, 2), (30, 3), (188, 19), (1000, 100)])
def test_ten_percent_rounded_up_and_none_below_five(n, held):
    split = held_out_split(shas(n))
    assert len(split.held_out) == held == held_out_count(n)
    assert len(split.train) == n - held
    assert (split.note is None) == (held > 0)


def test_the_split_is_disjoint_covers_the_dataset_and_keeps_its_order():
    objects = shas(40)
    split = held_out_split(objects)
    assert not set(split.train) & set(split.held_out)
    assert set(split.train) | set(split.held_out) == set(objects)
    assert list(split.train) == [s for s in objects if s in split.train]


def test_the_same_objects_are_held_out_whatever_the_order_or_the_run():
    objects = shas(50)
    first = held_out_split(objects)
    assert held_out_split(list(reversed(objects))).held_out == tuple(reversed(first.held_out))
    assert set(held_out_split(objects).held_out) == set(first.held_out)


def test_adding_objects_moves_only_what_the_newcomers_displace():
    # Ranked by hash: an old held-out object leaves only when a new object ranks below it (the count grows by one).
    old_objects, added = shas(100), shas(10, salt="new ")
    old, new = held_out_split(old_objects), held_out_split(old_objects + added)
    newcomers = len(set(new.held_out) & set(added))
    assert len(set(old.held_out) - set(new.held_out)) == max(0, newcomers - 1)
    assert len(new.held_out) == 11 and not set(new.held_out) & set(new.train)


def test_small_datasets_and_fraction_zero_say_why_nothing_is_held_out():
    small = held_out_split(shas(MIN_OBJECTS_TO_HOLD_OUT - 1))
    assert small.held_out == () and "fewer than the 5" in small.note
    assert held_out_split(shas(20), fraction=0).held_out == ()
    assert "fraction is 0" in held_out_split(shas(20), fraction=0).note
    assert len(held_out_split(shas(20), fraction=0.25).held_out) == 5


@pytest.mark.parametrize("fraction", [-0.1, 0.6, float("nan")])
def test_a_bad_fraction_is_refused(fraction):
    with pytest.raises(InputError, match="held-out-fraction"):
        held_out_split(shas(10), fraction=fraction)
