"""A job never waits behind a long payload while another pilot could run it (issue 17/18
testing), on the embedded default with real pilots: the scaler launches a pilot for a job that
the only pilot's busy slot cannot take, and a pilot whose jobs were short gives back what it
prefetched once its payload runs long. Every wait is on a state the test controls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from skypanda.pilot.client import ApiClient
from skypanda.runtime.local import LocalSystem
from skypanda.wire.codes import ErrorCode
from tests.e2e.beside import second_runs_beside_the_long_one, task_done
from tests.e2e.conftest import Gate, fast_queue, wait_until


def _short(api: ApiClient) -> dict[str, object]:
    task: dict[str, object] = api.call(
        "POST", "/v1/tasks", {"name": "short", "command": ["true"], "n_jobs": 1}
    )
    return task


def test_a_job_activated_while_the_only_pilot_runs_a_long_one_gets_a_second_pilot(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given a queue with one pilot (one slot), running a payload that lasts until released
    system = make_system(fast_queue(min_pilots=1, max_pilots=1, idle_timeout_s=60.0))
    api = ApiClient(system.url, system.token)
    gate = Gate(tmp_path / "gate")
    long = api.call(
        "POST", "/v1/tasks", {"name": "long", "command": gate.command(mark="a"), "n_jobs": 1}
    )
    # Then a second job activated meanwhile runs on a second pilot, without waiting
    second_runs_beside_the_long_one(system, api, gate, long, lambda: _short(api))


def test_a_pilot_used_to_short_jobs_does_not_keep_a_job_behind_a_long_one(
    make_system: Callable[..., LocalSystem], tmp_path: Path
) -> None:
    # Given the only pilot, which has just run short jobs (so it prefetches: it asks for more
    # jobs than its one slot while the ones it holds are short)
    system = make_system(fast_queue(min_pilots=1, max_pilots=1, idle_timeout_s=60.0))
    api = ApiClient(system.url, system.token)
    shorts = api.call("POST", "/v1/tasks", {"name": "shorts", "command": ["true"], "n_jobs": 20})
    wait_until(lambda: task_done(api, shorts), 90, "the short jobs")
    # And then a payload that lasts until released
    gate = Gate(tmp_path / "gate")
    long = api.call(
        "POST", "/v1/tasks", {"name": "long", "command": gate.command(mark="a"), "n_jobs": 1}
    )
    # Then a second job activated while it runs is not kept waiting in the pilot: if the
    # pilot took it (its payload was still young), it gives it back once the payload runs long
    second = second_runs_beside_the_long_one(system, api, gate, long, lambda: _short(api))
    codes = [a.error_code for a in system.store.attempts(second.id)]
    assert set(codes) <= {None, ErrorCode.GIVEN_BACK}, codes


def test_on_the_emulators_too(cloud: Any, tmp_path: Path) -> None:
    # Given the gcp backend on the emulators (Firestore counts the jobs the pilots hold), a
    # queue with no pilot kept ready, at most two, and a long job: one pilot is launched for it
    api = ApiClient(cloud.url, cloud.token)
    gate = Gate(tmp_path / "gate")
    long = api.call(
        "POST", "/v1/tasks", {"name": "long", "command": gate.command(mark="a"), "n_jobs": 1}
    )
    # Then a second job activated while it runs gets the second pilot
    second_runs_beside_the_long_one(cloud, api, gate, long, lambda: _short(api))
