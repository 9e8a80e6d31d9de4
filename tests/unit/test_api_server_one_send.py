"""A response's head and body go out in one send when the body is one piece of known length
(api.server.OneSendTask); any other body is written as waitress writes it, and every
response arrives whole."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from skypanda.api.server import ApiServer, OneSendChannel


def _app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes] | list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/json":
        body = b'{"jobs":[]}\n'
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])  # fmt: skip
        return [body]
    if path == "/stream":  # no length: chunked, in pieces
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"one ", b"two ", b"three"])
    start_response("204 No Content", [])
    return []


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What the server's channels write, one entry per `write_soon`."""
    written: list[bytes] = []
    write_soon = OneSendChannel.write_soon

    def recording(self: OneSendChannel, data: bytes) -> int:
        if data:
            written.append(bytes(data))
        return int(write_soon(self, data))

    monkeypatch.setattr(OneSendChannel, "write_soon", recording)
    return written


def _get(server: ApiServer, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(server.url + path, timeout=10) as reply:
        return reply.status, reply.read()


def test_a_json_answer_is_one_send_and_others_arrive_whole(sends: list[bytes]) -> None:
    server = ApiServer(_app, threads=2)
    server.start()
    try:
        # A body of known length: its head and body in one write
        assert _get(server, "/json") == (200, b'{"jobs":[]}\n')
        assert len(sends) == 1
        head, _, body = sends[0].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and body == b'{"jobs":[]}\n'
        # A streamed body: written piece by piece, arriving whole
        sends.clear()
        assert _get(server, "/stream") == (200, b"one two three")
        assert len(sends) > 2
        # No body at all
        assert _get(server, "/none") == (204, b"")
    finally:
        server.stop()
