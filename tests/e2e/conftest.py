"""A private embedded system per test: SQLite in tmp_path, HTTP on a free port, real pilots."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.local.runtime import LocalOptions, LocalSystem
from skypanda.domain.models import Queue
from skypanda.pilot.client import ApiClient

REPO = Path(__file__).resolve().parents[2]


def fast_queue(**overrides: Any) -> Queue:
    """A queue with short timeouts so failure paths show within seconds."""
    settings: dict[str, Any] = {
        "name": "local", "min_pilots": 0, "max_pilots": 2, "heartbeat_interval_s": 0.5,
        "heartbeat_timeout_s": 4.0, "idle_timeout_s": 3.0, "jobs_per_acquire": 8,
    }  # fmt: skip
    settings.update(overrides)
    return Queue(**settings)


@pytest.fixture
def make_system(tmp_path: Path) -> Iterator[Callable[..., LocalSystem]]:
    started: list[LocalSystem] = []

    def make(queue: Queue | None = None, **opts: Any) -> LocalSystem:
        home = tmp_path / f"home{len(started)}"
        system = LocalSystem(
            LocalOptions(home=home, queue=queue or fast_queue(), tick_s=0.3, **opts)
        )
        started.append(system.start())
        return system

    yield make
    for system in started:
        system.stop()


@pytest.fixture
def system(make_system: Callable[..., LocalSystem]) -> LocalSystem:
    return make_system()


@pytest.fixture
def api(system: LocalSystem) -> ApiClient:
    return ApiClient(system.url, system.token)


def cli(
    system: LocalSystem | None, *args: str, home: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `skypanda` command against `system`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPANDA_")}
    if system is not None:
        env.update(
            SKYPANDA_SERVER=system.url,
            SKYPANDA_TOKEN=system.token,
            SKYPANDA_HOME=str(system.opts.home),
        )
    elif home is not None:
        env["SKYPANDA_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "skypanda", *args], capture_output=True, text=True, env=env,
        timeout=timeout, cwd=REPO, check=False,
    )  # fmt: skip


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def write_task(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
