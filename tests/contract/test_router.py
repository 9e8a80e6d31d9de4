"""Specification of the local event router: at-least-once delivery of the outbox, with effects
that happen exactly once (DESIGN: handlers are idempotent), across duplicates and restarts.

These tests drive the real SqliteStore, handlers and router in-process with a fake clock and no
launcher; the router's thread is never started, so each test decides when delivery happens
(`drain()`, or `deliver()` for a hand-made duplicate).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.local.bus import OutboxBus
from skypanda.adapters.local.files import FileBlobs
from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.domain import events as ev
from skypanda.domain.events import Event, EventType
from skypanda.domain.models import Task, TaskSpec
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.runtime.router import Router

from .conftest import FakeClock, make_queue


class Node:
    """One run of the embedded backend's delivery path: a store on `path` and a router on it.

    A new Node on the same path is a restarted process: whatever the old one committed is
    there, whatever it did not mark delivered is delivered again.
    """

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.store = SqliteStore(path / "skypanda.db", clock=clock.now)
        self.svc = Services(
            store=self.store,
            bus=OutboxBus(self.store),
            blobs=FileBlobs(path / "blobs"),
            clock=clock,
            launcher=None,
        )
        self.router = Router(Pipeline(self.svc), self.store)

    def submit(self, name: str, n_jobs: int) -> Task:
        spec = TaskSpec(name=name, command=["run", "{index}"], n_jobs=n_jobs, queue="q")
        return submit(self.svc, spec, owner="tester")

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def nodes(tmp_path: Path, clock: FakeClock) -> Iterator[Any]:
    """`nodes()` starts a Node on this test's data; every node is closed at the end."""
    started: list[Node] = []

    def start() -> Node:
        node = Node(tmp_path, clock)
        started.append(node)
        return node

    yield start
    for node in started:
        node.close()


@pytest.fixture
def node(nodes: Any) -> Node:
    first: Node = nodes()
    first.store.put_queue(make_queue("q"))
    return first


def assert_split_once(store: SqliteStore, task: Task) -> None:
    """The task is ready with exactly its jobs: indices 0..n-1, each once, all activated."""
    stored = store.get_task(task.id)
    assert stored.status is TaskStatus.READY
    jobs = store.list_jobs(task.id)
    assert [j.index for j in jobs] == list(range(task.n_jobs))
    assert len({j.id for j in jobs}) == task.n_jobs
    assert stored.n_jobs == task.n_jobs
    assert store.job_counts(task.id) == {JobStatus.ACTIVATED: task.n_jobs}


def registered_event(store: SqliteStore, task: Task) -> Event:
    [stored] = [s for s in store.pending_events(100) if s.event.subject == f"tasks/{task.id}"]
    return stored.event


def test_drain_splits_a_submitted_task_once(node: Node) -> None:
    # Given a task submitted while the router was not running
    task = node.submit("gen", 4)
    assert node.store.get_task(task.id).status is TaskStatus.REGISTERED

    # When the router drains the outbox
    delivered = node.router.drain()

    # Then the task is split into its 4 jobs and ready, and nothing is left to deliver
    assert delivered >= 1
    assert_split_once(node.store, task)
    assert node.store.pending_events(100) == []

    # And a second drain delivers nothing and changes nothing
    assert node.router.drain() == 0
    assert_split_once(node.store, task)


def test_events_left_by_a_crash_are_delivered_after_a_restart_with_effects_once(
    nodes: Any, node: Node
) -> None:
    # Given three tasks submitted, and the process stopped before anything was delivered
    tasks = [node.submit(f"gen{i}", n) for i, n in enumerate((2, 3, 5))]
    node.close()

    # When a new process opens the same database and its router drains
    restarted: Node = nodes()
    restarted.router.drain()

    # Then each task was split exactly once
    for task in tasks:
        assert_split_once(restarted.store, task)

    # And after another restart nothing is redelivered
    restarted.close()
    again: Node = nodes()
    assert again.store.pending_events(100) == []
    assert again.router.drain() == 0
    for task in tasks:
        assert_split_once(again.store, task)


def test_a_crash_after_handling_but_before_the_ack_redelivers_harmlessly(
    nodes: Any, node: Node
) -> None:
    # Given two tasks whose events were handled, but the process died before marking them
    # delivered (the window at-least-once delivery leaves open)
    tasks = [node.submit("a", 3), node.submit("b", 2)]
    for stored in node.store.pending_events(100):
        node.router.deliver(stored.event)
    node.close()

    # When a new process drains the outbox
    restarted: Node = nodes()
    redelivered = restarted.router.drain()

    # Then the events were delivered again, and each task still has its jobs exactly once
    assert redelivered >= len(tasks)
    for task in tasks:
        assert_split_once(restarted.store, task)


