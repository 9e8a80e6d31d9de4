"""Every route of the API walked without a credential, with a wrong one and with each role:
the answers match the route table (api/access.py). And two users over HTTP: one cannot act on
the other's task or workflow; an admin can."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.access import ROUTE_ROLES
from skypanda.api.app import create_app
from skypanda.domain.identity import Role
from skypanda.domain.quota import MAX_ACTIVE_JOBS, MAX_ACTIVE_TASKS
from skypanda.handlers.services import Services


@pytest.fixture
def world(svc: Services, tmp_path: Path) -> tuple[Any, dict[str, str]]:
    identity = LocalTokens(tmp_path / "users.json")
    tokens = {
        "alice": identity.add("alice", Role.USER),
        "bob": identity.add("bob", Role.USER),
        "admin": identity.add("root", Role.ADMIN),
        "pilot": identity.add("pilot1", Role.PILOT),
        "launcher": identity.add("launch1", Role.LAUNCHER),
        "monitor": identity.add("scraper", Role.MONITOR),
    }
    return create_app(svc, identity).test_client(), tokens


def _rules(client: Any) -> list[tuple[str, str, str]]:
    rules = []
    for rule in client.application.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "x", rule.rule)
            rules.append((rule.endpoint, method, path))
    return sorted(rules)


def _call(client: Any, method: str, path: str, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    status: int = client.open(path, method=method, headers=headers, json={}).status_code
    return status


def test_the_route_table_names_every_route_and_no_other(world: tuple[Any, dict[str, str]]) -> None:
    client, _ = world
    assert {endpoint for endpoint, _, _ in _rules(client)} == set(ROUTE_ROLES)


ROLE_OF = {
    "alice": Role.USER,
    "admin": Role.ADMIN,
    "pilot": Role.PILOT,
    "launcher": Role.LAUNCHER,
    "monitor": Role.MONITOR,
}


def test_every_route_answers_as_its_table_says_to_every_caller(
    world: tuple[Any, dict[str, str]],
) -> None:
    client, tokens = world
    wrong: list[str] = []
    for endpoint, method, path in _rules(client):
        if _call(client, method, path, None) != 401:
            wrong.append(f"{method} {path} without a credential")
        if _call(client, method, path, "forged-token") != 401:
            wrong.append(f"{method} {path} with a wrong credential")
        for who, role in ROLE_OF.items():
            status = _call(client, method, path, tokens[who])
            allowed = role in ROUTE_ROLES[endpoint]
            if allowed and status in (401, 403):
                wrong.append(f"{method} {path} as {role}: {status}, should be allowed")
            if not allowed and status != 403:
                wrong.append(f"{method} {path} as {role}: {status}, should be 403")
    assert wrong == []


def test_the_answer_names_who_may_not_call_what(world: tuple[Any, dict[str, str]]) -> None:
    client, tokens = world
    reply = client.post(
        "/v1/tasks", json={}, headers={"Authorization": f"Bearer {tokens['pilot']}"}
    )
    assert reply.status_code == 403
    assert reply.get_json()["message"] == "pilot1 (pilot) may not call POST /v1/tasks"


def _as(who: str, tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def test_a_user_cannot_act_on_another_users_task_and_an_admin_can(
    world: tuple[Any, dict[str, str]],
) -> None:
    client, tokens = world
    # Given alice's task, owned by her
    body = {"name": "mine", "command": ["true"], "n_jobs": 2}
    created = client.post("/v1/tasks", json=body, headers=_as("alice", tokens))
    assert created.status_code == 201 and created.get_json()["owner"] == "alice"
    task = created.get_json()["id"]
    # When bob tries every action on it, Then each is refused, naming the owner
    for action, payload in [
        ("kill", {}),
        ("retry", {}),
        ("pause", {}),
        ("resume", {}),
        ("finish", {}),
        ("priority", {"priority": 5}),
        ("reassign", {"queue": "local"}),
    ]:
        reply = client.post(f"/v1/tasks/{task}/{action}", json=payload, headers=_as("bob", tokens))
        assert reply.status_code == 403, action
        assert "belongs to alice; bob cannot" in reply.get_json()["message"], action
    # But he can read it (all tasks are readable)
    assert client.get(f"/v1/tasks/{task}", headers=_as("bob", tokens)).status_code == 200
    # And an admin can act on it
    killed = client.post(f"/v1/tasks/{task}/kill", json={}, headers=_as("admin", tokens))
    assert killed.status_code == 200 and killed.get_json()["status"] == "aborted"
    assert killed.get_json()["reason"] == "killed by root"


def test_a_user_cannot_kill_another_users_workflow(world: tuple[Any, dict[str, str]]) -> None:
    client, tokens = world
    spec = {"name": "wf", "tasks": [{"name": "a", "command": ["true"], "n_jobs": 1}]}
    created = client.post("/v1/workflows", json={"workflow": spec}, headers=_as("alice", tokens))
    assert created.status_code == 201, created.get_json()
    wf = created.get_json()["id"]
    reply = client.post(f"/v1/workflows/{wf}/kill", json={}, headers=_as("bob", tokens))
    assert reply.status_code == 403 and "belongs to alice" in reply.get_json()["message"]
    mine = client.post(f"/v1/workflows/{wf}/kill", json={}, headers=_as("alice", tokens))
    assert mine.status_code == 200


def test_the_table_keeps_the_sensitive_routes_to_their_roles() -> None:
    # Operators' routes are admins' only; a launcher may only register (and fetch the pilot);
    # a pilot speaks only the dispatch protocol
    assert ROUTE_ROLES["apply_queues"] == ROUTE_ROLES["drain_pilot"] == {Role.ADMIN}
    assert ROUTE_ROLES["reset_backoff"] == {Role.ADMIN}
    assert ROUTE_ROLES["list_audit"] == {Role.ADMIN}
    launcher = {e for e, roles in ROUTE_ROLES.items() if Role.LAUNCHER in roles}
    assert launcher == {"register", "health", "whoami", "pilot_zipapp"}
    pilot = {e for e, roles in ROUTE_ROLES.items() if Role.PILOT in roles}
    assert pilot == {
        "register", "acquire", "update", "heartbeat", "end", "append_log", "put_output",
        "health", "whoami", "pilot_zipapp",
        # the PanDA pilot's protocol (api.panda)
        "panda.get_job", "panda.update_job", "panda.schedconfig", "panda.ddm_endpoints",
        "panda.pilot_v1.acquire_jobs", "panda.pilot_v1.update_job",
        "panda.pilot_v1.update_jobs_bulk",
    }  # fmt: skip
    assert all(Role.ADMIN in roles for roles in ROUTE_ROLES.values())


def test_whoami_names_the_caller_and_its_roles(world: tuple[Any, dict[str, str]]) -> None:
    client, tokens = world
    assert client.get("/v1/whoami", headers=_as("alice", tokens)).get_json() == {
        "name": "alice",
        "roles": ["user"],
        "usage": {"tasks": 0, "jobs": 0},  # (tests/functions/test_quota.py)
        "limits": {"tasks": MAX_ACTIVE_TASKS, "jobs": MAX_ACTIVE_JOBS},
    }
    assert client.get("/v1/whoami", headers=_as("admin", tokens)).get_json()["roles"] == ["admin"]
