"""A server outage with jobs running costs no attempt (issue 13).

The embedded server is stopped while real pilots run real payloads, as when it is killed: its
pilots are left running. It stays down longer than the pilots' old retry budget (about 16 to
30 s, after which they killed their payloads and each job lost a counted attempt), the
payloads end meanwhile, and a new server starts on the same home and port. The pilots ride
the outage out, report to the new server, and every job finishes on its first attempt.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.identity import Role
from skypanda.pilot.client import ApiClient, ApiError
from skypanda.runtime.local import LocalOptions, LocalSystem

from .conftest import Gate, cli, fast_queue, wait_until

pytestmark = pytest.mark.e2e

OUTAGE_S = 35.0
"""Longer than the pilots' old retry budget (about 16 to 30 s), shorter than their outage
budget (10 minutes by default)."""
N_JOBS = 4


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "home"


def _start(home: Path, port: int = 0) -> LocalSystem:
    queue = fast_queue(max_pilots=N_JOBS, max_new_per_cycle=N_JOBS, max_queued=N_JOBS)
    return LocalSystem(LocalOptions(home=home, port=port, queue=queue, tick_s=0.3)).start()


def test_an_outage_of_the_server_with_jobs_running_costs_no_attempt(
    home: Path, tmp_path: Path
) -> None:
    gate = Gate(tmp_path / "gate")
    first = _start(home)
    second: LocalSystem | None = None
    try:
        # Given jobs with a single attempt each, their payloads running on real pilots
        api = ApiClient(first.url, first.token)
        spec = {"name": "outage", "command": gate.command(mark="{index}.$SKYPANDA_ATTEMPT"),
                "n_jobs": N_JOBS, "max_attempts": 1}  # fmt: skip
        task = api.call("POST", "/v1/tasks", spec)
        wait_until(lambda: len(gate.started()) == N_JOBS, what="every payload to run")
        wait_until(lambda: first.store.last_sweep(), what="the server to have swept")

        # When the server stops, leaving its pilots running (as when it is killed)
        port = first.server.port
        first.stop(pilots=False)
        down_at = time.monotonic()
        # And the payloads end while it is down
        gate.release()
        pids = [gate.pid(f"{i}.1") for i in range(N_JOBS)]
        wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in pids), what="payloads")
        # And it stays down longer than the pilots' old retry budget (the outage is a length
        # of time, not something to wait for)
        time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))
        # And a new server starts on the same home and port
        second = _start(home, port)
        api = ApiClient(second.url, second.token)

        # Then the pilots report to it, and the task is done
        def status() -> str:
            return str(api.call("GET", f"/v1/tasks/{task['id']}")["status"])

        wait_until(lambda: status() in ("done", "failed"), what="the task to end")
        assert status() == "done"
        # And every job finished on its first attempt: the outage cost no attempt
        jobs = api.call("GET", f"/v1/tasks/{task['id']}/jobs")["jobs"]
        assert {(j["status"], j["attempt"], j["failures"]) for j in jobs} == {("finished", 1, 0)}
        # And no job ran twice
        assert gate.started() == {f"{i}.1" for i in range(N_JOBS)}
        # And no pilot was taken for missed, failed or disconnected
        pilots = api.call("GET", "/v1/pilots")["pilots"]
        assert {p["status"] for p in pilots} <= {"running", "finished"}
    finally:
        if first.launcher is not None:
            first.launcher.stop_all()  # the pilots the first server left running
        if second is not None:
            second.stop()


def test_an_admin_resets_a_queues_back_off_from_the_command_line(system: LocalSystem) -> None:
    # When an admin resets the local queue's back-off
    done = cli(system, "queues", "reset-backoff", "local")
    # Then it says so, and the trail records who did it
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "queue local: back-off reset"
    admin = ApiClient(system.url, system.token)
    (entry,) = admin.call("GET", "/v1/audit")["entries"]
    assert (entry["action"], entry["path"]) == ("reset_backoff", "/v1/queues/local/reset-backoff")
    # But a user may not, and an unknown queue is named
    user = ApiClient(system.url, system.users.add("bob", Role.USER))
    with pytest.raises(ApiError) as refused:
        user.call("POST", "/v1/queues/local/reset-backoff")
    assert refused.value.status == 403
    unknown = cli(system, "queues", "reset-backoff", "nope")
    assert unknown.returncode == 1 and "nope" in unknown.stderr
