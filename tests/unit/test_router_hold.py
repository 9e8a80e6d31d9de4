"""The embedded router's wakes held until a request's reply is written (runtime.router)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, cast

import pytest

from skypanda.adapters.local.doorbell import LocalDoorbell
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
