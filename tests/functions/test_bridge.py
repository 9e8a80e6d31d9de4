"""The Eventarc stand-in sends what Eventarc sends: cloudfn decodes it back to the same event."""

from __future__ import annotations

import json
import re

import pytest
from cloudevents.http import from_http

from skypanda.api.app import ALL_PARTS, create_app
from skypanda.domain import events as ev
from skypanda.runtime import cloudfn
from skypanda.runtime.bridge import gateway, path_router, written_event
from skypanda.runtime.deployment import (
    HTTP_PARTS,
    dispatch_rules,
    dispatch_templates,
    path_template,
)


def test_written_event_round_trips_through_the_release_decoder() -> None:
    # Given an outbox document as the Firestore client returns it
    event = ev.job_ended("t1-00ab", 2, "t1", "finished")
    fields = {"type": str(event.type), "subject": event.subject,
              "data": json.dumps(event.data), "created_at": 1.5, "seq": 7, "delivered": False,
              "error": None, "tags": ["a", 1]}  # fmt: skip
    # When the bridge builds the binary-mode CloudEvent for its creation
    headers, body = written_event("proj", f"events/{event.id}", fields)
    cloud_event = from_http(headers, body)
    # Then it is a Firestore `created` event and decodes to the same skypanda event
    assert cloud_event["type"] == cloudfn.FIRESTORE_CREATED
    assert cloudfn.event_from_document(cloud_event) == event


def _concrete(rule: str) -> str:
    """A path the rule matches: each variable filled with a sample value."""
    return re.sub(r"<path:[^>]+>", "dir/out.txt", re.sub(r"<(?:string:)?[^>:]+>", "x1", rule))


def test_gateway_sends_every_route_of_the_api_to_a_function_that_serves_it() -> None:
    # Given the whole API (every route group) and the two HTTP functions as deployed
    apps = {name: create_app(None, None, parts) for name, parts in HTTP_PARTS.items()}  # type: ignore[arg-type]
    whole = create_app(None, None, ALL_PARTS)  # type: ignore[arg-type]
    seen: list[str] = []

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def wsgi(environ, start_response):  # type: ignore[no-untyped-def]
            seen.append(name)
            return [b""]

        return wsgi

    front = gateway(recorder("submit"), recorder("dispatch"), dispatch_rules())
    routes = [(r.rule, r.endpoint, sorted((r.methods or set()) - {"HEAD", "OPTIONS"}))
              for r in whole.url_map.iter_rules()]  # fmt: skip
    assert len(routes) >= 35
    for rule, endpoint, methods in routes:
        for method in methods:
            # When a request for it goes through the gateway
            path = _concrete(rule)
            seen.clear()
            front({"REQUEST_METHOD": method, "PATH_INFO": path}, lambda *a: None)
            # Then the function it reaches serves that route (the same endpoint)
            (fn,) = seen
            served, _ = apps[fn].url_map.bind("").match(path, method=method)
            assert served == endpoint, f"{method} {path} went to {fn}, which serves {served}"


@pytest.mark.parametrize(
    ("method", "path", "function"),
    [
        ("PUT", "/v1/jobs/j1/outputs/a/b.txt", "dispatch"),
        ("GET", "/v1/pilot.pyz", "dispatch"),
        ("POST", "/v1/pilots/p1/drain", "submit"),
        ("POST", "/v1/pilots/p1/acquire", "dispatch"),
        ("GET", "/v1/jobs/j1/log", "dispatch"),  # shares its path with append_log
        ("POST", "/v1/tasks", "submit"),
    ],
)
def test_the_routes_once_unreachable_now_reach_their_function(
    method: str, path: str, function: str
) -> None:
    assert path_router(dispatch_rules())(path) == function


def test_the_front_door_templates_are_the_pilot_paths() -> None:
    templates = dispatch_templates()
    assert "/v1/jobs/{job_id}/outputs/{name=**}" in templates
    assert "/v1/pilots/{pilot_id}/acquire" in templates
    assert all("<" not in t for t in templates)
    with pytest.raises(ValueError, match="converter"):
        path_template("/v1/x/<int:n>")
