"""The Firestore doorbell (adapters.gcp.doorbell) against the Firestore emulator: a waiting
acquire's bell rings when a job enters its queue's activated jobs, and only then; listeners
are open only while someone waits; the long-poll fits the dispatch function's timeout."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore

from skypanda.adapters.gcp.doorbell import FirestoreDoorbell
from skypanda.handlers.dispatch import MAX_WAIT_S
from skypanda.pilot.agent import LONG_POLL_S, _long_poll
from skypanda.runtime.deployment import FUNCTIONS
from skypanda.runtime.emulators import PROJECT
from skypanda.runtime.gcp import LONG_POLLS, PILOT_LONG_POLL_S
from tests.e2e.conftest import wait_until


@pytest.fixture
def jobs(firestore_emulator: Any) -> Iterator[Any]:
    """A jobs collection of its own on the emulator, as the doorbell listens to it."""
    client = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT))
    yield client.collection(f"d{uuid.uuid4().hex[:8]}-jobs")
    client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def written(jobs: Any) -> Iterator[Any]:
    """The same collection through a client of its own, to write jobs with: the emulator may
    cancel a commit sent on the channel of a listen stream being closed (a listener closes
    when its last waiter leaves; tests/gcp/test_outbox_bridge.py met it in CI)."""
    client = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT))
    yield client.collection(jobs.id)
    client.close()  # type: ignore[no-untyped-call]


def _activate(jobs: Any, queue: str, job_id: str | None = None) -> None:
    jobs.document(job_id or uuid.uuid4().hex).set({"queue": queue, "status": "activated"})


def _wait_in_thread(bell: FirestoreDoorbell, queue: str, timeout: float) -> tuple[Any, list[Any]]:
    got: list[Any] = []
    seen = bell.seen(queue)
    thread = threading.Thread(target=lambda: got.append(bell.wait(queue, seen, timeout)))
    thread.start()
    return thread, got


def _listening(bell: FirestoreDoorbell) -> bool:
    return bell.opened > 0 and bell.reads > 0  # its first snapshot arrived


def test_a_wait_rings_when_a_job_is_activated_on_its_queue(jobs: Any, written: Any) -> None:
    # Given an acquire waiting on queue q, its listener open
    bell = FirestoreDoorbell(jobs, max_waiters=4)
    thread, got = _wait_in_thread(bell, "q", 60)
    wait_until(lambda: bell.waiting == 1 and _listening(bell), 30, "the listener's first snapshot")
    assert bell.listening == ["q"]
    # When a job of another queue is activated, Then the wait goes on
    _activate(written, "other")
    thread.join(timeout=1.0)
    assert thread.is_alive()
    # When a job of q is activated
    _activate(written, "q")
    # Then the wait returns True (long before its minute), and the listener is closed
    thread.join(timeout=30)
    assert not thread.is_alive() and got == [True]
    assert bell.waiting == 0 and bell.listening == []
    # And its reads were counted: the first snapshot (one at least) and the job that entered
    assert bell.reads >= 2


def test_a_wait_times_out_when_nothing_is_activated(jobs: Any) -> None:
    bell = FirestoreDoorbell(jobs, max_waiters=4)
    started = time.monotonic()
    assert bell.wait("q", bell.seen("q"), 0.5) is False
    assert time.monotonic() - started >= 0.5
    assert bell.listening == [] and bell.opened == 1


def test_a_job_that_waited_long_does_not_ring_but_a_fresh_one_does(jobs: Any, written: Any) -> None:
    # Given a job activated long ago that the waiter could not take (it does not fit): the
    # listener's first snapshot holds it, and it is older than `fresh_s`
    _activate(written, "q", "a-old")
    stale = FirestoreDoorbell(jobs, max_waiters=4, wall=lambda: time.time() + 60)
    # When a wait starts, Then the old job does not ring it (no spin on a job nobody takes)
    assert stale.wait("q", stale.seen("q"), 1.0) is False
    # Given a job activated just before the listener opened (after the waiter looked)
    fresh = FirestoreDoorbell(jobs, max_waiters=4, fresh_s=30)
    # When a wait starts, Then the first snapshot rings it at once
    started = time.monotonic()
    assert fresh.wait("q", fresh.seen("q"), 30) is True
    assert time.monotonic() - started < 25


def test_waiters_of_one_queue_share_one_listener_and_one_job_wakes_one(
    jobs: Any, written: Any
) -> None:
    # Given three acquires waiting on q, on one listener
    bell = FirestoreDoorbell(jobs, max_waiters=4)
    waits = [_wait_in_thread(bell, "q", 60) for _ in range(3)]
    wait_until(lambda: bell.waiting == 3 and _listening(bell), 30, "three waiters")
    assert bell.opened == 1 and bell.listening == ["q"]

    def woken() -> int:
        return sum(not thread.is_alive() for thread, _ in waits)

    # When one job is activated, Then one waiter wakes and the two others wait on (no herd)
    _activate(written, "q", "a")
    wait_until(lambda: woken() >= 1, 30, "one waiter to wake")
    assert woken() == 1 and bell.waiting == 2
    # When its waiter claims it and another job is activated, Then the next waiter wakes
    for taken, activated, n in (("a", "b", 2), ("b", "c", 3)):
        written.document(taken).update({"status": "sent"})
        _activate(written, "q", activated)
        wait_until(lambda n=n: woken() >= n, 30, f"{n} waiters to wake")  # type: ignore[misc]
        assert woken() == n
    assert [got for _, got in waits] == [[True]] * 3
    assert bell.listening == [] and bell.waiting == 0


class _Change:
    """A listener's change of type ADDED (what `on_snapshot` hands the callback)."""

    class type:  # as the client's DocumentChange: `change.type.name`
        name = "ADDED"

    document = None


