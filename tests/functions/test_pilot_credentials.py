"""Pilot credentials: a launch credential may only register; registering gives the pilot a
credential scoped to itself and short-lived, renewed by its heartbeats; with it the pilot can
act for itself alone, and it expires. Over HTTP, through the real app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.adapters.pilot_credentials import (
    AUDIENCE,
    ISSUER,
    PilotCredentials,
    WithPilotCredentials,
)
from skypanda.api.app import create_app
from skypanda.domain.errors import Unauthorized
from skypanda.domain.identity import Role
from skypanda.domain.models import Queue
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router
from tests.support import FakeClock, sqlite_services

KEY = b"k" * 32


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    with sqlite_services(tmp_path, FakeClock(), Queue(name="local")) as services:
        yield services


@pytest.fixture
def world(svc: Services, tmp_path: Path) -> tuple[Any, dict[str, str]]:
    people = LocalTokens(tmp_path / "users.json")
    tokens = {
        "alice": people.add("alice", Role.USER),
        "launcher": people.add("launch", Role.LAUNCHER),
    }
    app = create_app(svc, WithPilotCredentials(people, PilotCredentials(KEY)))
    return app.test_client(), tokens


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _register(client: Any, token: str) -> tuple[str, str]:
    reply = client.post("/v1/pilots", json={"queue": "local"}, headers=_auth(token))
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["pilot"]["id"], reply.get_json()["token"]


def test_a_launch_credential_can_only_register(world: tuple[Any, dict[str, str]]) -> None:
    client, tokens = world
    pilot, _ = _register(client, tokens["launcher"])
    launch = _auth(tokens["launcher"])
    assert client.post(f"/v1/pilots/{pilot}/acquire", json={}, headers=launch).status_code == 403
    assert client.post(f"/v1/pilots/{pilot}/heartbeat", json={}, headers=launch).status_code == 403
    assert client.post("/v1/tasks", json={}, headers=launch).status_code == 403


def test_a_pilots_credential_acts_for_that_pilot_alone(
    world: tuple[Any, dict[str, str]],
) -> None:
    client, tokens = world
    # Given two registered pilots and a task of alice's with jobs
    first, first_token = _register(client, tokens["launcher"])
    second, _ = _register(client, tokens["launcher"])
    body = {"name": "t", "command": ["true"], "n_jobs": 2}
    task = client.post("/v1/tasks", json=body, headers=_auth(tokens["alice"])).get_json()
    mine = _auth(first_token)

    # Then the first pilot may heartbeat and acquire for itself, and gets a fresh credential
    beat = client.post(f"/v1/pilots/{first}/heartbeat", json={"jobs": []}, headers=mine)
    assert beat.status_code == 200 and beat.get_json()["token"].count(".") == 2
    # But not for the other pilot, nor submit, read jobs or register pilots
    other = client.post(f"/v1/pilots/{second}/acquire", json={"n": 1}, headers=mine)
    assert other.status_code == 403
    assert (
        other.get_json()["message"] == f"pilot {first}'s credential cannot act for pilot {second}"
    )
    assert client.post("/v1/tasks", json=body, headers=mine).status_code == 403
    assert client.get(f"/v1/tasks/{task['id']}/jobs", headers=mine).status_code == 403
    assert client.post("/v1/pilots", json={"queue": "local"}, headers=mine).status_code == 403


def test_a_pilot_cannot_log_upload_or_report_for_a_job_it_does_not_hold(
    world: tuple[Any, dict[str, str]], svc: Services
) -> None:
    client, tokens = world
    first, first_token = _register(client, tokens["launcher"])
    second, second_token = _register(client, tokens["launcher"])
    body = {"name": "t", "command": ["true"], "n_jobs": 1}
    client.post("/v1/tasks", json=body, headers=_auth(tokens["alice"]))
    # Given a job the second pilot holds

    Router(Pipeline(svc), svc.store).drain()  # split
    held = client.post(f"/v1/pilots/{second}/acquire", json={"n": 1}, headers=_auth(second_token))
    (job,) = held.get_json()["jobs"]
    mine = _auth(first_token)
    # When the first pilot writes to its log, uploads an output as the other, or reports on it
    log = client.post(f"/v1/jobs/{job['id']}/log?attempt=1", data=b"x", headers=mine)
    assert (
        log.status_code == 403 and f"pilot {first} does not hold job" in log.get_json()["message"]
    )
    put = client.put(
        f"/v1/jobs/{job['id']}/outputs/o.txt?attempt=1&pilot={second}", data=b"x", headers=mine
    )
    assert put.status_code == 403
    report = {
        "reports": [{"job_id": job["id"], "attempt": 1, "status": "finished", "exit_code": 0}]
    }
    update = client.post(f"/v1/pilots/{first}/update", json=report, headers=mine).get_json()
    # Then each is refused, and the job is still the second pilot's, sent
    assert update["results"][0]["accepted"] is False
    assert svc.store.get_job(job["id"]).status == "sent"


def test_an_expired_or_forged_pilot_credential_is_refused(
    world: tuple[Any, dict[str, str]],
) -> None:
    client, _ = world
    expired = PilotCredentials(KEY, ttl_s=60, clock=lambda: time.time() - 3600).issue("p1")
    reply = client.post("/v1/pilots/p1/heartbeat", json={}, headers=_auth(expired))
    assert reply.status_code == 401
    assert reply.get_json()["message"] == "pilot credential expired: register again"
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "p1", "iat": int(time.time()),
              "exp": int(time.time()) + 600}  # fmt: skip
    forged = {
        "another key": jwt.encode(claims, b"x" * 32, algorithm="HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "tampered": PilotCredentials(KEY).issue("p1")[:-2] + "AA",
    }
    for what, token in forged.items():
        reply = client.post("/v1/pilots/p1/heartbeat", json={}, headers=_auth(token))
        assert reply.status_code == 401, what
        assert reply.get_json()["message"].startswith("invalid pilot credential"), what


def test_pilot_credentials_need_a_long_key_and_name_their_pilot() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PilotCredentials(b"short")
    creds = PilotCredentials(KEY)
    principal = creds.authenticate(creds.issue("p9"))
    assert (principal.pilot, principal.roles) == ("p9", {Role.PILOT})
    with pytest.raises(Unauthorized):
        creds.authenticate("a.b.c")
