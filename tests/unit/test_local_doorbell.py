"""The local doorbell (adapters.local.doorbell): one wake per job that became ready, not a
wake of every waiter of the queue (a thundering herd of looks for one job)."""

from __future__ import annotations

import threading
from concurrent.futures import Future

from skypanda.adapters.local.doorbell import LocalDoorbell
from tests.e2e.conftest import wait_until


def _waiters(bell: LocalDoorbell, queue: str, n: int) -> list[Future[bool]]:
    """n acquires waiting on `queue` (a minute each), once all of them wait."""
    futures: list[Future[bool]] = []
    for _ in range(n):
        future: Future[bool] = Future()
        seen = bell.seen(queue)
        threading.Thread(
            target=lambda f=future, s=seen: f.set_result(bell.wait(queue, s, 60)), daemon=True
        ).start()
        futures.append(future)
    wait_until(lambda: bell.waiting == n, 30, f"{n} waiters")
    return futures


def _woken(futures: list[Future[bool]], n: int) -> list[Future[bool]]:
    wait_until(lambda: sum(f.done() for f in futures) >= n, 30, f"{n} woken")
    return [f for f in futures if f.done()]


def test_one_job_wakes_one_of_several_waiters() -> None:
    # Given four acquires waiting on q
    bell = LocalDoorbell(max_waiters=8)
    waits = _waiters(bell, "q", 4)
    # When one job becomes ready on q
    bell.ring({"q": 1})
    # Then one wait returns True, and the three others still wait (no herd)
    (woken,) = _woken(waits, 1)
    assert woken.result() is True
    assert bell.waiting == 3
    assert sum(f.done() for f in waits) == 1
    # When two more jobs become ready (named once per job), Then two more wake
    bell.ring(["q", "q"])
    assert len(_woken(waits, 3)) == 3
    assert bell.waiting == 1
    # When more jobs are ready than waiters, Then the last wakes, and no wake is kept for
    # later: a new waiter (which looked after the ring) waits for the next ring
    bell.ring({"q": 5})
    assert len(_woken(waits, 4)) == 4 and all(f.result() for f in waits)
    assert bell.waiting == 0
    late = bell.wait("q", bell.seen("q"), 0.01)
    assert late is False


def test_a_ring_between_the_look_and_the_wait_is_not_lost_and_close_ends_every_wait() -> None:
    bell = LocalDoorbell(max_waiters=8)
    seen = bell.seen("q")
    bell.ring({"q": 1})  # nobody waits yet: the ring counts, but no wake is owed
    assert bell.wait("q", seen, 60) is True  # this waiter looked before it: at once
    waits = _waiters(bell, "q", 3)
    bell.ring({"q": 0, "other": 2})  # nothing ready on q: nobody on q wakes
    assert bell.waiting == 3 and not any(f.done() for f in waits)
    bell.close()
    assert [f.result(timeout=30) for f in waits] == [False, False, False]
    assert bell.wait("q", bell.seen("q"), 60) is False
