"""Outbox contract (`skypanda.ports.outbox`): events stored with their changes, pending until
delivered. Every test runs against every backend in `conftest.BACKENDS`."""

from __future__ import annotations

from skypanda.domain import events as ev
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import (
    Backend,
    ClosableStore,
    make_task,
)
from .helpers import (
    event,
    pending_ids,
)

# --- outbox --------------------------------------------------------------------------------------


def test_pending_events_are_oldest_first_and_limited(store: Store) -> None:
    store.add_events([event(1), event(2)])
    store.add_events([event(3)])
    assert [s.event for s in store.pending_events(10)] == [event(1), event(2), event(3)]
    assert [s.event.id for s in store.pending_events(2)] == ["e1", "e2"]
    seqs = [s.seq for s in store.pending_events(10)]
    assert seqs == sorted(seqs)


def test_add_events_ignores_an_event_whose_id_is_already_there(store: Store) -> None:
    # Given events e1 and e2 in the outbox, e1 already delivered
    store.add_events([event(1), event(2)])
    store.mark_delivered([store.pending_events(1)[0].seq], 0.0)

    # When e1, e2 and e3 are added (a producer retried)
    store.add_events([event(1), event(2), event(3)])

    # Then only e3 is new: e1 is not redelivered and e2 is pending once
    assert pending_ids(store) == ["e2", "e3"]


def test_events_of_state_changes_are_deduplicated_too(store: Store, clock: FakeClock) -> None:
    store.add_task(make_task(clock), [ev.task_registered("t1")])
    store.add_events([ev.task_registered("t1")])
    assert pending_ids(store) == ["task-registered:t1"]


def test_mark_delivered_removes_events_from_pending(store: Store) -> None:
    store.add_events([event(1), event(2), event(3)])
    first, _, third = store.pending_events(10)
    store.mark_delivered([first.seq, third.seq], 5.0)
    assert pending_ids(store) == ["e2"]


def test_mark_failed_dead_parks_the_event(store: Store) -> None:
    # Given two pending events
    store.add_events([event(1), event(2)])
    poison = store.pending_events(1)[0]

    # When the first fails for good
    store.mark_failed(poison.seq, "bad data", dead=True)

    # Then it is no longer pending, and it does not hold back the second
    assert pending_ids(store) == ["e2"]


def test_mark_failed_not_dead_keeps_the_event_pending_and_counts_the_try(store: Store) -> None:
    # Given a pending event
    store.add_events([event(1)])
    seq = store.pending_events(1)[0].seq

    # When its delivery fails twice, retryably
    store.mark_failed(seq, "busy", dead=False)
    store.mark_failed(seq, "busy", dead=False)

    # Then it is still pending, first, with two tries counted
    [stored] = store.pending_events(10)
    assert (stored.seq, stored.event, stored.tries) == (seq, event(1), 2)


def test_the_outbox_survives_a_restart(backend: Backend, store: ClosableStore) -> None:
    # Given three events: one delivered, one failed once, one untouched
    store.add_events([event(1), event(2), event(3)])
    one, two, _ = store.pending_events(10)
    store.mark_delivered([one.seq], 1.0)
    store.mark_failed(two.seq, "busy", dead=False)

    # When the store is closed and a new one is opened on the same data
    store.close()
    reopened = backend.open()

    # Then the undelivered events are still pending, with their tries, and the delivered one
    # is not
    assert [(s.event, s.tries) for s in reopened.pending_events(10)] == [
        (event(2), 1),
        (event(3), 0),
    ]


def test_events_handled_by_id_are_no_longer_pending_nor_lost(
    store: Store, clock: FakeClock
) -> None:
    # Given three events sent at the store's clock
    store.add_events([event(1), event(2), event(3)])
    # When e2 is handled by id (as a Cloud Function does), and an unknown id too
    store.mark_handled(["e2", "nope"], clock.now())
    # Then e2 is neither pending nor lost; the others are lost once the bound passes them
    assert pending_ids(store) == ["e1", "e3"]
    assert store.lost_events(clock.now(), 10) == []  # sent at `now`: not before it
    later = clock.now() + 1
    assert [s.event.id for s in store.lost_events(later, 10)] == ["e1", "e3"]
    assert [s.event.id for s in store.lost_events(later, 1)] == ["e1"]


def test_a_resent_event_is_lost_again_only_after_the_bound_from_its_resend(
    store: Store, clock: FakeClock
) -> None:
    # Given an event sent at t0, still not handled at t0 + 10
    store.add_events([event(1)])
    t0 = clock.now()
    # When it is sent again at t0 + 10
    store.mark_resent(["e1"], t0 + 10)
    # Then it is not lost before t0 + 10, is again after, with its resend counted
    assert store.lost_events(t0 + 10, 10) == []
    [again] = store.lost_events(t0 + 11, 10)
    assert (again.event, again.tries) == (event(1), 1)
    # And once handled it is not lost any more
    store.mark_handled(["e1"], t0 + 12)
    assert store.lost_events(t0 + 100, 10) == []
