"""WatchStore contract (`skypanda.ports.watches`): rules by name and owner; an object is one
input however often it is added; a batch closes at N objects, or when closed by the sweep
after its deadline, once; its inputs and its end are recorded. Every test runs against every
backend."""

from __future__ import annotations

import pytest

from skypanda.domain.errors import Conflict, NotFound
from skypanda.domain.watch import BatchStatus, WatchRule, batch_id, object_key
from skypanda.ports import Store

from .conftest import FakeClock


def rule(name: str = "raw", owner: str = "alice", batch: int = 3, every: float = 10.0) -> WatchRule:
    return WatchRule.model_validate(
        {"name": name, "source": "gs://bkt/in/", "batch": batch, "every": every,
         "template": {"name": "reco", "command": ["reco", "{input}"]},
         "owner": owner, "uid": f"r{name}", "created_at": 1.0}
    )  # fmt: skip


def add(store: Store, r: WatchRule, name: str, now: float, generation: str = "1") -> tuple:
    key = object_key(r.uid, "bkt", name, generation)
    return store.add_watched_object(r, key, f"gs://bkt/{name}", now)


def test_rules_are_stored_listed_by_owner_and_removed(store: Store) -> None:
    # Given two rules of two owners
    store.add_watch(rule("a", "alice"))
    store.add_watch(rule("b", "bob"))

    # Then they read back, by name and by owner, and a name cannot be taken twice
    assert store.get_watch("a") == rule("a", "alice")
    assert [r.name for r in store.list_watches()] == ["a", "b"]
    assert [r.name for r in store.list_watches(owner="bob")] == ["b"]
    assert [r.name for r in store.watches_on("bkt")] == ["a", "b"]
    assert store.watches_on("other") == []
    with pytest.raises(Conflict):
        store.add_watch(rule("a", "bob"))

    # When one is removed, it is gone
    assert store.remove_watch("a")
    assert not store.remove_watch("a")
    with pytest.raises(NotFound):
        store.get_watch("a")


def test_an_object_added_twice_is_one_input_and_a_full_batch_closes_once(
    store: Store, clock: FakeClock
) -> None:
    # Given a rule of batches of 3
    r = rule(batch=3)
    store.add_watch(r)
    now = clock.now()

    # When objects arrive, one of them twice
    assert add(store, r, "in/1", now) == (True, None)
    assert add(store, r, "in/1", now) == (False, None)
    assert add(store, r, "in/2", now) == (True, None)
    new, closed = add(store, r, "in/3", now)

    # Then the third closes the batch, with exactly those three inputs
    assert new and closed is not None
    assert (closed.id, closed.status, closed.count) == (batch_id(r.uid, 0), BatchStatus.CLOSED, 3)
    assert sorted(store.batch_inputs(closed.id)) == [
        "gs://bkt/in/1",
        "gs://bkt/in/2",
        "gs://bkt/in/3",
    ]

    # And the next object opens the next batch; the old objects stay one input each
    assert add(store, r, "in/2", now) == (False, None)
    assert add(store, r, "in/4", now) == (True, None)
    assert store.batch_inputs(batch_id(r.uid, 1)) == ["gs://bkt/in/4"]
    # A new generation of an object is a new object
    assert add(store, r, "in/1", now, generation="2") == (True, None)


def test_a_batch_past_its_deadline_is_due_closed_once_and_ended(
    store: Store, clock: FakeClock
) -> None:
    # Given a batch of 2 objects (of 3) opened now, with a deadline of 10 s
    r = rule(batch=3, every=10.0)
    store.add_watch(r)
    t0 = clock.now()
    add(store, r, "in/1", t0)
    add(store, r, "in/2", t0 + 1)
    first = batch_id(r.uid, 0)

    # Then it is not due before its deadline, and is after
    assert store.due_batches(t0 + 9, 10) == []
    due = store.due_batches(t0 + 10, 10)
    assert [(b.id, b.status, b.count) for b in due] == [(first, BatchStatus.OPEN, 2)]

    # When it is closed (twice: the second loses)
    closed = store.close_batch(first, t0 + 10)
    assert closed is not None and closed.status is BatchStatus.CLOSED
    assert store.close_batch(first, t0 + 10) is None

    # Then new objects go to the next batch, and the closed one is due until it is ended
    add(store, r, "in/3", t0 + 11)
    assert store.batch_inputs(batch_id(r.uid, 1)) == ["gs://bkt/in/3"]
    assert [b.id for b in store.due_batches(t0 + 11, 10)] == [first]
    assert store.end_batch(first, task_id="wtask")
    assert not store.end_batch(first, task_id="wtask")
    assert store.due_batches(t0 + 11, 10) == []
    batches = store.get_batches(r.uid)
    assert [(b.seq, b.status, b.task_id) for b in batches] == [
        (1, BatchStatus.OPEN, ""),
        (0, BatchStatus.SUBMITTED, "wtask"),
    ]


def test_an_object_for_a_removed_rule_is_not_taken(store: Store, clock: FakeClock) -> None:
    r = rule()
    store.add_watch(r)
    store.remove_watch(r.name)
    assert add(store, r, "in/1", clock.now()) == (False, None)


def test_records_of_old_ended_batches_are_pruned_and_nothing_else(
    store: Store, clock: FakeClock
) -> None:
    # Given three batches of a rule (of 2 objects each): two ended, one still open
    r = rule(batch=2, every=10.0)
    store.add_watch(r)
    t0 = clock.now()
    for i in range(5):
        add(store, r, f"in/{i}", t0 + i)
    first, second, third = (batch_id(r.uid, s) for s in range(3))
    assert store.end_batch(first, task_id="t1")
    assert store.end_batch(second, reason="refused")

    # Then nothing is pruned before the ended batches are due, then the limit holds
    assert store.prune_watch_records(t0) == 0
    assert store.prune_watch_records(t0 + 100, limit=1) == 1
    left = {b.id for b in store.get_batches(r.uid)}
    assert left == {first, second, third}

    # When pruned without a tight limit: both ended batches go, with their objects' records
    assert store.prune_watch_records(t0 + 100) == 5  # 1 + 2 + 2 - 1 + 1
    assert [b.id for b in store.get_batches(r.uid)] == [third]
    assert store.batch_inputs(first) == store.batch_inputs(second) == []
    assert store.batch_inputs(third) == ["gs://bkt/in/4"]

    # And an object of a pruned batch is an object again (its record is gone); one of the
    # open batch is still known
    assert add(store, r, "in/0", t0 + 200)[0]
    assert not add(store, r, "in/4", t0 + 200)[0]
