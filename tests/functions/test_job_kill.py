"""Killing jobs over HTTP (`POST /v1/jobs/<job_id>/kill`, `POST /v1/jobs/kill`): only with a
credential, only one's own jobs (an admin any), bad bodies refused naming the problem, and the
per-job answer saying what became of each; each call written to the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.app import create_app
from skypanda.domain.events import TaskRef
from skypanda.domain.identity import Role
from skypanda.domain.models import Resources
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch, split
from skypanda.handlers.services import Services


@pytest.fixture
def world(svc: Services, tmp_path: Path) -> tuple[Any, dict[str, str]]:
    identity = LocalTokens(tmp_path / "users.json")
    tokens = {
        "alice": identity.add("alice", Role.USER),
        "bob": identity.add("bob", Role.USER),
        "root": identity.add("root", Role.ADMIN),
        "pilot": identity.add("pilot1", Role.PILOT),
    }
    return create_app(svc, identity).test_client(), tokens


def _as(who: str, tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def _jobs(svc: Services, client: Any, tokens: dict[str, str], n: int) -> list[str]:
    """Alice's task of `n` jobs, split (activated): their ids in index order."""
    body = {"name": "mine", "command": ["true"], "n_jobs": n}
    task = client.post("/v1/tasks", json=body, headers=_as("alice", tokens)).get_json()["id"]
    split.handle(svc, TaskRef(task_id=task))  # what the task.registered event does
    return [j.id for j in svc.jobs.list_jobs(task)]


def test_a_job_is_killed_by_its_owner_or_an_admin_and_by_no_one_else(
    svc: Services, world: tuple[Any, dict[str, str]]
) -> None:
    client, tokens = world
    first, second = _jobs(svc, client, tokens, 2)

    # Without a credential, or with a forged one: 401
    for headers in ({}, {"Authorization": "Bearer forged"}):
        assert client.post(f"/v1/jobs/{first}/kill", headers=headers).status_code == 401
        reply = client.post("/v1/jobs/kill", json={"job_ids": [first]}, headers=headers)
        assert reply.status_code == 401
    # A pilot may not call it at all
    assert client.post(f"/v1/jobs/{first}/kill", headers=_as("pilot", tokens)).status_code == 403

    # When bob kills alice's job: 403 naming its owner; in a list, said so for that job
    reply = client.post(f"/v1/jobs/{first}/kill", headers=_as("bob", tokens))
    assert reply.status_code == 403
    assert reply.get_json()["message"] == f"job {first} belongs to alice; bob cannot kill it"
    listed = client.post("/v1/jobs/kill", json={"job_ids": [first]}, headers=_as("bob", tokens))
    assert listed.status_code == 200
    assert [r["result"] for r in listed.get_json()["results"]] == ["not_yours"]
    assert listed.get_json()["killed"] == 0
    assert svc.jobs.get_job(first).status is JobStatus.ACTIVATED

    # An unknown job: 404
    reply = client.post("/v1/jobs/t0-nosuchjob/kill", headers=_as("alice", tokens))
    assert reply.status_code == 404
    assert reply.get_json()["message"] == "no job with id 't0-nosuchjob'"

    # When alice kills her job: it is cancelled, and the answer says so
    reply = client.post(f"/v1/jobs/{first}/kill", headers=_as("alice", tokens))
    assert reply.status_code == 200
    assert reply.get_json() == {"job_id": first, "result": "killed", "status": "cancelled",
                                "message": f"job {first} was activated: cancelled"}  # fmt: skip
    # and again: 200, it has ended, nothing written
    again = client.post(f"/v1/jobs/{first}/kill", headers=_as("alice", tokens))
    assert again.status_code == 200 and again.get_json()["result"] == "ended"

    # When an admin kills the other one in a list (twice, and with an unknown id)
    body = {"job_ids": [second, second, "t0-nosuchjob", first]}
    reply = client.post("/v1/jobs/kill", json=body, headers=_as("root", tokens))
    assert reply.status_code == 200
    answer = reply.get_json()
    assert [(r["job_id"], r["result"], r["status"]) for r in answer["results"]] == [
        (second, "killed", "cancelled"),
        ("t0-nosuchjob", "not_found", None),
        (first, "ended", "cancelled"),
    ]
    assert answer["killed"] == 1
    assert svc.jobs.get_job(second).error_diag == "killed by root"

    # And every call of a user or admin is in the audit trail, with the job it named
    trail = svc.audit.list_audit()
    assert [(e.actor, e.action, e.outcome) for e in trail] == [
        ("root", "kill_jobs", "done"),
        ("alice", "kill_job", "done"),
        ("alice", "kill_job", "done"),
        ("alice", "kill_job", "refused"),
        ("bob", "kill_jobs", "done"),
        ("bob", "kill_job", "refused"),
        ("alice", "create_task", "done"),
    ]
    assert (trail[1].target_kind, trail[1].target_id) == ("job", first)


def test_a_job_held_by_a_pilot_is_flagged_and_its_pilot_told(
    svc: Services, world: tuple[Any, dict[str, str]]
) -> None:
    client, tokens = world
    [job_id] = _jobs(svc, client, tokens, 1)
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="local", host="h", pid=None,
        resources=Resources(memory_mb=100_000, cores=64), version="t",
    )  # fmt: skip
    assert [j.id for j in dispatch.acquire(svc, pilot.id, 1)] == [job_id]

    reply = client.post(f"/v1/jobs/{job_id}/kill", headers=_as("alice", tokens))

    assert reply.status_code == 200
    assert (reply.get_json()["result"], reply.get_json()["status"]) == ("kill_requested", "sent")
    assert dispatch.heartbeat(svc, pilot.id, [job_id]).commands == [{"kill": job_id}]
    again = client.post("/v1/jobs/kill", json={"job_ids": [job_id]}, headers=_as("alice", tokens))
    assert again.get_json()["results"][0]["result"] == "being_killed"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "must be a JSON object"),
        (b"{}", "job_ids: Field required"),
        (b'{"job_ids": "t1-000000000001"}', "job_ids: Input should be a valid list"),
        (b'{"job_ids": []}', "job_ids: List should have at least 1 item"),
        (b'{"job_ids": [1]}', "job_ids.0: Input should be a valid string"),
        (b'{"job_ids": [""]}', "job_ids.0: String should have at least 1 character"),
        (b'{"job_ids": ["a"], "reason": "x"}', "reason: Extra inputs are not permitted"),
        (b'{"job_ids": [' + b",".join([b'"a"'] * 1001) + b"]}",
         "at most 1,000 jobs can be killed in one request, not 1,001"),
    ],
)  # fmt: skip
def test_a_bad_body_is_refused_naming_the_problem(
    world: tuple[Any, dict[str, str]], body: bytes, says: str
) -> None:
    client, tokens = world
    headers = {**_as("alice", tokens), "Content-Type": "application/json"}
    reply = client.post("/v1/jobs/kill", data=body, headers=headers)
    assert reply.status_code == 422, reply.get_json()
    assert says in reply.get_json()["message"]
