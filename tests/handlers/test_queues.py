"""The queues handler: apply (upsert, dry run) and brokerage at submit, on a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import TaskRef
from skypanda.domain.models import Queue, Resources, TaskSpec
from skypanda.domain.states import TaskStatus
from skypanda.handlers import queues, split
from skypanda.handlers.services import Services
from skypanda.handlers.submit import check_task, submit
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


def spec(**fields: Any) -> TaskSpec:
    return TaskSpec.model_validate({"name": "t", "command": ["true"], "n_jobs": 2, **fields})


def test_apply_adds_updates_and_dry_runs(svc: Services) -> None:
    # Given `local` stored; a dry run of a changed local and a new queue stores nothing
    new = [Queue(name="local", max_pilots=9), Queue(name="b")]
    changes = queues.apply(svc, new, dry_run=True)
    assert [(c.name, c.action, c.fields) for c in changes] == [
        ("local", "update", ["max_pilots"]),
        ("b", "add", []),
    ]
    assert [q.name for q in svc.store.list_queues()] == ["local"]
    # When applied for real, then again
    queues.apply(svc, new)
    again = queues.apply(svc, new)
    # Then both are stored and the second apply changes nothing
    assert svc.store.get_queue("local").max_pilots == 9
    assert {c.action for c in again} == {"unchanged"}


def test_apply_refuses_a_name_given_twice(svc: Services) -> None:
    with pytest.raises(InvalidInput, match="defined twice: a"):
        queues.apply(svc, [Queue(name="a"), Queue(name="a", max_pilots=3)])
    assert [q.name for q in svc.store.list_queues()] == ["local"]


def test_auto_brokers_to_the_queue_that_fits_and_records_it(svc: Services) -> None:
    big = Resources(memory_mb=16000, cores=4)
    queues.apply(svc, [Queue(name="big", pilot_resources=big), Queue(name="small")])
    task = submit(svc, spec(queue="auto", resources={"memory_mb": 8000}), owner="u")
    assert task.spec.queue == "big"
    assert svc.store.get_task(task.id).spec.queue == "big"


def test_queues_include_exclude_and_the_load_weight(svc: Services) -> None:
    queues.apply(svc, [Queue(name="a"), Queue(name="b"), Queue(name="c")])
    # Given 2 jobs queued on a (an earlier task), b and c idle; local excluded
    earlier = submit(svc, spec(queue="a"), owner="u")
    split.handle(svc, TaskRef(task_id=earlier.id))
    assert svc.store.count_activated("a") == 2
    task = submit(svc, spec(queues={"exclude": ["local"]}), owner="u")
    # Then b wins: equal weight to c, first by name; a weighs less
    assert task.spec.queue == "b"


def test_a_test_queue_is_reached_only_by_name(svc: Services) -> None:
    queues.apply(svc, [Queue(name="t", status="test")])
    assert submit(svc, spec(queues={"include": ["t"]}), owner="u").spec.queue == "t"
    assert submit(svc, spec(queue="t"), owner="u").spec.queue == "t"
    assert submit(svc, spec(queue="auto"), owner="u").spec.queue == "local"


def test_nothing_fits_the_task_waits_pending_with_reasons_until_a_queue_does(
    svc: Services,
) -> None:
    # Given an offline queue besides `local`, and a task needing 9000 MB
    queues.apply(svc, [Queue(name="down", status="offline")])

    # When it is submitted, Then it waits: pending, unsplit, with each queue's reason
    task = submit(svc, spec(queue="auto", resources={"memory_mb": 9000}), owner="u")
    stored = svc.store.get_task(task.id)
    assert stored.status is TaskStatus.PENDING and stored.spec.queue == "auto"
    assert stored.reason == (
        "task t: no queue fits: down: offline; local: 9000 MB > 4000 MB per pilot"
    )
    assert svc.store.pending_events(10) == []  # nothing splits it yet

    # When a queue that fits is applied, Then the task is brokered there and split
    queues.apply(svc, [Queue(name="big", pilot_resources={"memory_mb": 16000})])
    placed = svc.store.get_task(task.id)
    assert (placed.spec.queue, placed.reason) == ("big", "")
    (event,) = [
        e.event for e in svc.store.pending_events(10) if e.event.subject.startswith("tasks/")
    ]
    assert event.data == {"task_id": task.id}


def test_a_named_queue_with_queues_is_refused(svc: Services) -> None:
    with pytest.raises(InvalidInput, match="leave queue out or write queue: auto"):
        submit(svc, spec(queue="local", queues={"include": ["local"]}), owner="u")


def test_a_named_queue_is_checked_against_its_limits(svc: Services) -> None:
    queues.apply(svc, [Queue(name="short", max_walltime_s=60)])
    with pytest.raises(InvalidInput, match="does not fit queue short: walltime 3600 s > 60 s"):
        submit(svc, spec(queue="short"), owner="u")


def test_brokerage_is_refused_where_it_is_not_done(svc: Services) -> None:
    # a workflow's tasks are checked with check_task alone: they must name a queue
    with pytest.raises(InvalidInput, match=r"brokerage .* is for single tasks"):
        check_task(svc, spec(queue="auto"), count=False)
