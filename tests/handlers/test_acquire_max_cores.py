"""An acquire may say the most cores a job may ask for (`max_cores`, 1 to the pilot's cores): a
pilot whose cores a long payload holds takes only what it can start now. By the handler, then
by HTTP, where the lean routes and Flask's answer alike, and a bad value is a 422 naming it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import TaskRef
from skypanda.domain.models import JobReport, Pilot, Queue, Resources, TaskSpec
from skypanda.handlers import dispatch, split
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from tests.functions.test_pilot_path import World, auth
from tests.support import FakeClock, sqlite_services

FOUR = Resources(cores=4, memory_mb=8000)


@pytest.fixture
def svc(tmp_path: Path, clock: FakeClock) -> Iterator[Services]:
    with sqlite_services(tmp_path, clock, Queue(name="local", pilot_resources=FOUR)) as services:
        yield services


def _register(svc: Services, cores: int = 4) -> Pilot:
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=None, version="v",
        resources=Resources(cores=cores, memory_mb=8000),
    )  # fmt: skip
    return pilot


def _jobs(svc: Services, cores: int, n: int = 1) -> str:
    spec = TaskSpec(name=f"c{cores}", command=["true"], n_jobs=n, resources={"cores": cores})
    task = submit(svc, spec, owner="u")
    split.handle(svc, TaskRef(task_id=task.id))
    return task.id


def test_max_cores_limits_the_claim(svc: Services) -> None:
    # Given a 4-core pilot and, waiting, a 4-core job (the oldest) and a 1-core job
    pilot = _register(svc)
    big = _jobs(svc, 4)
    small = _jobs(svc, 1)
    # When it asks for jobs of at most 2 cores
    got = dispatch.acquire(svc, pilot.id, 5, max_cores=2)
    # Then it gets the 1-core job only; the 4-core one still waits for a pilot
    assert [j.task_id for j in got] == [small]
    (waiting,) = svc.store.list_jobs(big)
    assert waiting.status == "activated" and waiting.pilot_id is None
    # And without max_cores (an older pilot) it takes it, as before
    assert [j.task_id for j in dispatch.acquire(svc, pilot.id, 5)] == [big]


def test_max_cores_limits_the_acquire_of_an_update(svc: Services) -> None:
    # Given a 4-core pilot running a 1-core job, and a 4-core job waiting
    pilot = _register(svc)
    _jobs(svc, 1)
    (held,) = dispatch.acquire(svc, pilot.id, 1)
    big = _jobs(svc, 4)
    report = JobReport(job_id=held.id, attempt=held.attempt, status="running")
    # When its update asks for a job of at most 3 cores: none comes back
    _, reply = dispatch.update(svc, pilot.id, [report], {}, acquire_n=1, max_cores=3)
    assert reply.jobs == []
    # And with all its cores, the 4-core job does
    _, reply = dispatch.update(svc, pilot.id, [report], {}, acquire_n=1, max_cores=4)
    assert [j.task_id for j in reply.jobs] == [big]


@pytest.mark.parametrize("max_cores", [0, 5])
def test_max_cores_beyond_the_pilot_is_refused_naming_it(svc: Services, max_cores: int) -> None:
    pilot = _register(svc)
    _jobs(svc, 1)
    with pytest.raises(InvalidInput) as e:
        dispatch.acquire(svc, pilot.id, 1, max_cores=max_cores)
    assert e.value.context["field"] == "max_cores" and "4 cores" in e.value.message
    # Nor is a report applied when its acquire's max_cores is wrong
    with pytest.raises(InvalidInput):
        dispatch.update(svc, pilot.id, [], {}, acquire_n=1, max_cores=max_cores)


def test_by_http_the_lean_routes_and_flask_check_max_cores_alike(
    svc: Services, tmp_path: Path
) -> None:
    # Given a registered 4-core pilot with its credential, and a 4-core and a 1-core job
    world = World(svc, tmp_path)
    body = {"queue": "local", "resources": {"cores": 4, "memory_mb": 8000}}
    reply = world.lean.post("/v1/pilots", json=body, headers=auth(world.launcher))
    assert reply.status_code == 201, reply.get_json()
    pilot, mine = reply.get_json()["pilot"]["id"], auth(reply.get_json()["token"])
    acquire, update = f"/v1/pilots/{pilot}/acquire", f"/v1/pilots/{pilot}/update"
    # When bad values are sent, each way: a 422 naming the field, the same both ways
    for path, sent in [
        (acquire, {"n": 1, "max_cores": 0}),
        (acquire, {"n": 1, "max_cores": 5}),
        (acquire, {"n": 1, "max_cores": "two"}),
        (acquire, {"n": 1, "max_cores": 1.5}),
        (update, {"reports": [], "acquire": 1, "max_cores": 0}),
        (update, {"reports": [], "acquire": 1, "max_cores": 5}),
        (update, {"reports": [], "acquire": 1, "max_cores": True}),
    ]:
        lean, flask = world.both(path, json=sent, headers=mine)
        assert lean == flask, (path, sent)
        status, _, answer = lean
        assert status == 422 and "max_cores" in answer["message"], (sent, answer)
    # And a good one limits the claim, the same both ways (nothing of 2 cores or less waits
    # but the 1-core job, which the lean way takes; Flask's way then finds none)
    _jobs(svc, 4)
    small = _jobs(svc, 1)
    lean_reply = world.lean.post(acquire, json={"n": 2, "max_cores": 2}, headers=mine)
    assert lean_reply.status_code == 200
    assert [j["task_id"] for j in lean_reply.get_json()["jobs"]] == [small]
    flask_reply: Any = world.flask.post(update, json={"reports": [], "acquire": 2, "max_cores": 2},
                                        headers=mine)  # fmt: skip
    assert flask_reply.status_code == 200 and flask_reply.get_json()["jobs"] == []
