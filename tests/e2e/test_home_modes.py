"""Everything skypanda keeps under `$SKYPANDA_HOME` is private to the user that runs it
(issue 13: the database held every task's env and was world-readable): files 0600, directories
0700; the home itself 0711, so payloads running as another user reach their job directories
but cannot list it. Checked after a real run (database, WAL, logs, outputs, users, tokens)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from tests.e2e.conftest import cli, wait_until

PILOTS_OWN = "work"  # the pilots' work roots: each pilot sets its own modes (pilot.sandbox)


def _loose(home: Path) -> list[str]:
    """What under `home` others may read or write (the pilots' work roots aside)."""
    found = []
    for path in home.rglob("*"):
        if path.relative_to(home).parts[0] == PILOTS_OWN:
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        if mode & 0o077:
            found.append(f"{path.relative_to(home)} {oct(mode)}")
    return sorted(found)


def test_the_home_holds_nothing_others_can_read(system: LocalSystem, api: ApiClient) -> None:
    old = os.umask(0o022)  # as a typical login shell has it
    try:
        cli(system, "users", "add", "alice")
        task = api.call(
            "POST", "/v1/tasks",
            {"name": "t", "command": ["sh", "-c", "echo hello; echo out > result.txt"],
             "n_jobs": 2, "outputs": ["result.txt"]},
        )  # fmt: skip
        wait_until(
            lambda: api.call("GET", f"/v1/tasks/{task['id']}")["status"] == "done",
            what="the task to end",
        )
    finally:
        os.umask(old)
    home = system.opts.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o711
    written = {p.name for p in home.iterdir()}
    assert {"skypanda.db", "blobs", "pilots", "users.json", "token"} <= written
    assert list((home / "blobs").rglob("*.log")), "the run wrote logs"
    assert _loose(home) == []
