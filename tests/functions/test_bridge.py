"""The Eventarc stand-in sends what Eventarc sends: cloudfn decodes it back to the same event."""

from __future__ import annotations

import json

from cloudevents.http import from_http

from skypanda.domain import events as ev
from skypanda.runtime import cloudfn
from skypanda.runtime.bridge import gateway, is_pilot_route, written_event


def test_written_event_round_trips_through_the_release_decoder() -> None:
    # Given an outbox document as the Firestore client returns it
    event = ev.job_ended("t1-00ab", 2, "t1", "finished")
    fields = {"type": str(event.type), "subject": event.subject,
              "data": json.dumps(event.data), "created_at": 1.5, "seq": 7, "delivered": False,
              "error": None, "tags": ["a", 1]}  # fmt: skip
    # When the bridge builds the binary-mode CloudEvent for its creation
    headers, body = written_event("proj", f"events/{event.id}", fields)
    cloud_event = from_http(headers, body)
    # Then it is a Firestore `written` event and decodes to the same skypanda event
    assert cloud_event["type"] == cloudfn.FIRESTORE_WRITTEN
    assert cloudfn.event_from_document(cloud_event) == event


def test_gateway_sends_pilot_routes_to_dispatch_and_the_rest_to_submit() -> None:
    assert is_pilot_route("POST", "/v1/pilots")
    assert is_pilot_route("POST", "/v1/pilots/p1/acquire")
    assert is_pilot_route("POST", "/v1/jobs/j1/log")
    assert not is_pilot_route("GET", "/v1/pilots")
    assert not is_pilot_route("GET", "/v1/jobs/j1/log")
    assert not is_pilot_route("POST", "/v1/tasks")
    seen: list[str] = []

    def app(name: str):  # type: ignore[no-untyped-def]
        def wsgi(environ, start_response):  # type: ignore[no-untyped-def]
            seen.append(name)
            return [b""]

        return wsgi

    front = gateway(app("submit"), app("dispatch"))
    front({"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/pilots/p/update"}, lambda *a: None)
    front({"REQUEST_METHOD": "GET", "PATH_INFO": "/v1/tasks"}, lambda *a: None)
    assert seen == ["dispatch", "submit"]
