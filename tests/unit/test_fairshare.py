"""Fair share between owners on a queue: pure allocation of one acquire's jobs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skypanda.domain.fairshare import OwnerLoad, allocate


@pytest.mark.parametrize(
    ("n", "loads", "shares", "expected"),
    [
        # two owners, nothing running: an even split, whatever their backlogs
        (
            64,
            {"big": OwnerLoad(0, 10_000), "small": OwnerLoad(0, 10)},
            {},
            {"big": 54, "small": 10},
        ),
        (10, {"big": OwnerLoad(0, 10_000), "small": OwnerLoad(0, 10)}, {}, {"big": 5, "small": 5}),
        # the owner running more gets less until both are level
        (10, {"a": OwnerLoad(8, 100), "b": OwnerLoad(0, 100)}, {}, {"a": 1, "b": 9}),
        # shares weight the split: b counts double
        (9, {"a": OwnerLoad(0, 100), "b": OwnerLoad(0, 100)}, {"b": 2.0}, {"a": 3, "b": 6}),
        # an owner with share 0 gets nothing here (the caller fills leftovers from anyone)
        (4, {"a": OwnerLoad(0, 100), "b": OwnerLoad(0, 100)}, {"b": 0.0}, {"a": 4}),
        # owners with nothing waiting get nothing; fewer waiting than asked: all of them
        (50, {"a": OwnerLoad(5, 0), "b": OwnerLoad(0, 3)}, {}, {"b": 3}),
        (5, {}, {}, {}),
    ],
)
def test_allocation(
    n: int, loads: dict[str, OwnerLoad], shares: dict[str, float], expected: dict[str, int]
) -> None:
    assert allocate(n, loads, shares) == expected


loads_st = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.builds(OwnerLoad, st.integers(0, 50), st.integers(0, 200)),
    max_size=4,
)


@given(n=st.integers(0, 1000), loads=loads_st)
def test_allocation_properties(n: int, loads: dict[str, OwnerLoad]) -> None:
    given_ = allocate(n, loads, {})
    # never more than asked, nor than an owner has waiting; as much as possible
    assert sum(given_.values()) == min(n, sum(load.waiting for load in loads.values()))
    assert all(0 < k <= loads[o].waiting for o, k in given_.items())
    # level: an owner that got jobs ends no more than one above any owner still waiting
    after = {o: loads[o].running + given_.get(o, 0) for o in loads}
    for o in given_:
        for other, load in loads.items():
            if load.waiting > given_.get(other, 0):
                assert after[o] <= after[other] + 1
