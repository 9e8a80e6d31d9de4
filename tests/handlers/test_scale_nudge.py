"""A nudge for work that is gone already (a child claimed in the very commit that released it,
issue 17) costs one count and launches nothing; the tick still keeps the queue's minimum."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.events import QueueNudge, TaskRef, Tick
from skypanda.domain.models import Queue, TaskSpec
from skypanda.handlers import scale, split
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from tests.handlers.test_scale import SilentLauncher
from tests.support import FakeClock, sqlite_services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    queue = Queue(name="local", min_pilots=1, max_pilots=5, max_new_per_cycle=2)
    with sqlite_services(tmp_path, FakeClock(), queue) as services:
        services.launcher = SilentLauncher()
        yield services


def _launched(svc: Services) -> int:
    assert isinstance(svc.launcher, SilentLauncher)
    return len(svc.launcher.launched)


def test_a_nudge_for_work_already_taken_launches_nothing(svc: Services) -> None:
    # Given a queue below its minimum of pilots, with no job waiting
    # When a nudge announces a job that a pilot has taken already
    launched = scale.handle(svc, QueueNudge(queue="local", count=1))
    # Then no pilot is launched for it
    assert launched == 0 and _launched(svc) == 0
    # And the tick still brings the queue to its minimum
    assert scale.handle(svc, Tick()) == 1 and _launched(svc) == 1


def test_a_nudge_for_work_still_waiting_scales(svc: Services) -> None:
    # Given three jobs waiting on the queue (split: activated)
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=3), owner="me")
    split.handle(svc, TaskRef(task_id=task.id))
    # When they are announced
    launched = scale.handle(svc, QueueNudge(queue="local", count=3))
    # Then pilots are launched for them (two per cycle at most)
    assert launched == 2 and _launched(svc) == 2
