"""The pilots' hot routes answered in front of Flask (`api.pilot_path`) answer exactly as
Flask's own routes for them do: the same status and JSON for a report with an acquire, an
acquire, a heartbeat, and for every refusal (no or a bad credential, another pilot's
credential, a launch credential, an unknown or ended pilot, a body that is not JSON, not an
object, or not valid). What they leave to Flask (another method, a large body) is answered
by Flask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from skypanda.adapters.local.tokens import LocalTokens
from skypanda.adapters.pilot_credentials import PilotCredentials, WithPilotCredentials
from skypanda.api import pilot_path
from skypanda.api.app import create_app
from skypanda.domain.identity import Role
from skypanda.handlers.services import Services

KEY = b"k" * 32


class World:
    def __init__(self, svc: Services, tmp_path: Path) -> None:
        people = LocalTokens(tmp_path / "users.json")
        self.alice = people.add("alice", Role.USER)
        self.launcher = people.add("launch", Role.LAUNCHER)
        self.admin = people.add("root", Role.ADMIN)
        self.app: Flask = create_app(svc, WithPilotCredentials(people, PilotCredentials(KEY)))
        self.lean = self.app.test_client()
        self.flask = Client(self.app.wsgi_app.__wrapped__)  # type: ignore[attr-defined]
        self.flask_calls = 0
        dispatch_request = self.app.full_dispatch_request

        def counted() -> Any:
            self.flask_calls += 1
            return dispatch_request()

        self.app.full_dispatch_request = counted  # type: ignore[method-assign]

    def register(self) -> tuple[str, str]:
        reply = self.lean.post("/v1/pilots", json={"queue": "local"}, headers=auth(self.launcher))
        assert reply.status_code == 201, reply.get_json()
        return reply.get_json()["pilot"]["id"], reply.get_json()["token"]

    def both(self, path: str, **kw: Any) -> tuple[Any, Any]:
        """(the lean answer, Flask's answer) of the same POST: (status, JSON without the
        credential a heartbeat renews)."""
        calls = self.flask_calls
        lean = self.lean.post(path, **kw)
        assert self.flask_calls == calls, "the lean layer left it to Flask"
        flask = self.flask.post(path, **kw)
        assert self.flask_calls == calls + 1
        return _seen(lean), _seen(flask)


def _seen(response: Any) -> tuple[int, str, Any]:
    body = response.get_json()
    if isinstance(body, dict):
        body.pop("token", None)
    return response.status_code, response.mimetype, body


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(svc: Services, tmp_path: Path) -> World:
    return World(svc, tmp_path)


def test_the_lean_routes_answer_as_flask_does(world: World) -> None:
    # Given two registered pilots, with their own credentials, and a task of alice's
    first, token = world.register()
    second, _ = world.register()
    body = {"name": "t", "command": ["true"], "n_jobs": 3}
    task = world.lean.post("/v1/tasks", json=body, headers=auth(world.alice))
    assert task.status_code == 201
    mine = auth(token)
    # When each call goes the lean way and then through Flask, the answers are the same
    calls: list[tuple[str, dict[str, Any]]] = [
        (f"/v1/pilots/{first}/acquire", {"json": {"n": 1}, "headers": mine}),
        (f"/v1/pilots/{first}/heartbeat", {"json": {"jobs": []}, "headers": mine}),
        (f"/v1/pilots/{first}/heartbeat", {"json": {}, "headers": mine}),
        (f"/v1/pilots/{first}/update", {"json": {"reports": []}, "headers": mine}),
        (f"/v1/pilots/{first}/update", {"json": {"reports": [], "acquire": 1}, "headers": mine}),
        (
            f"/v1/pilots/{first}/update",
            {
                "json": {"reports": [{"job_id": "nope", "attempt": 1, "status": "running"}]},
                "headers": mine,
            },
        ),
        # refusals: credentials
        (f"/v1/pilots/{first}/update", {"json": {"reports": []}}),
        (f"/v1/pilots/{first}/update", {"json": {"reports": []}, "headers": auth("x" * 40)}),
        (f"/v1/pilots/{first}/acquire", {"json": {}, "headers": {"Authorization": "Basic a"}}),
        (f"/v1/pilots/{second}/acquire", {"json": {}, "headers": mine}),
        (f"/v1/pilots/{first}/heartbeat", {"json": {}, "headers": auth(world.launcher)}),
        (f"/v1/pilots/{first}/acquire", {"json": {}, "headers": auth(world.alice)}),
        # refusals: the pilot, the body
        ("/v1/pilots/p-unknown/acquire", {"json": {}, "headers": auth(world.admin)}),
        (f"/v1/pilots/{first}/update", {"data": b"  ", "headers": mine}),
        (f"/v1/pilots/{first}/update", {"data": b"{not json", "headers": mine}),
        (f"/v1/pilots/{first}/update", {"data": b"[1, 2]", "headers": mine}),
        (f"/v1/pilots/{first}/update", {"data": b'{"x": NaN}', "headers": mine}),
        (f"/v1/pilots/{first}/update", {"json": {"reports": [{}]}, "headers": mine}),
        (f"/v1/pilots/{first}/acquire", {"json": {"n": 0, "extra": 1}, "headers": mine}),
        (f"/v1/pilots/{first}/acquire", {"json": {"wait_s": -1}, "headers": mine}),
    ]
    statuses = set()
    for path, kw in calls:
        lean, flask = world.both(path, **kw)
        assert lean == flask, (path, kw)
        statuses.add(lean[0])
    # Then every kind of answer was compared
    assert statuses >= {200, 401, 403, 404, 422}, statuses
    # And a pilot that ended is refused alike
    ended = world.lean.post(f"/v1/pilots/{first}/end", json={"status": "finished"}, headers=mine)
    assert ended.status_code == 200
    lean, flask = world.both(f"/v1/pilots/{first}/acquire", json={}, headers=mine)
    assert lean == flask and lean[0] == 409


def test_what_the_lean_layer_leaves_goes_to_flask(world: World) -> None:
    first, token = world.register()
    mine = auth(token)
    calls = world.flask_calls
    # A body over its limit (a report with long logs) is answered by Flask's route
    big = {"reports": [], "padding": "x" * pilot_path.LEAN_MAX_BYTES}
    reply = world.lean.post(f"/v1/pilots/{first}/update", json=big, headers=mine)
    assert reply.status_code == 422 and "padding" in reply.get_json()["message"]
    assert world.flask_calls == calls + 1
    # And so is another method (Flask's 405), with no credential checked first by the layer
    got = world.lean.get(f"/v1/pilots/{first}/update", headers=mine)
    assert got.status_code == 405
