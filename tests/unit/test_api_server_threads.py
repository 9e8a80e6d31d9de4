"""waitress's request threads woken last-idle-first (api.server.LastIdleFirst): a steady
stream of requests stays on the threads it needs, whose SQLite connections stay warm."""

from __future__ import annotations

import threading
import time
import urllib.request
from typing import Any, cast

from skypanda.api.server import ApiServer, LastIdleFirst, LastIdleFirstDispatcher


class _Task:
    """What waitress hands a request thread: `service` records the thread that ran it."""

    def __init__(self, ran: list[str]) -> None:
        self.ran = ran
        self.done = threading.Event()

    def service(self) -> None:
        self.ran.append(threading.current_thread().name)
        self.done.set()

    def cancel(self) -> None:
        self.done.set()


def _all_idle(dispatcher: LastIdleFirstDispatcher, threads: int) -> None:
    cv = dispatcher.queue_cv
    assert isinstance(cv, LastIdleFirst)
    deadline = time.monotonic() + 10
    while True:  # every thread waits for work (a condition on the dispatcher's own state)
        with dispatcher.lock:
            if cv.waiting == threads:
                return
        assert time.monotonic() < deadline, "the request threads never all went idle"
        time.sleep(0.001)


def test_requests_one_after_another_run_on_the_thread_idle_last() -> None:
    # Given a pool of four request threads, all idle
    dispatcher = LastIdleFirstDispatcher()
    dispatcher.set_thread_count(4)
    try:
        ran: list[str] = []
        for _ in range(6):
            _all_idle(dispatcher, 4)
            # When requests come one at a time
            task = _Task(ran)
            dispatcher.add_task(cast(Any, task))
            assert task.done.wait(10)
        # Then after the first, each runs on the thread that served the one before
        assert len(set(ran[1:])) == 1
        assert ran[1] == ran[0]
    finally:
        dispatcher.shutdown(timeout=5)
    assert not dispatcher.threads  # shutdown woke every thread, and each ended


def test_a_burst_is_served_by_as_many_threads_as_it_needs() -> None:
    # Given two idle threads and two requests that each wait for the other to have started
    dispatcher = LastIdleFirstDispatcher()
    dispatcher.set_thread_count(2)
    started = threading.Barrier(2, timeout=10)
    names: list[str] = []

    class Both(_Task):
        def service(self) -> None:
            started.wait()  # only passes if both run at once, on two threads
            super().service()

    try:
        tasks = [Both(names), Both(names)]
        for task in tasks:
            dispatcher.add_task(cast(Any, task))
        assert all(t.done.wait(10) for t in tasks)
        assert len(set(names)) == 2
    finally:
        dispatcher.shutdown(timeout=5)


def test_a_wait_that_times_out_leaves_no_waiter_behind() -> None:
    lock = threading.Lock()
    cv = LastIdleFirst(lock)
    with lock:
        assert cv.wait(timeout=0.01) is False
        assert cv.waiting == 0
        cv.notify()  # nobody waits: nothing happens


def test_the_server_answers_on_its_threads() -> None:
    # The real server with the dispatcher: requests answered, and it stops cleanly
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [threading.current_thread().name.encode()]

    server = ApiServer(app, threads=3)
    server.start()
    try:
        names = []
        for _ in range(3):
            with urllib.request.urlopen(server.url + "/", timeout=10) as reply:
                names.append(reply.read().decode())
        assert all(n.startswith("waitress-") for n in names)
    finally:
        server.stop()
