"""`skypanda up` through the installed command: one server per home, friendly start-up
errors, and listening on another address (pilots elsewhere)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import wait_until

SKYPANDA = str(Path(sys.executable).parent / "skypanda")


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPANDA_")}
    return {**env, "SKYPANDA_HOME": str(home)}


def run_cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed `skypanda` command, on `home`, to its end."""
    return subprocess.run(
        [SKYPANDA, *args], env=env_for(home), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


class Up:
    """A `skypanda up` in the background (stopped with Ctrl-C at the end of the test)."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = home
        self.proc = subprocess.Popen(
            [SKYPANDA, "up", "--port", "0", *args], env=env_for(home),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.info: dict[str, object] = wait_until(self._started, 90, "server.json")

    def _started(self) -> dict[str, object] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"up exited {self.proc.returncode}: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        path = self.home / "server.json"
        return json.loads(path.read_text()) if path.exists() else None

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


@pytest.fixture
def ups() -> Iterator[list[Up]]:
    started: list[Up] = []
    yield started
    for up in started:
        if up.proc.poll() is None:
            up.stop()


def test_a_second_up_on_the_same_home_is_refused_naming_the_first(
    tmp_path: Path, ups: list[Up]
) -> None:
    # Given `skypanda up` running on a home
    home = tmp_path / "home"
    first = Up(home)
    ups.append(first)
    # When a second `skypanda up` starts on the same home
    second = run_cli(home, "up", "--port", "0")
    # Then it exits 1 with one sentence naming the running server's URL and pid
    assert second.returncode == 1, second.stderr
    assert "Traceback" not in second.stderr
    assert f"{first.info['url']} (pid {first.info['pid']})" in second.stderr
    assert "in use by a skypanda server" in second.stderr
    # And the first one's server.json is untouched, and it stops cleanly, removing it
    assert json.loads((home / "server.json").read_text()) == first.info
    code, _ = first.stop()
    assert code == 0
    assert not (home / "server.json").exists()
    # And once it has stopped, the home is free again (the lock died with the process)
    again = Up(home)
    ups.append(again)
    assert again.stop()[0] == 0


def test_start_up_failures_are_one_sentence_never_a_traceback(tmp_path: Path) -> None:
    # Given a port another program listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When `skypanda up` is asked for it, Then it says the port is in use, and what to do
        busy = run_cli(tmp_path / "a", "up", "--port", str(port))
    assert busy.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in busy.stderr
    assert "--port 0" in busy.stderr
    # And an address of no interface here, or a name that does not resolve, is named
    absent = run_cli(tmp_path / "b", "up", "--host", "192.0.2.1")
    assert "192.0.2.1: no interface of this machine has that address" in absent.stderr
    unknown = run_cli(tmp_path / "c", "up", "--host", "no-such-host.invalid")
    assert "not an address or a known host name" in unknown.stderr
    # And a home that cannot be made (a file is in the way) is named too
    (tmp_path / "file").write_text("")
    bad_home = run_cli(tmp_path / "file" / "home", "up", "--port", "0")
    assert "cannot use home" in bad_home.stderr
    for result in (busy, absent, unknown, bad_home):
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert not result.stdout


def test_up_help_says_where_the_token_and_server_file_go(tmp_path: Path) -> None:
    shown = run_cli(tmp_path, "up", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "<home>/token (mode 0600" in text
    assert "<home>/server.json" in text
    assert "$SKYPANDA_HOME (default ~/.skypanda)" in text
    assert "[default: 127.0.0.1]" in text


def test_listening_on_every_address_warns_and_names_a_pilot_url(
    tmp_path: Path, ups: list[Up]
) -> None:
    # When `skypanda up --host 0.0.0.0` starts
    up = Up(tmp_path / "home", "--host", "0.0.0.0")
    ups.append(up)
    # Then the CLI's URL is loopback, and pilots elsewhere get this machine's name
    port = str(up.info["url"]).rsplit(":", 1)[1]
    assert up.info["url"] == f"http://127.0.0.1:{port}"
    assert up.info["pilot_url"] == f"http://{socket.getfqdn()}:{port}"
    # And it warns that the traffic is not encrypted
    code, err = up.stop()
    assert code == 0
    assert "warning: listening on 0.0.0.0 without TLS" in err


def test_a_pilot_started_by_hand_reaches_a_server_on_another_address(
    tmp_path: Path, ups: list[Up]
) -> None:
    # Given `skypanda up --host 127.0.0.2` (a second loopback address: another host's view)
    home = tmp_path / "home"
    up = Up(home, "--host", "127.0.0.2")
    ups.append(up)
    url = str(up.info["url"])
    port = int(url.rsplit(":", 1)[1])
    assert url == f"http://127.0.0.2:{port}" == up.info["pilot_url"]
    # Then it does not listen on 127.0.0.1
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
    # And given a queue no local pilot serves, and a task on it
    queues = tmp_path / "queues.yaml"
    queues.write_text("- {name: remote, min_pilots: 0, max_pilots: 0}\n")
    applied = run_cli(home, "queues", "apply", str(queues))
    assert applied.returncode == 0, applied.stderr
    task_file = tmp_path / "task.yaml"
    task_file.write_text("name: far\nqueue: remote\nn_jobs: 2\ncommand: [echo, hello]\n")
    submitted = run_cli(home, "submit", str(task_file))
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    # When a pilot is started by hand with the pilot URL from server.json
    pilot = run_cli(
        home, "pilot", "--server", url, "--queue", "remote",
        "--token-file", str(home / "token"), "--idle-timeout", "2",
    )  # fmt: skip
    # Then it ran the task's jobs, and the task is done
    assert pilot.returncode == 0, pilot.stderr
    shown = run_cli(home, "status", task_id, "--json")
    assert json.loads(shown.stdout)["status"] == "done", shown.stdout
