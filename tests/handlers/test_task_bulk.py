"""Task-wide actions as pages (handlers.bulk) on the embedded store: one page per action, run
by the request and again by the outbox's delivery of its event, with one count."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain import events as ev
from skypanda.domain.events import TaskBulk, TaskRef
from skypanda.domain.models import Queue, TaskSpec
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.handlers import bulk, split, task_actions
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.runtime.router import Router
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    queues = [Queue(name="local"), Queue(name="fast")]
    with sqlite_services(tmp_path, FakeClock(), queues[0]) as services:
        services.store.put_queue(queues[1])
        yield services


def _split_task(svc: Services, n: int) -> str:
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=n), owner="u")
    split.handle(svc, TaskRef(task_id=task.id))
    return task.id


def test_the_action_counts_the_jobs_it_moved_even_when_its_event_ran_first(
    svc: Services,
) -> None:
    # Given a task of 5 queued jobs, and a reassign whose event the router delivers before
    # the request applies the page itself (they race in one process)
    task_id = _split_task(svc, 5)
    task = svc.store.get_task(task_id)
    event = ev.task_bulk(task_id, "move", "run1", 0, {"queue": "fast"})
    msg = TaskBulk.model_validate(event.data)
    bulk.handle(svc, msg)  # the router's delivery
    # When the request runs the same page, Then it reports the 5 jobs moved, not 0
    assert bulk.run_page(svc, msg) == 5
    assert {j.queue for j in svc.store.list_jobs(task.id)} == {"fast"}


def test_a_kill_applies_at_once_and_its_event_then_changes_nothing(svc: Services) -> None:
    task_id = _split_task(svc, 4)
    killed = task_actions.kill(svc, task_id, "u", "stop")
    assert killed.status is TaskStatus.ABORTED
    assert svc.store.job_counts(task_id) == {JobStatus.CANCELLED: 4}
    # When the outbox delivers the action's event, Then it is delivered and changes nothing
    pipeline = Pipeline(svc)
    Router(pipeline, svc.store).drain()
    assert pipeline.counts[f"{ev.EventType.TASK_BULK}:delivered"] == 1
    assert svc.store.job_counts(task_id) == {JobStatus.CANCELLED: 4}


def test_two_pauses_of_one_task_are_two_actions(svc: Services) -> None:
    # A second pause after a resume is a new run: its event is not taken for a duplicate
    task_id = _split_task(svc, 3)
    for _ in range(2):
        task_actions.pause(svc, task_id, "u")
        assert svc.store.job_counts(task_id) == {JobStatus.DEFINED: 3}
        task_actions.resume(svc, task_id, "u")
        assert svc.store.job_counts(task_id) == {JobStatus.ACTIVATED: 3}
    runs = {
        s.event.data["run"]
        for s in svc.store.pending_events(100)
        if s.event.type is ev.EventType.TASK_BULK
    }
    assert len(runs) == 4
