"""Dispatch handler rules that need a store but no server: on the embedded SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import TaskRef
from skypanda.domain.models import Job, JobReport, Queue, Resources, TaskSpec
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch, split
from skypanda.handlers.dispatch import FORGOTTEN_AFTER_S
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.wire.codes import ErrorCode
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def _pilot_with_jobs(svc: Services, n: int) -> tuple[str, list[str]]:
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=n), owner="u")
    split.handle(svc, TaskRef(task_id=task.id))
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1, resources=Resources(), version="v"
    )
    return pilot.id, [j.id for j in dispatch.acquire(svc, pilot.id, n)]


def test_jobs_a_pilot_never_received_are_requeued_without_counting(svc: Services) -> None:
    # Given a pilot whose acquire reply was lost: the server sent it two jobs it never got
    pilot_id, sent = _pilot_with_jobs(svc, 2)
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    # When it heartbeats, saying it holds nothing, soon after: nothing happens yet
    dispatch.heartbeat(svc, pilot_id, [])
    assert {svc.store.get_job(j).status for j in sent} == {JobStatus.SENT}
    # When it heartbeats again once the grace period has passed
    clock.t += FORGOTTEN_AFTER_S + 1
    dispatch.heartbeat(svc, pilot_id, [])
    # Then both jobs are activated again as attempt 2, the lost attempt not counted
    for job_id in sent:
        job = svc.store.get_job(job_id)
        assert (job.status, job.attempt, job.failures) == (JobStatus.ACTIVATED, 2, 0)
        assert svc.store.attempts(job_id)[0].error_code == ErrorCode.NEVER_DELIVERED


def test_a_pilot_that_does_not_say_what_it_holds_keeps_its_jobs(svc: Services) -> None:
    pilot_id, sent = _pilot_with_jobs(svc, 1)
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    clock.t += FORGOTTEN_AFTER_S + 1
    dispatch.heartbeat(svc, pilot_id, None)
    assert svc.store.get_job(sent[0]).status is JobStatus.SENT


def test_a_held_job_that_is_no_longer_the_pilots_is_killed(svc: Services) -> None:
    pilot_id, sent = _pilot_with_jobs(svc, 1)
    reply = dispatch.heartbeat(svc, pilot_id, [*sent, "someone-elses-job"])
    assert reply.commands == [{"kill": "someone-elses-job"}]


def test_a_push_pilot_acquires_exactly_its_job_once(svc: Services) -> None:
    # Given a task of three activated jobs and a pilot launched for the second one
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=3), owner="u")
    split.handle(svc, TaskRef(task_id=task.id))
    target = svc.store.list_jobs(task.id)[1]
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1, resources=Resources(), version="v"
    )

    # When it acquires its job (asking for more than one changes nothing)
    got = dispatch.acquire(svc, pilot.id, 5, job_id=target.id)

    # Then it gets exactly that job, sent to it, with an attempt record; the others stay queued
    assert [j.id for j in got] == [target.id]
    stored = svc.store.get_job(target.id)
    assert (stored.status, stored.pilot_id) == (JobStatus.SENT, pilot.id)
    assert [a.status for a in svc.store.attempts(target.id)] == [JobStatus.SENT]
    assert svc.store.count_activated("local") == 2
    # And asking again (a retried request, or another push pilot) gets nothing
    assert dispatch.acquire(svc, pilot.id, 1, job_id=target.id) == []


def test_a_push_pilot_cannot_take_a_job_that_does_not_fit_it(svc: Services) -> None:
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=1), owner="u")
    split.handle(svc, TaskRef(task_id=task.id))
    job = svc.store.list_jobs(task.id)[0]
    small = Resources(memory_mb=100, cores=1)
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1, resources=small, version="v"
    )
    with pytest.raises(InvalidInput, match="needs 2000 MB x 1 cores; the pilot offers 100 MB"):
        dispatch.acquire(svc, pilot.id, 1, job_id=job.id)
    assert svc.store.get_job(job.id).status is JobStatus.ACTIVATED


def test_past_30_percent_out_of_memory_the_tasks_queued_jobs_ask_for_more(
    svc: Services,
) -> None:
    # Given a task of 10 jobs of 200 MB; a pilot took 4 of them
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=10,
                                resources=Resources(memory_mb=200)), owner="u")  # fmt: skip
    split.handle(svc, TaskRef(task_id=task.id))
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1, resources=Resources(), version="v"
    )
    taken = dispatch.acquire(svc, pilot.id, 4)

    def oom(jobs: list[Job]) -> None:
        reports = [
            JobReport(job_id=j.id, attempt=j.attempt, status=JobStatus.FAILED,
                      error_code=ErrorCode.OUT_OF_MEMORY, error_diag="too big")
            for j in jobs
        ]  # fmt: skip
        dispatch.update(svc, pilot.id, reports, {})

    # When 3 of them run out of memory (30 %: not more than 30 %), Then only those ask for more
    oom(taken[:3])
    memory = {j.id: j.resources.memory_mb for j in svc.store.list_jobs(task.id)}
    assert sorted(memory.values()) == [200] * 7 + [300] * 3

    # When a 4th does (40 %), Then every queued job of the task asks for 300 MB
    oom(taken[3:])
    by_status = {(j.status, j.resources.memory_mb) for j in svc.store.list_jobs(task.id)}
    assert by_status == {(JobStatus.ACTIVATED, 300)}


def test_out_of_memory_at_the_queues_maximum_moves_the_job_to_a_bigger_queue(
    svc: Services,
) -> None:
    # Given a job asking for all of `local`'s 4000 MB, and a queue `big` of 16000 MB
    svc.store.put_queue(Queue(name="big", pilot_resources=Resources(memory_mb=16000)))
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=1,
                                resources=Resources(memory_mb=4000)), owner="u")  # fmt: skip
    split.handle(svc, TaskRef(task_id=task.id))
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=1,
        resources=Resources(memory_mb=4000), version="v",
    )  # fmt: skip
    (job,) = dispatch.acquire(svc, pilot.id, 1)

    # When it runs out of memory
    report = JobReport(
        job_id=job.id, attempt=1, status=JobStatus.FAILED,
        error_code=ErrorCode.OUT_OF_MEMORY, error_diag="payload used 4100 MB",
    )  # fmt: skip
    dispatch.update(svc, pilot.id, [report], {})

    # Then its next attempt waits on `big` with 1.5 times the memory, and the reason says so
    moved = svc.store.get_job(job.id)
    assert (moved.status, moved.queue, moved.resources.memory_mb) == (
        JobStatus.ACTIVATED,
        "big",
        6000,
    )
    (first,) = svc.store.attempts(job.id)
    assert first.error_diag.endswith("rebrokered to queue big with 6000 MB")


def test_a_draining_pilot_gets_no_new_job(svc: Services) -> None:
    # Given a pilot holding one job, with two more queued, asked to drain
    pilot_id, _ = _pilot_with_jobs(svc, 1)
    submit(svc, TaskSpec(name="more", command=["true"], n_jobs=2), owner="u")
    for task in svc.store.list_tasks():
        split.handle(svc, TaskRef(task_id=task.id))
    dispatch.drain(svc, pilot_id)
    # When it asks for work before its next heartbeat tells it to drain, Then it gets none
    assert dispatch.acquire(svc, pilot_id, 8) == []
    assert svc.store.count_activated("local") == 2
