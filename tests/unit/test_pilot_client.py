"""The pilot's kept HTTP/1.1 connection (`pilot.client._Kept`) against a real local server:
answers by Content-Length, chunked and to the close; errors with the server's message; a
connection the server dropped while idle is replaced at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from skypanda.pilot.client import ApiClient, ApiError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.path, self.headers.get("Authorization"), body))
        self.server.connections.add(self.client_address)
        kind = self.path.rsplit("/", 1)[-1]
        if kind == "chunked":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b'{"a": ', b"[1, 2", b"]}"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif kind == "close":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"bye")
            self.close_connection = True
        elif kind == "empty":
            self.send_response(204)
            self.end_headers()
        elif kind == "drop":  # answered as kept alive, then closed (an idle timeout's effect)
            self._json(200, {"dropped": True})
            self.close_connection = True
        elif kind == "refused":
            self._json(409, {"message": "the job changed concurrently"})
        else:
            self._json(200, {"echo": json.loads(body or b"null")})

    def _json(self, status: int, value: object) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str | None, bytes]] = []
        self.connections: set[tuple[str, int]] = set()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def client(server: _Server) -> Iterator[ApiClient]:
    api = ApiClient(f"http://127.0.0.1:{server.server_port}", "tok", timeout=10,
                    retries=0, keep_alive=True)  # fmt: skip
    yield api
    api.close()


def test_calls_of_a_thread_share_one_connection_and_carry_the_token(
    server: _Server, client: ApiClient
) -> None:
    # When a thread makes three calls
    answers = [client.call("POST", "/v1/x", {"n": n}) for n in range(3)]
    # Then each got its own answer, over one connection, with the bearer token
    assert answers == [{"echo": {"n": n}} for n in range(3)]
    assert len(server.connections) == 1
    assert {auth for _, auth, _ in server.seen} == {"Bearer tok"}


def test_chunked_close_delimited_and_empty_answers_are_read_whole(
    server: _Server, client: ApiClient
) -> None:
    assert client.call("POST", "/v1/chunked") == {"a": [1, 2]}
    assert client.call("POST", "/v1/close") == "bye"  # then the connection is dropped
    assert client.call("POST", "/v1/empty") is None
    assert client.call("POST", "/v1/x", {"after": True}) == {"echo": {"after": True}}
    assert len(server.connections) == 2  # a new one after the server's close


def test_an_error_answer_raises_with_the_servers_message(client: ApiClient) -> None:
    with pytest.raises(ApiError) as e:
        client.call("POST", "/v1/refused", {})
    assert (e.value.status, e.value.message) == (409, "the job changed concurrently")
    assert client.call("POST", "/v1/x", {"still": 1}) == {"echo": {"still": 1}}


def test_a_connection_dropped_while_idle_is_replaced_at_once(
    server: _Server, client: ApiClient
) -> None:
    # Given a kept connection that the server shut after answering (as an idle timeout does)
    assert client.call("POST", "/v1/drop") == {"dropped": True}
    # When the next call goes (retries=0: no retry but the kept connection's own one)
    # Then it is answered, on a new connection
    assert client.call("POST", "/v1/x", {"n": 2}) == {"echo": {"n": 2}}
    assert len(server.connections) == 2
    assert [path for path, _, _ in server.seen] == ["/v1/drop", "/v1/x"]


def test_an_unreachable_server_is_status_zero() -> None:
    srv = _Server()
    port = srv.server_port
    srv.server_close()  # nothing listens there any more
    api = ApiClient(f"http://127.0.0.1:{port}", None, timeout=5, retries=0, keep_alive=True)
    with pytest.raises(ApiError) as e:
        api.call("POST", "/v1/x", {})
    assert e.value.unreachable and f"127.0.0.1:{port}" in e.value.message
