"""A private embedded system per test: SQLite in tmp_path, HTTP on a free port, real pilots."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from skypanda.domain.models import Queue
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalOptions, LocalSystem
from tests.e2e import postmortem

REPO = Path(__file__).resolve().parents[2]


def fast_queue(**overrides: Any) -> Queue:
    """A queue with short timeouts so failure paths show within seconds. A pilot is missed
    after 10 s without a heartbeat (20 missed beats): a live pilot starved on a busy machine
    must not be taken for a dead one."""
    settings: dict[str, Any] = {
        "name": "local", "min_pilots": 0, "max_pilots": 2, "heartbeat_interval_s": 0.5,
        "heartbeat_timeout_s": 10.0, "idle_timeout_s": 3.0, "jobs_per_acquire": 8,
    }  # fmt: skip
    settings.update(overrides)
    return Queue(**settings)


def emulated_cloud(home: Path, **opts: Any) -> Any:
    """An EmulatedCloud started with a prefix of its own and a queue patient enough for the
    emulators (the caller stops it; the emulator fixtures must be up)."""
    import uuid

    from skypanda.runtime.emulated import EmulatedCloud, EmulatedOptions  # Google clients

    # The emulator is slow; a pilot idle for 15 s (not 3) waits for a workflow's next stage
    # instead of exiting: under load a new one took 5-10 s to start, and a loop of 7 stages,
    # each on new pilots, ran past its test's 120 s.
    queue = fast_queue(heartbeat_interval_s=1.0, heartbeat_timeout_s=20.0, idle_timeout_s=15.0)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    options = EmulatedOptions(home=home, queue=queue, tick_s=0.5, prefix=prefix, **opts)
    return EmulatedCloud(options).start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Mark an item whose setup or call failed, for the fixtures' post-mortems."""
    rep = yield
    if rep.failed and rep.when in ("setup", "call"):
        item.stash[postmortem.FAILED] = True
    return rep


@pytest.fixture
def cloud(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    firestore_emulator: Any,
    pubsub_emulator: Any,
    storage_emulator: Any,
) -> Iterator[Any]:
    """The gcp backend on the emulators (an EmulatedCloud), for one test; its state printed
    when the test failed."""
    system = emulated_cloud(tmp_path / "home")
    yield system
    if request.node.stash.get(postmortem.FAILED, False):
        postmortem.dump_cloud(system)
    system.stop()


@pytest.fixture
def make_system(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., LocalSystem]]:
    started: list[LocalSystem] = []

    def make(queue: Queue | None = None, **opts: Any) -> LocalSystem:
        home = tmp_path / f"home{len(started)}"
        system = LocalSystem(
            LocalOptions(home=home, queue=queue or fast_queue(), tick_s=0.3, **opts)
        )
        started.append(system.start())
        return system

    yield make
    if request.node.stash.get(postmortem.FAILED, False):
        for system in started:
            postmortem.report(str(system.opts.home), postmortem.pilot_log_tails(system.opts.home))
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


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something true, and return that; AssertionError naming
    `what` once `timeout` seconds passed. Deadlines are generous: CI runs on 2 busy cores, so a
    test waits on a condition it controls, never on a sleep or on how fast something starts."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Gate:
    """Payloads held until the test lets them finish.

    `script()` is a payload shell script that first writes its pid to `started.<mark>` (the
    mark is the job's index by default; `$SKYPANDA_ATTEMPT` tells attempts apart), then waits
    until the `go` file exists, which `release()` creates, then runs `then`. So a test knows
    which payloads run, and they run until it decides otherwise, however slow the machine is.
    Never released, a payload runs until it is killed (every gate is released once its test
    ended, so that no payload outlives its test).
    """

    made: ClassVar[list[Gate]] = []

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        Gate.made.append(self)

    def script(self, then: str = "", mark: str | None = "{index}") -> str:
        """The payload's shell script; `mark=None`: no mark, only the wait."""
        root = shlex.quote(str(self.root))
        body = f"while [ ! -e {root}/go ]; do sleep 0.05; done"
        if mark is not None:
            started = f"echo $$ > {root}/.{mark}.tmp && mv {root}/.{mark}.tmp {root}/started.{mark}"
            body = f"{started}; {body}"
        return f"{body}; {then}" if then else body

    def command(self, then: str = "", mark: str | None = "{index}") -> list[str]:
        return ["sh", "-c", self.script(then, mark)]

    def task_file(self, path: Path, n_jobs: int, max_attempts: int | None = None) -> Path:
        """A task file at `path`: task `held` of `n_jobs` jobs whose payloads are this gate's."""
        attempts = "" if max_attempts is None else f"max_attempts: {max_attempts}\n"
        command = json.dumps(self.command())
        path.write_text(f"name: held\nn_jobs: {n_jobs}\n{attempts}command: {command}\n")
        return path

    def started(self) -> set[str]:
        """The marks of the payloads that started so far."""
        return {p.name.removeprefix("started.") for p in self.root.glob("started.*")}

    def pid(self, mark: object) -> int:
        """The pid of the payload that started with `mark`."""
        return int((self.root / f"started.{mark}").read_text())

    def release(self) -> None:
        (self.root / "go").touch()


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    while Gate.made:
        Gate.made.pop().release()


def write_task(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
