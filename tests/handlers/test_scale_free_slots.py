"""The scaler counts its pilots' free slots (issue 17/18 testing): a job waiting while the only
pilot's slot is busy gets a pilot; an idle pilot's free slot serves it; a draining pilot's
slots serve nothing. Pilots say their slots when they register."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.events import TaskRef
from skypanda.domain.models import Pilot, Queue, Resources, TaskSpec
from skypanda.handlers import dispatch, scale, split
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from tests.handlers.test_scale import SilentLauncher
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    queue = Queue(name="local", min_pilots=1, max_pilots=4, max_new_per_cycle=4, max_queued=4)
    with sqlite_services(tmp_path, FakeClock(), queue) as services:
        services.launcher = SilentLauncher()
        yield services


def _register(svc: Services, slots: int | None = None) -> Pilot:
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=None, resources=Resources(),
        version="v", slots=slots,
    )  # fmt: skip
    return pilot


def _jobs(svc: Services, n: int) -> None:
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=n), owner="u")
    split.handle(svc, TaskRef(task_id=task.id))


def _scale(svc: Services) -> tuple[int, str]:
    queue = svc.store.get_queue("local")
    launched = scale.scale_queue(svc, queue)
    return launched, svc.store.scaling_notes()["local"][0]


def test_a_job_waiting_behind_the_only_busy_pilot_gets_a_pilot(svc: Services) -> None:
    # Given the only pilot (one slot) running a job, and a second job waiting
    pilot = _register(svc)
    _jobs(svc, 1)
    assert len(dispatch.acquire(svc, pilot.id, 1)) == 1
    _jobs(svc, 1)
    # When the scaler looks at the queue
    launched, why = _scale(svc)
    # Then it launches a pilot for the waiting job, and says the busy pilot serves none
    assert launched == 1
    assert "1 jobs waiting, 1 without a free slot" in why and "(0 slots free)" in why


def test_an_idle_pilots_free_slots_serve_waiting_jobs(svc: Services) -> None:
    # Given a pilot registered with 4 slots, one of them busy, and 3 jobs waiting
    pilot = _register(svc, slots=4)
    assert svc.store.get_pilot(pilot.id).payload_slots == 4
    _jobs(svc, 1)
    assert len(dispatch.acquire(svc, pilot.id, 1)) == 1
    _jobs(svc, 3)
    # Then its 3 free slots cover them: no pilot is launched
    launched, why = _scale(svc)
    assert launched == 0 and "(3 slots free)" in why and "enough" in why
    # And a fourth job waiting is one too many for them
    _jobs(svc, 1)
    launched, why = _scale(svc)
    assert launched == 1 and "1 without a free slot" in why


def test_a_draining_pilot_serves_no_waiting_job(svc: Services) -> None:
    # Given an idle pilot asked to drain, and a job waiting
    pilot = _register(svc, slots=2)
    dispatch.drain(svc, pilot.id)
    _jobs(svc, 1)
    # Then its slots do not count: a pilot is launched for the job
    launched, why = _scale(svc)
    assert launched == 1 and "(0 slots free)" in why