def test_a_job_that_came_and_went_before_the_waiter_woke_does_not_end_the_wait(
    jobs: Any, written: Any
) -> None:
    # Given an acquire waiting on q, its listener's first (empty) snapshot in
    bell = FirestoreDoorbell(jobs, max_waiters=4)
    thread, got = _wait_in_thread(bell, "q", 60)
    wait_until(lambda: bell.waiting == 1 and _listening(bell), 30, "the listener's first snapshot")
    # When a snapshot says a job entered the head but the head is empty again (a chain's
    # child, released and claimed in one request, seen in one snapshot)
    bell._heard("q", [], [_Change()])
    # Then the wait goes on (waking would pay a look for nothing)
    thread.join(timeout=1.0)
    assert thread.is_alive()
    # When a job is activated and stays, Then it ends the wait
    _activate(written, "q")
    thread.join(timeout=30)
    assert got == [True]


def test_waits_beyond_the_cap_and_after_close_answer_at_once(jobs: Any) -> None:
    # Given a bell that lets one wait at a time, and one waiting
    bell = FirestoreDoorbell(jobs, max_waiters=1)
    thread, got = _wait_in_thread(bell, "q", 60)
    wait_until(lambda: bell.waiting == 1, 30, "the first wait")
    # When another asks to wait, Then it answers at once, opening nothing
    assert bell.wait("q2", bell.seen("q2"), 60) is False
    assert bell.listening == ["q"]
    # When the bell closes (the server stops), Then the wait ends, and new ones answer at once
    bell.close()
    thread.join(timeout=30)
    assert got == [False]
    assert bell.wait("q", bell.seen("q"), 60) is False
    with pytest.raises(ValueError, match="max_waiters"):
        FirestoreDoorbell(jobs, max_waiters=-1)


def test_a_ring_in_process_and_a_failing_listener() -> None:
    # A ring between the look and the wait is not lost; a listener Firestore refuses makes
    # the wait answer at once (the pilot asks again) instead of failing the acquire
    class Refusing:
        def where(self, **_: Any) -> Refusing:
            return self

        def limit(self, _n: int) -> Refusing:
            return self

        def on_snapshot(self, _callback: Any) -> None:
            raise RuntimeError("no stream")

    bell = FirestoreDoorbell(Refusing(), max_waiters=2)
    seen = bell.seen("q")
    bell.ring(["q"])
    assert bell.wait("q", seen, 60) is True
    started = time.monotonic()
    assert bell.wait("q", bell.seen("q"), 60) is False
    assert time.monotonic() - started < 30 and bell.listening == [] and bell.waiting == 0


def test_the_long_poll_fits_the_dispatch_function() -> None:
    # A wait ends well before the function's timeout, and waits leave requests for the rest
    dispatch = FUNCTIONS["dispatch"]
    assert dispatch.timeout_s >= MAX_WAIT_S + 60
    assert 0 < LONG_POLLS < dispatch.concurrency


def test_a_cloud_server_lets_its_pilots_wait_longer_than_a_local_one() -> None:
    # The dispatch function tells its pilots (at registration) to wait longer than a local
    # server's pilots do, within its own cap and within a pilot's HTTP timeout (30 s)
    assert LONG_POLL_S < PILOT_LONG_POLL_S <= MAX_WAIT_S
    assert _long_poll(PILOT_LONG_POLL_S, 30.0) == PILOT_LONG_POLL_S
    assert _long_poll(60, 30.0) == 20.0  # an answer must come back before the pilot gives up
    # A server that tells nothing (the local one, an older one), or nonsense: the short wait
    for told in (None, 0, -5, True, "30"):
        assert _long_poll(told, 30.0) == LONG_POLL_S
    assert _long_poll(1.5, 30.0) == 1.5


def test_a_listener_the_client_ended_is_replaced_by_the_next_waiter(
    jobs: Any, written: Any
) -> None:
    # Given an acquire waiting on q whose listener the client ended (as it ends one whose
    # stream the server cancelled: google.cloud.firestore_v1.watch)
    bell = FirestoreDoorbell(jobs, max_waiters=4)
    first, got_first = _wait_in_thread(bell, "q", 60)
    wait_until(lambda: bell.waiting == 1 and _listening(bell), 30, "the listener's first snapshot")
    bell._listeners["q"].watch.close()
    # When another acquire waits on q
    second, got = _wait_in_thread(bell, "q", 60)
    wait_until(lambda: bell.waiting == 2 and bell.opened == 2, 30, "a second listener")
    wait_until(lambda: bell.reads >= 2, 30, "the second listener's first snapshot")
    # Then jobs activated on q ring the waiters, both (the first's through the new listener):
    # their waits return True long before their minute
    _activate(written, "q", "a")
    wait_until(lambda: not first.is_alive() or not second.is_alive(), 30, "a waiter to wake")
    written.document("a").update({"status": "sent"})  # claimed by the pilot woken
    _activate(written, "q", "b")
    first.join(30)
    second.join(30)
    assert not first.is_alive() and not second.is_alive() and got_first == got == [True]
    assert bell.waiting == 0 and bell.listening == []
