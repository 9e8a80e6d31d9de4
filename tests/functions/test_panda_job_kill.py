"""panda-client's killJobs (`POST /api/v1/job/kill`, `{"job_ids": [PandaID, ...]}`) over the
PanDA facade: `data` is a boolean per PandaID, as panda-server's (true: the kill is on its
way), in PanDA's envelope; refusals are HTTP 200 with a message, as the client reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.app import create_app
from skypanda.api.panda.mapping import panda_id
from skypanda.domain.events import TaskRef
from skypanda.domain.identity import Role
from skypanda.domain.models import Resources
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch, split
from skypanda.handlers.services import Services

UNKNOWN = 99_999_999_999  # a PandaID skypanda could issue, of no job


@pytest.fixture
def world(svc: Services, tmp_path: Path) -> tuple[Any, dict[str, str]]:
    identity = LocalTokens(tmp_path / "users.json")
    tokens = {"alice": identity.add("alice", Role.USER), "bob": identity.add("bob", Role.USER)}
    return create_app(svc, identity).test_client(), tokens


def _kill(client: Any, token: str | None, body: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = client.post("/api/v1/job/kill", json=body, headers=headers)
    return reply.status_code, reply.get_json()


def test_kill_jobs_answers_a_boolean_per_panda_id(
    svc: Services, world: tuple[Any, dict[str, str]]
) -> None:
    # Given alice's task of three jobs, one of them sent to a pilot
    client, tokens = world
    task = client.post("/v1/tasks", json={"name": "t", "command": ["true"], "n_jobs": 3},
                       headers={"Authorization": f"Bearer {tokens['alice']}"})  # fmt: skip
    task_id = task.get_json()["id"]
    split.handle(svc, TaskRef(task_id=task_id))
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=None,
        resources=Resources(memory_mb=100_000, cores=64), version="t",
    )  # fmt: skip
    [held] = dispatch.acquire(svc, pilot.id, 1)
    queued, spare = [j.id for j in svc.jobs.list_jobs(task_id) if j.id != held.id]

    # Without a credential: the app's 401
    assert _kill(client, None, {"job_ids": [panda_id(queued)]})[0] == 401

    # When bob kills one of them: false, and nothing is written
    status, reply = _kill(client, tokens["bob"], {"job_ids": [panda_id(queued)]})
    assert (status, reply["success"], reply["data"]) == (200, True, [False])
    assert svc.jobs.get_job(queued).status is JobStatus.ACTIVATED

    # When alice kills the queued one, the held one and an unknown one
    ids = [panda_id(queued), str(panda_id(held.id)), UNKNOWN]
    status, reply = _kill(client, tokens["alice"], {"job_ids": ids})

    # Then the first two are killed (cancelled; flagged for its pilot), the third is not
    assert status == 200
    assert reply == {"success": True, "message": "2 of 3 jobs killed", "data": [True, True, False]}
    assert svc.jobs.get_job(queued).status is JobStatus.CANCELLED
    assert svc.jobs.get_job(queued).error_diag == "killed by alice (panda-client)"
    assert svc.jobs.get_job(held.id).kill_requested
    assert dispatch.heartbeat(svc, pilot.id, [held.id]).commands == [{"kill": held.id}]
    assert svc.jobs.get_job(spare).status is JobStatus.ACTIVATED
    # And again: the held one's kill is still on its way (true), the ended one is not killed
    _, reply = _kill(client, tokens["alice"], {"job_ids": ids[:2]})
    assert reply["data"] == [False, True]
    # One PandaID alone (as older clients send it), and an empty list
    assert _kill(client, tokens["alice"], {"job_ids": panda_id(spare)})[1]["data"] == [True]
    assert _kill(client, tokens["alice"], {"job_ids": []})[1]["data"] == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"job_ids": ["abc"]}, "job_ids holds 'abc', not a PandaID"),
        ({"job_ids": [True]}, "not a PandaID"),
        ({"job_ids": {"a": 1}}, "job_ids must be a list of at most 1000 PandaIDs"),
        ({"job_ids": list(range(1, 1002))}, "job_ids must be a list of at most 1000 PandaIDs"),
        ({"job_ids": [1], "code": 9}, "unknown field 'code'"),
        ([1, 2], "the request body must be a JSON object"),
    ],
)
def test_a_bad_request_is_refused_in_the_envelope_naming_the_problem(
    world: tuple[Any, dict[str, str]], body: Any, says: str
) -> None:
    client, tokens = world
    status, reply = _kill(client, tokens["alice"], body)
    assert status == 200 and reply["success"] is False, reply
    assert says in reply["message"]
