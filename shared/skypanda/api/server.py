"""Serve the app with waitress, a production WSGI server (pure Python, threads, no fork)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ThreadedTaskDispatcher, WSGITask

log = logging.getLogger(__name__)
# waitress warns at every queued request; under pilot bursts that is noise, not news.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)


WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def url_host(host: str) -> str:
    """`host` as written in a URL from this machine: a wildcard address becomes loopback, an
    IPv6 address gets brackets."""
    host = WILDCARDS.get(host, host)
    return f"[{host}]" if ":" in host else host


class LastIdleFirst(threading.Condition):
    """A condition variable whose `notify` wakes the thread that began waiting last.

    `threading.Condition` wakes its waiters in the order they came, so waitress's request
    threads take turns: each request runs on the thread idle the longest, whose SQLite
    connection and caches are the coldest (every other thread's writes came since). Woken
    last-idle-first, a steady stream of requests stays on the few threads it needs, with
    their connections' statements and pages warm: a chain's link spent 1.1 ms in SQL where
    it spent 1.3-1.8 ms with each request on the next of 24 threads in turn.
    """

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self._mutex = lock
        self._stack: list[threading.Lock] = []  # the waiters' locks, the last waiter's on top

    def wait(self, timeout: float | None = None) -> bool:
        """As `Condition.wait` (called with the lock held, which it releases while waiting)."""
        waiter = threading.Lock()
        waiter.acquire()
        self._stack.append(waiter)
        self._mutex.release()
        woken = False
        try:
            woken = waiter.acquire(True, -1 if timeout is None else timeout)
        finally:
            self._mutex.acquire()
            if not woken:
                with contextlib.suppress(ValueError):  # notified just as the time was up
                    self._stack.remove(waiter)
        return woken

    def notify(self, n: int = 1) -> None:
        for _ in range(min(n, len(self._stack))):
            self._stack.pop().release()

    def notify_all(self) -> None:
        self.notify(len(self._stack))

    @property
    def waiting(self) -> int:
        """How many threads wait (read with the lock held)."""
        return len(self._stack)


class LastIdleFirstDispatcher(ThreadedTaskDispatcher):
    """waitress's pool of request threads, the next request going to the thread that became
    idle last (`LastIdleFirst`)."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_cv = LastIdleFirst(self.lock)


class OneSendTask(WSGITask):
    """waitress's request task, sending a response's head and its whole body (a body of known
    length written in one piece, as every JSON answer is) in one `send`: waitress sends each
    write at once, so the head went alone, and a pilot woke to read it, then again for the
    body, on every call."""

    def write(self, data: bytes) -> None:
        if self.wrote_header or not data or not self.complete:
            super().write(data)
            return
        head = self.build_response_header()
        self.wrote_header = True
        if self.has_body and not self.chunked_response and self.content_length == len(data):
            self.content_bytes_written += len(data)
            self.channel.write_soon(head + data)
            return
        self.channel.write_soon(head)
        super().write(data)  # the body as waitress writes it (the head is written)


class OneSendChannel(HTTPChannel):
    task_class = OneSendTask


class ApiServer:
    """A waitress server on a background thread; `port=0` picks a free port."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, threads: int = 8
    ) -> None:
        dispatcher = LastIdleFirstDispatcher()
        dispatcher.set_thread_count(threads)
        try:
            server: Any = create_server(
                app, host=host, port=port, threads=threads, ident="skypanda",
                channel_timeout=60, connection_limit=200, _dispatcher=dispatcher,
            )  # fmt: skip
        except BaseException:
            dispatcher.shutdown(timeout=1)  # e.g. the port is taken: no threads left behind
            raise
        server.channel_class = OneSendChannel
        self._server = server
        self.wsgi = app
        self.host = host
        self.port: int = server.effective_port
        self._thread = threading.Thread(target=self._run, name="skypanda-http", daemon=True)

    @property
    def url(self) -> str:
        """The URL to reach it from this machine (loopback when it listens on every address)."""
        return f"http://{url_host(self.host)}:{self.port}"

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # the socket closes under the loop at shutdown
            self._server.run()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, finish running requests (5 s at most), drop idle keep-alive
        connections (the loop runs while any is open), and end the serving thread.

        The loop is woken to end: closing sockets does not wake its select, which would
        otherwise notice only at its timeout (1 s). So the trigger (the pipe finishing
        requests pull) stays open until the loop itself closes it, leaving its map empty."""
        server = self._server
        wasyncore.dispatcher.close(server)  # the listening socket only: no new connection
        server.task_dispatcher.shutdown(timeout=5)
        for channel in list(server._map.values()):
            if isinstance(channel, HTTPChannel):
                with contextlib.suppress(OSError):
                    channel.close()
        server.trigger.pull_trigger(server.trigger.close)  # run by the loop, which then ends
        self._thread.join(timeout=5)
        server.trigger.close()  # a loop that had died already (idempotent otherwise)
