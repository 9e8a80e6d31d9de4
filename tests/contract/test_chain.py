"""The held-submission part of the stores (`held_tasks`, `held_workflows`, `end_hold`): what
the chain handler asks of every backend. Every test runs against every backend."""

from __future__ import annotations

from skypanda.domain import events as ev
from skypanda.domain.chain import StartAfter
from skypanda.domain.states import TaskStatus, WorkflowStatus
from skypanda.domain.workflow import Workflow, WorkflowSpec, WorkflowTask
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import make_task


def _held_workflow(clock: FakeClock, workflow_id: str, trigger: str) -> Workflow:
    now = clock.now()
    spec = WorkflowSpec(
        name=f"wf-{workflow_id}",
        tasks=[WorkflowTask(name="a", command=["x"], n_jobs=1)],
        start_after=StartAfter(task=trigger),
    )
    return Workflow(id=workflow_id, spec=spec, created_at=now, updated_at=now)


def test_held_tasks_are_found_by_their_trigger_while_pending(
    store: Store, clock: FakeClock
) -> None:
    # Given two tasks held on t0, one on another trigger, and a task without a trigger
    for tid, trigger in (("t1", "t0"), ("t2", "t0"), ("t3", "tx")):
        clock.advance(1)
        held = make_task(
            clock, 1, task_id=tid, status=TaskStatus.PENDING, start_after=StartAfter(task=trigger)
        )
        store.add_task(held, [])
    store.add_task(make_task(clock, 1, task_id="t4", status=TaskStatus.PENDING), [])

    # Then t0's are found, oldest first, bounded by the limit
    assert [t.id for t in store.held_tasks("t0", 10)] == ["t1", "t2"]
    assert [t.id for t in store.held_tasks("t0", 1)] == ["t1"]
    assert store.held_tasks("nothing", 10) == []

    # When one starts (placed) and the other is skipped, neither is held any more
    t1 = store.get_task("t1", counts=False)
    assert store.place_task("t1", t1.spec, [ev.task_registered("t1")])
    assert store.set_task_status("t2", [TaskStatus.PENDING], TaskStatus.SKIPPED, reason="x")
    assert store.held_tasks("t0", 10) == []
    assert store.get_task("t1", counts=False).spec.start_after == StartAfter(task="t0")


def test_a_held_workflow_is_found_until_its_hold_ends_once(store: Store, clock: FakeClock) -> None:
    # Given two workflows held on t0
    store.add_workflow(_held_workflow(clock, "w1", "t0"), [], [])
    clock.advance(1)
    store.add_workflow(_held_workflow(clock, "w2", "t0"), [], [])
    assert [w.id for w in store.held_workflows("t0", 10)] == ["w1", "w2"]

    # When w1's hold ends to start it, twice (a redelivery)
    start = [ev.workflow_registered("w1")]
    assert store.end_hold("w1", WorkflowStatus.REGISTERED, events=start)
    assert not store.end_hold("w1", WorkflowStatus.REGISTERED, events=start)

    # Then it is registered, no longer held, with one registered event
    assert store.get_workflow("w1").status is WorkflowStatus.REGISTERED
    assert [w.id for w in store.held_workflows("t0", 10)] == ["w2"]
    assert [s.event.id for s in store.pending_events(10)] == ["workflow-registered:w1"]

    # When w2's hold ends skipped: it ends with its reason
    assert store.end_hold("w2", WorkflowStatus.SKIPPED, reason="not started: t0 failed")
    w2 = store.get_workflow("w2")
    assert (w2.status, w2.reason) == (WorkflowStatus.SKIPPED, "not started: t0 failed")
    assert store.held_workflows("t0", 10) == []


def test_a_killed_held_workflow_is_no_longer_held(store: Store, clock: FakeClock) -> None:
    store.add_workflow(_held_workflow(clock, "w1", "t0"), [], [])

    assert store.set_workflow_status("w1", [WorkflowStatus.REGISTERED], WorkflowStatus.ABORTED)

    assert store.held_workflows("t0", 10) == []
    assert not store.end_hold("w1", WorkflowStatus.REGISTERED)


def test_a_workflow_without_a_trigger_is_never_held(store: Store, clock: FakeClock) -> None:
    now = clock.now()
    spec = WorkflowSpec(name="plain", tasks=[WorkflowTask(name="a", command=["x"], n_jobs=1)])
    store.add_workflow(Workflow(id="w1", spec=spec, created_at=now, updated_at=now), [], [])

    assert not store.end_hold("w1", WorkflowStatus.REGISTERED)
