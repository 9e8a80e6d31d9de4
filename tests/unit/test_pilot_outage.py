"""The pilot rides out a server outage (issue 13): its patient calls (heartbeats, reports) and
its uploads wait for a server that does not answer, within the outage budget, and give up
after it; ordinary calls keep their short retry budget."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from skypanda.pilot.client import ApiClient, ApiError
from skypanda.pilot.config import parse_args
from skypanda.pilot.outage import DEFAULT_OUTAGE_BUDGET_S, STOPPING_BUDGET_S, Outage
from skypanda.pilot.staging import StagingError, Stopped, Uploader


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers any POST with {"ok": true}, and a PUT with the size and SHA-256 it received."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json({"ok": True})

    def do_PUT(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json({"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "uri": "u"})

    def _json(self, answer: object) -> None:
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server_once(port: int, when: Callable[[], bool]) -> Iterator[None]:
    """A server on `port` that starts listening only once `when()` is true (nothing listens
    there before: connections are refused, as by a server that is down)."""
    stop = threading.Event()
    started: list[http.server.ThreadingHTTPServer] = []

    def run() -> None:
        while not when():
            if stop.wait(0.02):
                return
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        started.append(server)
        server.serve_forever(poll_interval=0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        for server in started:
            server.shutdown()
            server.server_close()
        thread.join(5)


def test_a_patient_call_waits_for_a_server_that_comes_back() -> None:
    # Given a server that is down (nothing listens), and a client with a short retry budget
    # but an outage budget
    port = _free_port()
    client = ApiClient(f"http://127.0.0.1:{port}", None, retries=1, backoff_s=0.05,
                       outage_s=60)  # fmt: skip
    # When an ordinary call is made, Then it fails after its short retries
    with pytest.raises(ApiError) as info:
        client.call("POST", "/v1/x", {})
    assert info.value.unreachable
    # When a patient call is made, and the server comes back while it waits
    with _server_once(port, when=lambda: (client.outage.down_for() or 0) > 0.3):
        answer = client.call("POST", "/v1/x", {}, patient=True)
    # Then it gets the answer, and the client knows the server is up again
    assert answer == {"ok": True}
    assert client.outage.down_for() is None


def test_a_patient_call_gives_up_once_the_outage_budget_is_spent() -> None:
    # Given a server that stays down, and an outage budget of 1 s
    client = ApiClient(f"http://127.0.0.1:{_free_port()}", None, retries=0, backoff_s=0.05,
                       outage_s=1.0)  # fmt: skip
    # When a patient call is made, Then it gives up as unreachable, within about the budget
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        client.call("POST", "/v1/x", {}, patient=True)
    assert info.value.unreachable
    assert 0.5 <= time.monotonic() - started < 5
    assert client.outage.over()


def test_the_outage_tracker_is_shared_and_stopping_shortens_it() -> None:
    now = [0.0]
    outage = Outage(600.0, clock=lambda: now[0])
    # Given the server answering, Then there is no outage
    assert outage.down_for() is None and not outage.over()
    # When calls find it down, Then the outage runs from the first of them
    assert outage.unanswered("refused") == 0
    now[0] = 30.0
    assert outage.unanswered("refused") == 30 and outage.down_for() == 30
    assert not outage.over()
    # When the pilot is told to stop, Then it waits only briefly for the server
    outage.stopping()
    assert outage.budget_s == STOPPING_BUDGET_S and outage.over()
    # When the server answers, Then the outage is over
    outage.answered()
    assert outage.down_for() is None


def test_an_upload_waits_for_a_server_that_refused_the_connection(tmp_path: Path) -> None:
    # Given an output to upload while the server is down (connections refused)
    out = tmp_path / "out.txt"
    out.write_bytes(b"result\n")
    port = _free_port()
    outage = Outage(60.0)
    uploader = Uploader(f"http://127.0.0.1:{port}", "t", "p1", outage=outage)
    # When the server comes back while the upload waits
    with _server_once(port, when=lambda: outage.down_for() is not None):
        done = uploader.upload("j1", 1, "out.txt", out, lambda: None)
    # Then the output is uploaded once, whole
    assert (done.size, done.sha256) == (7, hashlib.sha256(b"result\n").hexdigest())


def test_an_upload_without_an_outage_budget_fails_at_once(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_bytes(b"x")
    uploader = Uploader(f"http://127.0.0.1:{_free_port()}", "t", "p1")
    with pytest.raises(StagingError, match="upload failed"):
        uploader.upload("j1", 1, "out.txt", out, lambda: None)


def test_an_upload_waiting_for_the_server_stops_when_told(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_bytes(b"x")
    uploader = Uploader(f"http://127.0.0.1:{_free_port()}", "t", "p1", outage=Outage(60.0))
    with pytest.raises(Stopped):
        uploader.upload("j1", 1, "out.txt", out, lambda: 1201)


def test_the_outage_budget_is_a_flag_with_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKYPANDA_OUTAGE_BUDGET", raising=False)
    base = ["--server", "http://127.0.0.1:1", "--queue", "q"]
    assert parse_args(base).outage_budget_s == DEFAULT_OUTAGE_BUDGET_S
    assert parse_args([*base, "--outage-budget", "30"]).outage_budget_s == 30
    monkeypatch.setenv("SKYPANDA_OUTAGE_BUDGET", "45")
    assert parse_args(base).outage_budget_s == 45
    with pytest.raises(SystemExit):
        parse_args([*base, "--outage-budget", "0"])
