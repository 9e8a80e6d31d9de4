"""Per-owner limits over HTTP (`domain.quota`): a submission (a task, a workflow with all its
tasks) that would take its owner past the unended tasks or jobs they may have is refused with
429 naming the limit, and nothing is stored; other owners are not affected; once the owner's
work ends, they may submit again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.app import create_app
from skypanda.domain.events import TaskRef
from skypanda.domain.identity import Role
from skypanda.domain.quota import Quota, Usage
from skypanda.domain.states import TaskStatus
from skypanda.handlers import split
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router


@pytest.fixture
def world(svc: Services, tmp_path: Path) -> tuple[Any, dict[str, str]]:
    identity = LocalTokens(tmp_path / "users.json")
    tokens = {who: identity.add(who, Role.USER) for who in ("alice", "bob")}
    svc.quota = Quota(max_tasks=2, max_jobs=10)
    return create_app(svc, identity).test_client(), tokens


def _as(who: str, tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def _task(n_jobs: int) -> dict[str, Any]:
    return {"name": "work", "command": ["true"], "n_jobs": n_jobs}


def _workflow(*n_jobs: int) -> dict[str, Any]:
    tasks = [dict(_task(n), name=f"t{i}") for i, n in enumerate(n_jobs)]
    return {"workflow": {"name": "w", "tasks": tasks}}


def test_a_task_past_the_owner_s_jobs_limit_is_refused_with_429(
    svc: Services, world: tuple[Any, dict[str, str]]
) -> None:
    client, tokens = world
    # Given alice's task of 6 jobs under way (limit 10)
    assert client.post("/v1/tasks", json=_task(6), headers=_as("alice", tokens)).status_code == 201
    # When she submits 5 more: 429, naming the limit, what she has and what it adds
    refused = client.post("/v1/tasks", json=_task(5), headers=_as("alice", tokens))
    assert refused.status_code == 429
    body = refused.get_json()
    assert body["error"] == "QuotaExceeded"
    assert (
        "alice may have at most 10 unended jobs: 6 are under way and this would add 5"
        in (body["message"])
    )
    # And nothing was stored; 4 more fit
    assert svc.tasks.owner_usage("alice") == Usage(tasks=1, jobs=6)
    assert client.post("/v1/tasks", json=_task(4), headers=_as("alice", tokens)).status_code == 201
    # And bob's limits are his own
    assert client.post("/v1/tasks", json=_task(10), headers=_as("bob", tokens)).status_code == 201


def test_a_workflow_counts_every_task_it_declares(
    svc: Services, world: tuple[Any, dict[str, str]]
) -> None:
    client, tokens = world
    # Given alice's one task under way (limit: 2 tasks)
    assert client.post("/v1/tasks", json=_task(1), headers=_as("alice", tokens)).status_code == 201
    # When she submits a workflow of two tasks (1 + 2 = 3 tasks): refused, nothing stored
    refused = client.post("/v1/workflows", json=_workflow(1, 1), headers=_as("alice", tokens))
    assert refused.status_code == 429
    assert (
        "at most 2 unended tasks: 1 are under way and this would add 2"
        in (refused.get_json()["message"])
    )
    listed = client.get("/v1/workflows", headers=_as("alice", tokens)).get_json()
    assert listed["workflows"] == []
    assert svc.tasks.owner_usage("alice") == Usage(tasks=1, jobs=1)


def test_once_the_owner_s_work_ends_they_may_submit_again(
    svc: Services, world: tuple[Any, dict[str, str]]
) -> None:
    client, tokens = world
    # Given alice at her limit of tasks, refused a third
    ids = [
        client.post("/v1/tasks", json=_task(1), headers=_as("alice", tokens)).get_json()["id"]
        for _ in range(2)
    ]
    assert client.post("/v1/tasks", json=_task(1), headers=_as("alice", tokens)).status_code == 429
    # When she kills one of them (it ends: aborted)
    killed = client.post(f"/v1/tasks/{ids[0]}/kill", json={}, headers=_as("alice", tokens))
    assert killed.status_code == 200, killed.get_json()
    # Then her next submission is taken
    assert client.post("/v1/tasks", json=_task(1), headers=_as("alice", tokens)).status_code == 201


def test_a_retry_counts_the_task_again(svc: Services, world: tuple[Any, dict[str, str]]) -> None:
    client, tokens = world
    alice = _as("alice", tokens)

    def submit() -> str:
        reply = client.post("/v1/tasks", json=_task(1), headers=alice)
        assert reply.status_code == 201, reply.get_json()
        task_id = str(reply.get_json()["id"])
        split.handle(svc, TaskRef(task_id=task_id))  # what the task.registered event does
        return task_id

    def kill(task_id: str) -> None:
        assert client.post(f"/v1/tasks/{task_id}/kill", json={}, headers=alice).status_code == 200

    # Given alice's killed task (ended: it frees its share) and two tasks under way (limit 2)
    first = submit()
    kill(first)
    second, _ = submit(), submit()
    # When she retries the killed one: refused (it would be a third), and it stays killed
    refused = client.post(f"/v1/tasks/{first}/retry", json={}, headers=alice)
    assert refused.status_code == 429
    assert "at most 2 unended tasks: 2 are under way" in refused.get_json()["message"]
    assert svc.tasks.get_task(first).status is TaskStatus.ABORTED
    # And once one of the others ended, the retry is taken
    kill(second)
    retried = client.post(f"/v1/tasks/{first}/retry", json={}, headers=alice)
    assert retried.status_code == 200, retried.get_json()
    assert svc.tasks.owner_usage("alice") == Usage(tasks=2, jobs=2)


def test_a_workflow_s_retry_counts_the_tasks_it_runs_again(
    svc: Services, world: tuple[Any, dict[str, str]]
) -> None:
    client, tokens = world
    alice = _as("alice", tokens)
    # Given alice's killed workflow of two tasks, and a task of hers under way (limit 2)
    made = client.post("/v1/workflows", json=_workflow(1, 1), headers=alice)
    assert made.status_code == 201, made.get_json()
    wf = made.get_json()["id"]
    Router(Pipeline(svc), svc.store).drain()  # it starts: its tasks split
    assert client.post(f"/v1/workflows/{wf}/kill", json={}, headers=alice).status_code == 200
    Router(Pipeline(svc), svc.store).drain()
    assert client.post("/v1/tasks", json=_task(1), headers=alice).status_code == 201
    # When she retries the workflow: its two tasks would make three: refused
    refused = client.post(f"/v1/workflows/{wf}/retry", json={}, headers=alice)
    assert refused.status_code == 429, refused.get_json()
    assert "this would add 2" in refused.get_json()["message"]


def test_whoami_tells_a_user_what_they_have_under_way_against_the_limits(
    svc: Services, world: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    client, tokens = world
    assert client.post("/v1/tasks", json=_task(6), headers=_as("alice", tokens)).status_code == 201
    me = client.get("/v1/whoami", headers=_as("alice", tokens)).get_json()
    assert me["usage"] == {"tasks": 1, "jobs": 6} and me["limits"] == {"tasks": 2, "jobs": 10}
    assert client.get("/v1/whoami", headers=_as("bob", tokens)).get_json()["usage"] == {
        "tasks": 0, "jobs": 0,
    }  # fmt: skip
    # A pilot submits nothing: no usage; with a limit switched off, null
    pilot = LocalTokens(tmp_path / "users.json").add("pilot1", Role.PILOT)
    svc.quota = Quota(max_tasks=None, max_jobs=10)
    as_pilot = client.get("/v1/whoami", headers={"Authorization": f"Bearer {pilot}"})
    assert "usage" not in as_pilot.get_json()
    assert client.get("/v1/whoami", headers=_as("alice", tokens)).get_json()["limits"] == {
        "tasks": None, "jobs": 10,
    }  # fmt: skip
