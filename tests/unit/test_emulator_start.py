"""Starting an emulator (runtime.emulators._start) with real processes: one that exits before
it answers (its port was taken meanwhile) is started again on another port; a server that
answers garbage is not taken for ready."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.errors import BackendUnavailable
from skypanda.runtime import emulators


def test_an_emulator_that_exits_at_start_is_started_again_on_another_port(tmp_path: Path) -> None:
    # Given an emulator command whose first start exits at once, as when its port was taken
    ports: list[int] = []

    def argv(port: int) -> list[str]:
        ports.append(port)
        if len(ports) == 1:
            return ["sh", "-c", "echo 'Address already in use'; exit 1"]
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                "--directory", str(tmp_path)]  # fmt: skip

    # When it is started
    emu = emulators._start("fake", "FAKE_EMULATOR_HOST", argv, "/", timeout=120)
    try:
        # Then the second start serves, on its own port
        assert len(ports) == 2 and emu.host == f"127.0.0.1:{ports[1]}"
        assert emu.proc is not None and emu.proc.poll() is None
        assert emulators._ready(emu.url + "/")
    finally:
        emu.stop()


def test_an_emulator_that_never_starts_is_an_error_naming_it_with_its_output() -> None:
    def argv(port: int) -> list[str]:
        return ["sh", "-c", "echo 'no java here'; exit 1"]

    with pytest.raises(BackendUnavailable) as e:
        emulators._start("fake", "FAKE_EMULATOR_HOST", argv, "/", timeout=120)
    assert "the fake emulator did not start" in str(e.value) and "no java here" in str(e.value)


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers every connection with bytes that are not HTTP/1
    (as a gRPC server does), then closes it."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"\x00\x00\x18\x04\x00\x00\x00\x00\x00 Unexpected HTTP/1.x request\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join(5)


def test_a_server_answering_garbage_is_not_ready(garbage_server: int) -> None:
    assert emulators._ready(f"http://127.0.0.1:{garbage_server}/") is False
