"""The embedded router's wakes held until a request's reply is written, and its loop's one read
of the outbox per wake (runtime.router)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any, cast

import pytest

from skypanda.adapters.local.doorbell import LocalDoorbell
from skypanda.domain import events as ev
from skypanda.handlers.pipeline import DELIVERED, Result
from skypanda.ports import StoredEvent
from skypanda.runtime.router import Router, router_after_reply


def _router() -> Router:
    # Nothing is delivered here (the thread is not started): only the wake is looked at.
    return Router(cast(Any, None), cast(Any, None))


def test_a_held_nudge_wakes_the_router_only_when_let_go() -> None:
    router = _router()
    router.hold()
    router.nudge()
    assert not router._wake.is_set()
    router.let_go()
    assert router._wake.is_set()


def test_letting_go_without_a_held_nudge_does_not_wake_it() -> None:
    router = _router()
    router.hold()
    router.let_go()
    router.let_go()  # idempotent
    assert not router._wake.is_set()


def test_a_hold_is_the_holding_threads_only() -> None:
    router = _router()
    router.hold()
    other = threading.Thread(target=router.nudge)
    other.start()
    other.join()
    assert router._wake.is_set()  # another thread's commit wakes it at once


def _call(app: Any, path: str = "/") -> Iterable[bytes]:
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path}
    return cast(Iterable[bytes], app(environ, lambda status, headers: None))


def test_a_requests_commits_wake_the_router_once_its_reply_is_written() -> None:
    router = _router()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        router.nudge()  # the report's commit wrote events
        start_response("200 OK", [])
        return [b"reply"]

    body = _call(router_after_reply(app, router))
    assert list(body) == [b"reply"]
    assert not router._wake.is_set()  # not while the server writes the reply
    cast(Any, body).close()  # the server closes the body once written
    assert router._wake.is_set()
    router._wake.clear()
    router.nudge()  # the thread serves the next request, or anything else: not held
    assert router._wake.is_set()


def test_a_request_that_fails_lets_go_too() -> None:
    router = _router()

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        router.nudge()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        _call(router_after_reply(app, router))
    assert router._wake.is_set()


def test_a_long_poll_lets_go_as_its_wait_starts() -> None:
    router = _router()
    bell = LocalDoorbell(max_waiters=4)
    bell.before_wait = router.let_go
    router.hold()
    router.nudge()  # the report's commit, before the acquire of the same /update waits
    assert bell.wait("q", bell.seen("q"), 0.0) is False
    assert router._wake.is_set()


# -- the router's loop: one read of the outbox per wake ------------------------------------------


class _Outbox:
    """An outbox in memory that counts its reads."""

    def __init__(self) -> None:
        self.pending: list[StoredEvent] = []
        self.reads = 0
        self.marked: list[int] = []
        self._seq = 0

    def add(self, n: int) -> None:
        for _ in range(n):
            self._seq += 1
            self.pending.append(StoredEvent(self._seq, ev.task_registered(f"t{self._seq}"), 0))

    def pending_events(self, limit: int) -> list[StoredEvent]:
        self.reads += 1
        return self.pending[:limit]

    def mark_delivered(self, seqs: list[int], now: float) -> None:
        self.marked.extend(seqs)
        self.pending = [s for s in self.pending if s.seq not in set(seqs)]


class _Pipeline:
    """Delivers every event; `then` runs after each (a handler that writes more events)."""

    max_tries = 5

    def __init__(self, then: Any = None) -> None:
        self.svc = SimpleNamespace(clock=SimpleNamespace(now=lambda: 1.0))
        self.then = then
        self.seen: list[str] = []

    def batchable(self, kind: Any) -> bool:
        return False

    def deliver(self, event: Any, *, tries: int, transport: str) -> Result:
        self.seen.append(event.subject)
        if self.then is not None:
            self.then()
        return DELIVERED


def test_a_pass_reads_the_outbox_once_and_says_whether_to_look_again() -> None:
    # Given two events waiting, and a batch of three
    outbox = _Outbox()
    outbox.add(2)
    router = Router(cast(Any, _Pipeline()), cast(Any, outbox), batch=3)
    # When the router makes a pass: one read, both delivered, nothing more to look for
    assert router._pass() is False
    assert outbox.reads == 1
    assert outbox.marked == [1, 2]
    # A full batch: there may be more, so it looks again at once
    outbox.add(3)
    assert router._pass() is True
    assert router._pass() is False  # the next read finds nothing
    assert outbox.marked == [1, 2, 3, 4, 5]


def test_the_running_router_delivers_what_its_handlers_write() -> None:
    # Given a handler that, on its first event, writes another (and the store then nudges)
    outbox = _Outbox()
    router: Router

    def write_once() -> None:
        if outbox._seq == 1:
            outbox.add(1)
            router.nudge()  # what the store does after the commit that wrote it

    pipeline = _Pipeline(write_once)
    router = Router(cast(Any, pipeline), cast(Any, outbox))
    outbox.add(1)
    router.start()
    try:
        router.nudge()
        deadline = time.monotonic() + 10
        while len(outbox.marked) < 2:  # both delivered, the second by a pass of its own
            assert time.monotonic() < deadline, f"delivered only {outbox.marked}"
            time.sleep(0.001)
    finally:
        router.stop()
    assert pipeline.seen == ["tasks/t1", "tasks/t2"]


# -- events that may wait a little (`nudge_soon`) ------------------------------------------------


def test_a_requests_nudge_soon_wants_a_pass_within_its_delay_and_a_nudge_at_once() -> None:
    router = Router(cast(Any, None), cast(Any, None), soon_s=60.0)
    router.hold()
    router.nudge_soon()
    router.let_go()
    assert router._wake.is_set()  # the loop is told, to wait for the nearer time
    assert router._due is not None and not router._now
    assert router._wait() is False  # woken, but not due yet: it waits on
    router.hold()
    router.nudge_soon()
    router.let_go()
    assert not router._wake.is_set()  # due already: nothing new to tell
    router.nudge()  # an event that may not wait
    assert router._wait() is True
    assert router._due is None and not router._now  # the pass takes both


def test_a_nudge_soon_off_a_request_is_a_nudge() -> None:
    # The router's own commits (a failed job's children cancelled, ...) are its next step
    router = Router(cast(Any, None), cast(Any, None), soon_s=60.0)
    router.nudge_soon()
    assert router._now and router._due is None


def test_a_held_nudge_soon_is_let_go_as_soon() -> None:
    router = Router(cast(Any, None), cast(Any, None), soon_s=60.0)
    router.hold()
    router.nudge_soon()
    assert not router._wake.is_set()
    router.let_go()
    assert router._wake.is_set() and router._due is not None and not router._now


def test_a_held_nudge_wins_over_a_held_nudge_soon() -> None:
    router = Router(cast(Any, None), cast(Any, None), soon_s=60.0)
    router.hold()
    router.nudge_soon()
    router.nudge()
    router.let_go()
    assert router._now
    assert router._wait() is True


def test_the_running_router_delivers_what_may_wait_once_due() -> None:
    # Given events whose commit only nudged soon, and a short delay
    outbox = _Outbox()
    outbox.add(3)
    pipeline = _Pipeline()
    router = Router(cast(Any, pipeline), cast(Any, outbox), soon_s=0.01)
    router.start()
    try:
        router.hold()  # as a request does
        router.nudge_soon()
        router.let_go()
        deadline = time.monotonic() + 10
        while len(outbox.marked) < 3:  # all three, in one pass
            assert time.monotonic() < deadline, f"delivered only {outbox.marked}"
            time.sleep(0.001)
    finally:
        router.stop()
    assert pipeline.seen == ["tasks/t1", "tasks/t2", "tasks/t3"]
