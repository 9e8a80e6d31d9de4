"""Serve the app with waitress, a production WSGI server (pure Python, threads, no fork)."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import create_server

log = logging.getLogger(__name__)
# waitress warns at every queued request; under pilot bursts that is noise, not news.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)


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
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # the socket closes under the loop at shutdown
            self._server.run()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, finish running requests (5 s at most), drop idle keep-alive
        connections (the loop runs while any is open), and end the serving thread."""
        self._server.close()
        self._server.task_dispatcher.shutdown(timeout=5)
        for channel in list(self._server._map.values()):
            if isinstance(channel, HTTPChannel):
                with contextlib.suppress(OSError):
                    channel.close()
        self._thread.join(timeout=5)