def test_a_duplicate_delivery_of_task_registered_creates_the_jobs_once(node: Node) -> None:
    # Given a submitted task and its task.registered event
    task = node.submit("gen", 3)
    registered = registered_event(node.store, task)

    # When the event is delivered twice
    node.router.deliver(registered)
    node.router.deliver(registered)

    # Then the jobs exist once, and the split's nudge to the queue is in the outbox once
    assert_split_once(node.store, task)
    nudges = [s for s in node.store.pending_events(100) if s.event.type is EventType.JOBS_ACTIVATED]
    assert len(nudges) == 1


class StaleTaskReads:
    """A store whose `get_task` answers with a snapshot taken earlier: what a second delivery
    sees when it read the task before the first delivery's split committed (a race between two
    subscribers, as Pub/Sub allows)."""

    def __init__(self, store: SqliteStore, snapshot: Task) -> None:
        self._store = store
        self._snapshot = snapshot

    def get_task(self, task_id: str) -> Task:
        return self._snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_duplicate_delivery_racing_the_first_creates_the_jobs_once(node: Node) -> None:
    # Given a submitted task, read while still registered by a second subscriber
    task = node.submit("gen", 3)
    registered = registered_event(node.store, task)
    racer = Router(
        Pipeline(
            Services(
                store=StaleTaskReads(node.store, node.store.get_task(task.id)),
                bus=node.svc.bus,
                blobs=node.svc.blobs,
                clock=node.svc.clock,
            )
        ),
        node.store,
    )

    # When the first delivery splits the task, then the racing one handles the same event
    node.router.deliver(registered)
    racer.deliver(registered)

    # Then the second delivery loses quietly (no error) and the jobs exist once
    assert_split_once(node.store, task)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"task_id": "t-does-not-exist"}, id="unknown-task"),
        pytest.param({"not_a_task_id": 1}, id="bad-shape"),
    ],
)
def test_a_poison_event_is_parked_dead_and_does_not_block_later_events(
    node: Node, data: dict[str, Any]
) -> None:
    # Given a task.registered event that no delivery can ever handle, then a real task
    poison = Event(id="poison", type=EventType.TASK_REGISTERED, subject="tasks/x", data=data)
    node.store.add_events([poison])
    task = node.submit("gen", 2)

    # When the router drains
    node.router.drain()

    # Then the poison event is parked with its error, the later task was split, and nothing
    # is pending
    [(dead_id, error)] = node.store.dead_events()
    assert dead_id == "poison"
    assert error
    assert_split_once(node.store, task)
    assert node.store.pending_events(100) == []
    assert node.router.drain() == 0


def test_a_task_that_cannot_be_split_fails_instead_of_being_retried(node: Node) -> None:
    # Given a task stored directly (bypassing submit's checks) whose command cannot be rendered
    spec = TaskSpec(name="bad", command=["run", "{nope}"], n_jobs=2, queue="q")
    now = node.svc.clock.now()
    task = Task(id="t-bad", spec=spec, created_at=now, updated_at=now)
    node.store.add_task(task, [ev.task_registered(task.id)])

    # When the router drains
    node.router.drain()

    # Then the task failed with the reason, has no jobs, and its event was delivered
    stored = node.store.get_task(task.id)
    assert stored.status is TaskStatus.FAILED
    assert "nope" in stored.reason
    assert node.store.list_jobs(task.id) == []
    assert node.store.pending_events(100) == []
    assert node.store.dead_events() == []


def test_a_commit_of_only_lazy_events_calls_the_lazy_hook(node: Node) -> None:
    # Given a store whose job.ended events may wait (as the embedded system wires it)
    calls: list[str] = []
    node.store.on_events = lambda: calls.append("now")
    node.store.on_lazy_events = lambda: calls.append("soon")
    node.store.lazy_events = frozenset({EventType.JOB_ENDED})
    ended = ev.job_ended("j1", 1, "t1", "finished")

    # When a commit writes only job.ended events, then one writes another kind too
    node.store.add_events([ended])
    node.store.add_events([ev.job_ended("j2", 1, "t1", "finished"), ev.task_registered("t2")])
    # and an atomic scope writes a lazy event, then one that may not wait
    with node.store.atomic():
        node.store.add_events([ev.job_ended("j3", 1, "t1", "finished")])
        node.store.add_events([ev.task_registered("t3")])
    with node.store.atomic():
        node.store.add_events([ev.job_ended("j4", 1, "t1", "finished")])

    # Then only the commits of job.ended alone call the lazy hook, once per commit
    assert calls == ["soon", "now", "now", "soon"]
    # And every event is in the outbox all the same
    assert len(node.store.pending_events(100)) == 6


def test_without_a_lazy_hook_every_commit_calls_on_events(node: Node) -> None:
    calls: list[str] = []
    node.store.on_events = lambda: calls.append("now")
    node.store.lazy_events = frozenset({EventType.JOB_ENDED})
    node.store.add_events([ev.job_ended("j1", 1, "t1", "finished")])
    assert calls == ["now"]
