"""Serve the app with waitress, a production WSGI server (pure Python, threads, no fork)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server

log = logging.getLogger(__name__)
# waitress warns at every queued request; under pilot bursts that is noise, not news.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)


WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def url_host(host: str) -> str:
    """`host` as written in a URL from this machine: a wildcard address becomes loopback, an
    IPv6 address gets brackets."""
    host = WILDCARDS.get(host, host)
    return f"[{host}]" if ":" in host else host


class ApiServer:
    """A waitress server on a background thread; `port=0` picks a free port."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, threads: int = 8
    ) -> None:
        server: Any = create_server(
            app, host=host, port=port, threads=threads, ident="skypanda",
            channel_timeout=60, connection_limit=200,
        )  # fmt: skip
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
