"""A pilot takes only jobs whose cores it has free (multi-core jobs), on the embedded default with
real pilots: a 2-core job activated while the only 2-core pilot runs a long 2-core job is not
held by that busy pilot (it would wait there for the whole length of the first, unseen by the
scaler); it runs on a second pilot, which the scaler launches for it, while the first still
runs. Every wait is on a state the test controls (the long payload runs until its gate opens)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skypanda.domain.models import Resources
from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from skypanda.wire.codes import ErrorCode
from tests.e2e.beside import only_job, second_runs_beside_the_long_one, task_done
from tests.e2e.conftest import Gate, fast_queue, wait_until

TWO_CORES = Resources(cores=2, memory_mb=2000)


def _two_cores(api: ApiClient, name: str, command: list[str], n: int = 1) -> dict[str, object]:
    body = {"name": name, "command": command, "n_jobs": n, "resources": {"cores": 2}}
    task: dict[str, object] = api.call("POST", "/v1/tasks", body)
    return task


def _system(make_system: Callable[..., LocalSystem]) -> tuple[LocalSystem, ApiClient]:
    """A queue whose pilots have 2 cores (2 slots), one pilot until the test allows two."""
    queue = fast_queue(min_pilots=1, max_pilots=1, idle_timeout_s=60.0, pilot_resources=TWO_CORES)
    system = make_system(queue)
    return system, ApiClient(system.url, system.token)


def test_a_pilot_whose_cores_are_busy_takes_no_job_that_needs_them(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a queue of 2-core pilots, its only pilot running a long 2-core job (a slot free)
    system, api = _system(make_system)
    gate = Gate(tmp_path / "gate")
    long = _two_cores(api, "long", gate.command(mark="a"))
    # Then a second 2-core job is not held by the busy pilot: it runs on a second one
    second = second_runs_beside_the_long_one(
        system, api, gate, long, lambda: _two_cores(api, "second", ["true"])
    )
    first_pilot = only_job(system, long).pilot_id
    held_by = [a.pilot_id for a in system.store.attempts(second.id)]
    assert first_pilot not in held_by, held_by


def test_a_pilot_used_to_short_jobs_gives_back_a_job_waiting_for_its_cores(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given the only 2-core pilot, which has just run short 2-core jobs (so it prefetches
    # while its payloads are young), and then a long 2-core job
    system, api = _system(make_system)
    shorts = _two_cores(api, "shorts", ["true"], n=10)
    wait_until(lambda: task_done(api, shorts), 90, "the short jobs")
    gate = Gate(tmp_path / "gate")
    long = _two_cores(api, "long", gate.command(mark="a"))
    # Then a second 2-core job is not kept waiting in the pilot for the long one's cores: if
    # the pilot took it while its payload was young, it gives it back once the payload runs long
    second = second_runs_beside_the_long_one(
        system, api, gate, long, lambda: _two_cores(api, "second", ["true"])
    )
    codes = [a.error_code for a in system.store.attempts(second.id)]
    assert set(codes) <= {None, ErrorCode.GIVEN_BACK}, codes
