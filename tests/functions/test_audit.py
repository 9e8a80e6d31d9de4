"""The audit trail over HTTP: every acting call, done or refused, is written with who, what,
when and from where; only admins read it; unauthenticated calls are not written; the client's
address comes from X-Forwarded-For only through trusted proxies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.api.app import create_app
from skypanda.cli.audit import parse_since
from skypanda.domain.identity import Role
from skypanda.handlers.services import Services


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[LocalTokens, dict[str, str]]:
    identity = LocalTokens(tmp_path / "users.json")
    made = {
        "alice": identity.add("alice", Role.USER),
        "bob": identity.add("bob", Role.USER),
        "root": identity.add("root", Role.ADMIN),
    }
    return identity, made


def _client(svc: Services, tokens: tuple[LocalTokens, dict[str, str]], proxies: int = 0) -> Any:
    return create_app(svc, tokens[0], trusted_proxies=proxies).test_client()


def _as(who: str, tokens: tuple[LocalTokens, dict[str, str]], **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[1][who]}", "User-Agent": "skypanda-test/1", **extra}


def test_each_action_done_or_refused_is_written_with_who_what_and_where(
    svc: Services, tokens: tuple[LocalTokens, dict[str, str]]
) -> None:
    client = _client(svc, tokens)
    # Given alice's task (not yet split: no router runs here), that bob tries to pause, alice to
    # reprioritise (too early: a conflict), and root kills
    body = {"name": "mine", "command": ["true"], "n_jobs": 2}
    task = client.post("/v1/tasks", json=body, headers=_as("alice", tokens)).get_json()["id"]
    assert client.post(f"/v1/tasks/{task}/pause", headers=_as("bob", tokens)).status_code == 403
    client.post(f"/v1/tasks/{task}/priority", json={"priority": 7}, headers=_as("alice", tokens))
    assert client.post(f"/v1/tasks/{task}/kill", headers=_as("root", tokens)).status_code == 200
    # And reads, which are not actions
    client.get(f"/v1/tasks/{task}", headers=_as("bob", tokens))

    # When root reads the trail
    reply = client.get("/v1/audit", headers=_as("root", tokens))

    # Then it lists the four actions, newest first, with who, what, outcome and from where
    assert reply.status_code == 200
    entries = reply.get_json()["entries"]
    assert [(e["actor"], e["action"], e["outcome"], e["status"]) for e in entries] == [
        ("root", "kill_task", "done", 200),
        ("alice", "set_priority", "refused", 409),
        ("bob", "pause_task", "refused", 403),
        ("alice", "create_task", "done", 201),
    ]
    assert all(e["target_kind"] == "task" and e["target_id"] == task for e in entries)
    assert all(e["remote"] == "127.0.0.1" and e["agent"] == "skypanda-test/1" for e in entries)
    assert "belongs to alice; bob cannot pause it" in entries[2]["detail"]
    assert f"cannot change the priority of task {task}" in entries[1]["detail"]
    assert entries[3]["detail"] == "name mine"
    assert entries[0]["roles"] == ["admin"] and entries[0]["path"] == f"/v1/tasks/{task}/kill"


def test_what_was_asked_is_kept_for_small_bodies(
    svc: Services, tokens: tuple[LocalTokens, dict[str, str]]
) -> None:
    client = _client(svc, tokens)
    body = {"queues": [{"name": "local"}], "dry_run": True}
    assert client.post("/v1/queues", json=body, headers=_as("root", tokens)).status_code == 200
    [entry] = svc.audit.list_audit()
    assert (entry.action, entry.target_kind, entry.target_id) == ("apply_queues", "queue", "local")
    assert entry.detail == '{"dry_run":true,"queues":[{"name":"local"}]}'


def test_only_admins_read_the_trail_and_filters_and_pages_work(
    svc: Services, tokens: tuple[LocalTokens, dict[str, str]]
) -> None:
    client = _client(svc, tokens)
    for who in ("alice", "bob", "alice"):
        made = client.post(
            "/v1/tasks",
            json={"name": "t", "command": ["true"], "n_jobs": 1},
            headers=_as(who, tokens),
        )
        assert made.status_code == 201, made.get_json()
    assert client.get("/v1/audit", headers=_as("alice", tokens)).status_code == 403

    def read(**query: str) -> list[dict[str, Any]]:
        reply = client.get("/v1/audit", query_string=query, headers=_as("root", tokens))
        assert reply.status_code == 200, reply.get_json()
        return reply.get_json()["entries"]  # type: ignore[no-any-return]

    assert [e["actor"] for e in read(actor="alice")] == ["alice", "alice"]
    first = read(limit="2")
    rest = read(limit="2", before=first[-1]["id"])
    assert [e["actor"] for e in first + rest] == ["alice", "bob", "alice"]
    target = rest[0]["target_id"]
    assert [e["target_id"] for e in read(target=target)] == [target]
    bad = client.get("/v1/audit?before=nope", headers=_as("root", tokens))
    assert bad.status_code == 422 and "not an audit entry id" in bad.get_json()["message"]


def test_calls_without_a_valid_credential_are_not_written(
    svc: Services, tokens: tuple[LocalTokens, dict[str, str]]
) -> None:
    client = _client(svc, tokens)
    for _ in range(5):
        reply = client.post("/v1/tasks", json={}, headers={"Authorization": "Bearer forged"})
        assert reply.status_code == 401
    assert svc.audit.list_audit() == []


@pytest.mark.parametrize(("proxies", "expected"), [(0, "127.0.0.1"), (1, "203.0.113.9")])
def test_the_clients_address_is_believed_only_through_trusted_proxies(
    svc: Services, tokens: tuple[LocalTokens, dict[str, str]], proxies: int, expected: str
) -> None:
    client = _client(svc, tokens, proxies)
    headers = _as("alice", tokens, **{"X-Forwarded-For": "203.0.113.9"})
    made = client.post(
        "/v1/tasks", json={"name": "t", "command": ["true"], "n_jobs": 1}, headers=headers
    )
    assert made.status_code == 201, made.get_json()
    assert [e.remote for e in svc.audit.list_audit()] == [expected]


def test_since_takes_an_age_or_a_date() -> None:
    assert parse_since("2h", 10_000.0) == 10_000.0 - 7200
    assert parse_since("7d", 1e6) == 1e6 - 7 * 86400
    assert parse_since("2026-12-01T00:00:00+00:00", 0) == 1796083200.0
    with pytest.raises(Exception, match="give an age"):
        parse_since("yesterday", 0)


def test_the_audit_command_refuses_a_bad_limit() -> None:
    from skypanda.cli.audit import audit

    result = CliRunner().invoke(audit, ["--limit", "0"])
    assert result.exit_code == 2 and "must be at least 1" in result.output
