"""Pilot credentials: a launch credential may only register; registering gives the pilot a
credential scoped to itself and short-lived, renewed by its heartbeats; with it the pilot can
act for itself alone, and it expires. A launcher's per-pilot launch credential registers that
one pilot, once, and does nothing else. Over HTTP, through the real app."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.adapters.pilot_credentials import (
    AUDIENCE,
    ISSUER,
    LAUNCH_AUDIENCE,
    PilotCredentials,
    WithPilotCredentials,
)
from skypanda.api.app import create_app
from skypanda.domain.errors import Unauthorized
from skypanda.domain.identity import Role
from skypanda.domain.models import Pilot
from skypanda.domain.states import PilotStatus
from skypanda.handlers.pipeline import Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router

KEY = b"k" * 32


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


# -- a launcher's per-pilot, single-use launch credential --------------------------------------


def _launched(svc: Services, pilot_id: str) -> str:
    """A pilot record as the scaler makes it before launching the pilot: submitted."""
    svc.fleet.add_pilot(Pilot(id=pilot_id, queue="local", created_at=svc.clock.now()))
    return pilot_id


def _register_as(client: Any, token: str, pilot_id: str | None, host: str = "node-1") -> Any:
    body = {"queue": "local", "host": host, **({"pilot_id": pilot_id} if pilot_id else {})}
    return client.post("/v1/pilots", json=body, headers=_auth(token))


def test_a_launch_credential_registers_its_pilot_which_then_acts_with_its_own(
    world: tuple[Any, dict[str, str]], svc: Services
) -> None:
    client, _ = world
    # Given a pilot the scaler launched with a launch credential for it alone
    pilot = _launched(svc, "p-x")
    launch = PilotCredentials(KEY).issue_launch(pilot)
    # When the pilot registers with it
    reply = _register_as(client, launch, pilot)
    # Then the pilot runs, and got a credential of its own that it acts with
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["pilot"]["status"] == "running"
    own = reply.get_json()["token"]
    assert PilotCredentials(KEY).authenticate(own).pilot == pilot
    beat = client.post(f"/v1/pilots/{pilot}/heartbeat", json={"jobs": []}, headers=_auth(own))
    assert beat.status_code == 200


def test_a_launch_credential_registers_no_other_pilot(
    world: tuple[Any, dict[str, str]], svc: Services
) -> None:
    client, _ = world
    # Given two launched pilots and the launch credential of the first
    mine, other = _launched(svc, "p-x"), _launched(svc, "p-y")
    launch = PilotCredentials(KEY).issue_launch(mine)
    # When it is used to register the other pilot, or a new unnamed one
    as_other = _register_as(client, launch, other)
    unnamed = _register_as(client, launch, None)
    # Then both are refused, naming the pilot it is for and the one asked for
    refused = "a launch credential for pilot p-x cannot register"
    assert as_other.status_code == 403
    assert as_other.get_json()["message"] == f"{refused} pilot p-y"
    assert unnamed.status_code == 403
    assert unnamed.get_json()["message"] == f"{refused} a new pilot"
    # And nothing was registered
    assert {p.id: p.status for p in svc.fleet.list_pilots()} == {
        "p-x": PilotStatus.SUBMITTED,
        "p-y": PilotStatus.SUBMITTED,
    }


def test_a_launch_credential_registers_its_pilot_once(
    world: tuple[Any, dict[str, str]], svc: Services
) -> None:
    client, _ = world
    # Given a pilot that registered with its launch credential
    pilot = _launched(svc, "p-x")
    launch = PilotCredentials(KEY).issue_launch(pilot)
    first = _register_as(client, launch, pilot, host="node-1")
    assert first.status_code == 201
    # When the credential is presented again (a payload that read it from the pilot's
    # environment, or a replay)
    again = _register_as(client, launch, pilot, host="elsewhere")
    # Then it is refused as spent, and the pilot's record is the first registration's
    assert again.status_code == 403
    assert again.get_json()["message"] == (
        "the launch credential for pilot p-x is spent: the pilot is running "
        "(a pilot registers once)"
    )
    assert svc.fleet.get_pilot(pilot).host == "node-1"
    # And so it stays once the pilot has ended
    own = _auth(first.get_json()["token"])
    end = client.post(f"/v1/pilots/{pilot}/end", json={"status": "finished"}, headers=own)
    assert end.status_code == 200
    late = _register_as(client, launch, pilot)
    assert late.status_code == 403 and "the pilot is finished" in late.get_json()["message"]


def test_an_expired_or_forged_launch_credential_is_refused(
    world: tuple[Any, dict[str, str]], svc: Services
) -> None:
    client, _ = world
    pilot = _launched(svc, "p-x")
    # Given a launch credential an hour old that lived a minute
    old = PilotCredentials(KEY, launch_ttl_s=60, clock=lambda: time.time() - 3600)
    reply = _register_as(client, old.issue_launch(pilot), pilot)
    # Then it is refused, saying what to do
    assert reply.status_code == 401
    assert (
        reply.get_json()["message"] == "launch credential expired: the pilot must be launched again"
    )
    # And one signed with another key is refused too
    forged = PilotCredentials(b"x" * 32).issue_launch(pilot)
    reply = _register_as(client, forged, pilot)
    assert reply.status_code == 401
    assert reply.get_json()["message"].startswith("invalid launch credential")
    assert svc.fleet.get_pilot(pilot).status is PilotStatus.SUBMITTED


def test_pilot_and_launch_credentials_are_not_interchangeable(
    world: tuple[Any, dict[str, str]], svc: Services
) -> None:
    client, _ = world
    creds, L = PilotCredentials(KEY), Role.LAUNCHER
    pilot = _launched(svc, "p-x")
    # A pilot credential cannot register, not even its own pilot while it is still submitted
    reply = _register_as(client, creds.issue(pilot), pilot)
    assert reply.status_code == 403
    assert reply.get_json()["message"] == "pilot p-x's credential cannot register pilots"
    # A launch credential cannot act as its pilot
    launch = _auth(creds.issue_launch(pilot))
    for route in ("heartbeat", "acquire", "update", "end"):
        reply = client.post(f"/v1/pilots/{pilot}/{route}", json={}, headers=launch)
        assert reply.status_code == 403, route
    # Each verifies as its own kind only: the audiences differ
    as_launch = creds.authenticate(creds.issue_launch(pilot))
    assert (as_launch.roles, as_launch.launch_for, as_launch.pilot) == ({L}, pilot, None)
    as_pilot = creds.authenticate(creds.issue(pilot))
    assert (as_pilot.roles, as_pilot.launch_for, as_pilot.pilot) == ({Role.PILOT}, None, pilot)
    # And a token of our key claiming both audiences, or another, is neither
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": pilot, "iat": now, "exp": now + 600}
    both = jwt.encode({**claims, "aud": [AUDIENCE, LAUNCH_AUDIENCE]}, KEY, algorithm="HS256")
    other = jwt.encode({**claims, "aud": "skypanda-elsewhere"}, KEY, algorithm="HS256")
    with pytest.raises(Unauthorized, match="is not one credential's"):
        creds.authenticate(both)
    with pytest.raises(Unauthorized, match="Audience doesn't match"):
        creds.authenticate(other)


def _routes(client: Any) -> list[tuple[str, str, str]]:
    """Every (endpoint, method, path) of the app, path parameters filled with a pilot's id."""
    out = []
    for rule in client.application.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, re.sub(r"<(?:[^:>]+:)?([^>]+)>", "p-x", rule.rule)))
    return sorted(out)


def test_a_launch_credential_can_call_nothing_but_register_and_the_pilot_download(
    world: tuple[Any, dict[str, str]], svc: Services
) -> None:
    client, _ = world
    pilot = _launched(svc, "p-x")
    launch = _auth(PilotCredentials(KEY).issue_launch(pilot))
    # When it calls every route of the API but registration and the pilot's download
    answers = {
        f"{method} {path}": client.open(path, method=method, headers=launch, json={}).status_code
        for endpoint, method, path in _routes(client)
        if endpoint not in ("register", "pilot_zipapp")
    }
    # Then each is refused; the download is allowed and does not spend it
    assert answers and {a: s for a, s in answers.items() if s != 403} == {}
    assert client.get("/v1/pilot.pyz", headers=launch).status_code == 200
    assert svc.fleet.get_pilot(pilot).status is PilotStatus.SUBMITTED
