"""Test helpers shared by several suites: a clock that moves only when told, and the embedded
services on a temporary SQLite file."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from skypanda.adapters.local.bus import OutboxBus
from skypanda.adapters.local.files import FileBlobs
from skypanda.adapters.local.sqlite import SqliteStore
from skypanda.domain.models import Queue
from skypanda.handlers.services import Services

T0 = 1_700_000_000.0


class FakeClock:
    """A clock that moves only when told to (`now()` is the Clock port)."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


@contextmanager
def sqlite_services(tmp_path: Path, clock: FakeClock, queue: Queue) -> Iterator[Services]:
    """Services on a fresh SQLite store and file blobs, with `queue` defined; closed after."""
    store = SqliteStore(tmp_path / "db.sqlite", clock=clock.now)
    store.put_queue(queue)
    try:
        yield Services(
            store=store, bus=OutboxBus(store), blobs=FileBlobs(tmp_path / "b"), clock=clock
        )
    finally:
        store.close()


@contextmanager
def json_server(
    answer: Callable[[str], Any],
    post: Callable[[str, dict[str, str]], tuple[int, Any]] | None = None,
) -> Iterator[str]:
    """A JSON HTTP server on 127.0.0.1 for the test's duration: GET PATH answers
    `answer(PATH)` as JSON (None: 404); POST PATH with a form answers `post(PATH, form)` as
    (status, JSON) when given. Yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answer(self.path)
            self._send(404, {}) if body is None else self._send(200, body)

        def do_POST(self) -> None:
            if post is None:
                self._send(405, {})
                return
            length = int(self.headers.get("Content-Length") or 0)
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            self._send(*post(self.path, form))

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def tar_archive(files: dict[str, bytes], *, zipped: bool = True) -> bytes:
    """A tar archive holding `files` (name -> content), gzipped unless `zipped` is False."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if zipped else buf.getvalue()
