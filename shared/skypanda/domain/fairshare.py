"""Fair share on a queue: which owners' jobs a pilot's acquire takes.

Pure. Each owner with jobs waiting gets a share of the queue (its weight from the queue's
`shares`, 1 by default); an acquire of `n` jobs is handed out one job at a time to the owner
whose running jobs (plus those already given in this acquire) are fewest per unit of share,
ties by name. So one owner's 100,000 queued jobs cannot starve another's 10: the small owner
is below its share from the first acquire on. Within an owner, jobs still go by priority,
then age (the store's order).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class OwnerLoad:
    """An owner's jobs on one queue: how many run (held by pilots), how many wait."""

    running: int
    waiting: int


def allocate(
    n: int, loads: Mapping[str, OwnerLoad], shares: Mapping[str, float], default: float = 1.0
) -> dict[str, int]:
    """How many of `n` jobs to take from each owner (only owners with jobs waiting; never more
    than an owner has waiting). The total is min(n, all waiting)."""
    heap: list[tuple[float, str]] = []
    for owner, load in loads.items():
        if load.waiting > 0:
            share = shares.get(owner, default)
            if share > 0:
                heapq.heappush(heap, (load.running / share, owner))
    given: dict[str, int] = {}
    while n > 0 and heap:
        _, owner = heapq.heappop(heap)
        load, share = loads[owner], shares.get(owner, default)
        given[owner] = given.get(owner, 0) + 1
        n -= 1
        if given[owner] < load.waiting:
            heapq.heappush(heap, ((load.running + given[owner]) / share, owner))
    return given
