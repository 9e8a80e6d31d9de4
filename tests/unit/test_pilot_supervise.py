"""Specification of how the pilot watches one payload from one thread (`skypanda.pilot.supervise`)
and finds its command (`runner.executable`), on real subprocesses."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from skypanda.pilot.runner import RECORD_SOURCE, executable, run_payload
from skypanda.pilot.supervise import PayloadIO, kill_group

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the pilot is POSIX only")


def spawn(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_to_end(io: PayloadIO) -> None:
    """Wait for the payload's exit, read the rest of its output, release its descriptors."""
    try:
        while not io.wait(5.0):
            pass
        io.drain(1.0)
    finally:
        io.close()


def test_output_reaches_the_callback_in_the_waiting_thread_and_the_exit_is_seen() -> None:
    # Given a payload that prints twice, pausing between
    chunks: list[tuple[str, bytes]] = []
    proc = spawn("echo one; sleep 0.2; echo two")
    io = PayloadIO(proc, lambda chunk: chunks.append((threading.current_thread().name, chunk)))
    # When it is waited for until it exits, then its pipe drained
    run_to_end(io)
    # Then all of its output came to the callback, in the thread that waited, and it was reaped
    assert b"".join(chunk for _, chunk in chunks) == b"one\ntwo\n"
    assert {name for name, _ in chunks} == {threading.current_thread().name}
    assert proc.returncode == 0


def test_a_payload_printing_as_it_is_killed_never_blocks_on_its_pipe() -> None:
    # Given a payload that writes far more than a pipe holds when it gets SIGTERM, then exits 0
    size = 400_000
    script = f"trap 'head -c {size} /dev/zero | tr \"\\000\" x; exit 0' TERM; echo ready; " + (
        "sleep 60 & wait"
    )
    out = bytearray()
    proc = spawn(script)
    io = PayloadIO(proc, out.extend)
    try:
        while b"ready" not in out:
            assert not io.wait(5.0)
        # When its group is killed with a grace long enough to tell a SIGKILL apart
        killed = kill_group(proc, 60.0, io)
        io.drain(1.0)
    finally:
        io.close()
    # Then its output was read during the grace: it wrote all of it and exited by itself
    assert killed
    assert proc.returncode == 0
    assert out.count(b"x") == size


def test_a_failing_output_callback_is_reported_once_and_the_payload_still_ends() -> None:
    # Given a callback that fails
    calls: list[bytes] = []

    def broken(chunk: bytes) -> None:
        calls.append(chunk)
        raise RuntimeError("sink down")

    proc = spawn("echo a; sleep 0.1; echo b")
    io = PayloadIO(proc, broken)
    # When the payload runs to its end
    run_to_end(io)
    # Then the callback was called once only, and the payload was reaped
    assert len(calls) == 1
    assert proc.returncode == 0


def test_executable_finds_a_command_as_exec_would_and_leaves_the_rest_to_it(
    tmp_path: Path,
) -> None:
    # Given two directories on a PATH, the command only executable in the second one
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "tool").write_text("#!/bin/sh\n")  # not executable: exec would skip it
    (second / "tool").write_text("#!/bin/sh\n")
    (second / "tool").chmod(0o755)
    path = f"{first}{os.pathsep}{second}"
    # Then it is found in the second, and the same answer is remembered
    assert executable("tool", path) == str(second / "tool")
    assert executable("tool", path) == str(second / "tool")
    # And names with a slash, relative PATH entries and missing commands are left to exec
    assert executable("./tool", path) is None
    assert executable("tool", f"relative{os.pathsep}{second}") is None
    assert executable("no-such-tool-here", path) is None


def test_a_payload_still_starts_when_its_remembered_command_went_away(tmp_path: Path) -> None:
    # Given a command found (and remembered) in a first directory of PATH, then removed there
    first = tmp_path / "bin"
    first.mkdir()
    true = shutil.which("true")
    assert true is not None
    shutil.copy(true, first / "true")
    (first / "true").chmod(stat.S_IRWXU)
    path = f"{first}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    spec: dict[str, Any] = {"id": "j", "command": ["true"], "env": {"PATH": path}}
    runs = [run_payload(spec, tmp_path / "w1", on_output=lambda _: None, should_stop=lambda: None)]
    assert executable("true", path) == str(first / "true")
    (first / "true").unlink()
    # When another payload runs the same command
    runs.append(
        run_payload(spec, tmp_path / "w2", on_output=lambda _: None, should_stop=lambda: None)
    )
    # Then both finished: the second found the command by the exec's own search
    assert [r.status for r in runs] == ["finished", "finished"]


def test_a_payload_group_is_recorded_as_a_link_while_it_runs_and_forgotten_after(
    tmp_path: Path,
) -> None:
    # Given a payload that looks at the record of its own group while it runs
    groups = tmp_path / "groups"
    wait = f'for i in $(seq 500); do [ -e "{groups}/$$" ] && break; sleep 0.01; done'
    spec: dict[str, Any] = {"id": "j", "command": ["sh", "-c", f'{wait}; ls "{groups}"; echo $$']}
    out = bytearray()
    # When it runs
    result = run_payload(
        spec, tmp_path / "w", on_output=out.extend, should_stop=lambda: None, groups=groups
    )
    # Then its group was recorded under its id while it ran, and only the link source is left
    listed, pid = out.decode().split()[:-1], out.decode().split()[-1]
    assert result.status == "finished"
    assert pid in listed
    assert sorted(p.name for p in groups.iterdir()) == [RECORD_SOURCE]
