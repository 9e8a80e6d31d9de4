"""A task split by events runs through submit and split on the embedded SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import TaskRef
from skypanda.domain.models import Queue, TaskSpec
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.handlers import split
from skypanda.handlers.services import Services
from skypanda.handlers.submit import MAX_JOBS_PER_TASK, submit
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def test_a_task_split_by_events_becomes_jobs_over_consecutive_event_ranges(
    svc: Services,
) -> None:
    # Given an event-generation task: 250 events from event 1000, 100 per job
    spec = TaskSpec(
        name="evgen",
        command=["gen", "--first={first_event}", "--n={n_events}", "--seed={index}"],
        n_events=250,
        events_per_job=100,
        first_event=1000,
    )

    # When it is submitted and split (twice: the event may be delivered again)
    task = submit(svc, spec, owner="u")
    assert task.n_jobs == 3
    split.handle(svc, TaskRef(task_id=task.id))
    split.handle(svc, TaskRef(task_id=task.id))

    # Then the task is ready with three activated jobs covering events 1000..1249
    assert svc.store.get_task(task.id).status is TaskStatus.READY
    jobs = svc.store.list_jobs(task.id)
    assert [j.command for j in jobs] == [
        ["gen", "--first=1000", "--n=100", "--seed=0"],
        ["gen", "--first=1100", "--n=100", "--seed=1"],
        ["gen", "--first=1200", "--n=50", "--seed=2"],
    ]
    assert {j.status for j in jobs} == {JobStatus.ACTIVATED}


def test_a_task_with_too_many_event_jobs_is_refused_at_submission(svc: Services) -> None:
    # Given a task that would cut into more jobs than a task may have
    spec = TaskSpec(name="huge", command=["gen"], n_events=MAX_JOBS_PER_TASK + 1, events_per_job=1)

    # When it is submitted, Then it is refused with the count and the limit, nothing stored
    with pytest.raises(InvalidInput, match=f"{MAX_JOBS_PER_TASK + 1} jobs; the limit is"):
        submit(svc, spec, owner="u")


def test_event_placeholders_in_a_task_not_split_by_events_are_refused(svc: Services) -> None:
    spec = TaskSpec(name="t", command=["run", "{first_event}"], n_jobs=2)
    with pytest.raises(InvalidInput, match=r"uses \{first_event\}, but only a task split by"):
        submit(svc, spec, owner="u")
