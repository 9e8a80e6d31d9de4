"""Fair share on the embedded backend: one user's 10,000 queued jobs do not starve another
user's 10 on the same queue (the dispatch rounds are real acquires through the handlers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.fairshare import OwnerLoad
from skypanda.domain.models import JobReport, Queue, Resources, TaskSpec
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import LOADS_TTL_S, Services
from skypanda.handlers.submit import submit
from skypanda.runtime.router import Router
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    queue = Queue(name="local", shares={"vip": 3.0})
    with sqlite_services(tmp_path, FakeClock(), queue) as services:
        services.memory.loads.clear()  # a fresh queue: no loads cached
        yield services


def _rounds_until_started(
    svc: Services, small: str, pilots: int = 2, per_acquire: int = 64, max_rounds: int = 50
) -> tuple[int, list[int]]:
    """Dispatch rounds (every pilot acquires, runs and finishes its jobs) until all of
    `small`'s jobs started; also how many of them started in each round."""
    ids = [
        dispatch.register(svc, pilot_id=None, queue="local", host="h", pid=None,
                          resources=Resources(), version="v")[0].id
        for _ in range(pilots)
    ]  # fmt: skip
    per_round: list[int] = []
    for round_no in range(1, max_rounds + 1):
        svc.memory.loads.clear()  # each round is a new second: loads read afresh
        started = 0
        for pilot in ids:
            jobs = dispatch.acquire(svc, pilot, per_acquire)
            started += sum(1 for j in jobs if j.owner == small)
            reports = [
                JobReport(job_id=j.id, attempt=j.attempt, status=JobStatus.FINISHED, exit_code=0)
                for j in jobs
            ]
            dispatch.update(svc, pilot, reports, {})
        per_round.append(started)
        if sum(per_round) == 10:
            return round_no, per_round
    raise AssertionError(f"the small user's jobs did not all start: {per_round}")


def test_ten_jobs_are_not_starved_by_ten_thousand(svc: Services) -> None:
    # Given a user with 10,000 queued jobs, submitted first, and another with 10, after
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    submit(svc, TaskSpec(name="flood", command=["true"], n_jobs=10_000), owner="alice")
    Router(Pipeline(svc), svc.store).drain()  # split: alice's jobs are older
    clock.advance(1.0)
    submit(svc, TaskSpec(name="few", command=["true"], n_jobs=10), owner="bob")
    Router(Pipeline(svc), svc.store).drain()

    # When pilots acquire in rounds
    rounds, per_round = _rounds_until_started(svc, "bob")

    # Then all of bob's jobs start in the first round (without fair share: after ~80 rounds)
    assert rounds == 1, per_round
    # And alice's jobs still went by priority then age: the first ones she got were her first
    alice = svc.store.list_jobs(svc.store.list_tasks()[-1].id, limit=20)
    assert all(j.status is JobStatus.FINISHED for j in alice[:20])


def test_shares_weight_the_split_and_priorities_order_jobs_within_a_user(svc: Services) -> None:
    # Given three users with plenty waiting; vip has share 3 on this queue; bob's second
    # task has a higher priority than his first
    submit(svc, TaskSpec(name="a", command=["true"], n_jobs=500), owner="alice")
    submit(svc, TaskSpec(name="v", command=["true"], n_jobs=500), owner="vip")
    low = submit(svc, TaskSpec(name="b1", command=["true"], n_jobs=500), owner="bob")
    high = submit(svc, TaskSpec(name="b2", command=["true"], n_jobs=100, priority=10), owner="bob")
    Router(Pipeline(svc), svc.store).drain()
    pilot = dispatch.register(svc, pilot_id=None, queue="local", host="h", pid=None,
                              resources=Resources(), version="v")[0].id  # fmt: skip

    # When one pilot acquires 100 jobs
    jobs = dispatch.acquire(svc, pilot, 100)

    # Then vip gets three times alice's and bob's share, and bob's jobs come from his
    # higher-priority task first
    by_owner = {o: sum(1 for j in jobs if j.owner == o) for o in ("alice", "vip", "bob")}
    assert by_owner == {"alice": 20, "vip": 60, "bob": 20}
    assert {j.task_id for j in jobs if j.owner == "bob"} == {high.id}
    assert low.id not in {j.task_id for j in jobs}


def test_loads_are_read_only_when_several_owners_have_jobs_waiting(
    svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given alice's jobs alone waiting, and the store's reads of owner loads watched
    read: list[str] = []
    loads = svc.store.owner_loads

    def watched(queue: str) -> dict[str, OwnerLoad]:
        read.append(queue)
        return loads(queue)

    monkeypatch.setattr(svc.store, "owner_loads", watched)
    submit(svc, TaskSpec(name="a", command=["true"], n_jobs=20), owner="alice")
    Router(Pipeline(svc), svc.store).drain()
    pilot = dispatch.register(svc, pilot_id=None, queue="local", host="h", pid=None,
                              resources=Resources(), version="v")[0].id  # fmt: skip

    # When a pilot acquires, Then it gets alice's jobs with no loads read: nothing to share
    assert [j.owner for j in dispatch.acquire(svc, pilot, 8)] == ["alice"] * 8
    assert read == []

    # And once bob's jobs wait too (and the last second's answer has expired), the next
    # acquire reads the loads and shares: bob, running none, comes first
    submit(svc, TaskSpec(name="b", command=["true"], n_jobs=5), owner="bob")
    Router(Pipeline(svc), svc.store).drain()
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    clock.advance(LOADS_TTL_S + 0.1)
    jobs = dispatch.acquire(svc, pilot, 8)
    assert read == ["local"]
    assert sorted(j.owner for j in jobs) == ["alice"] * 3 + ["bob"] * 5
