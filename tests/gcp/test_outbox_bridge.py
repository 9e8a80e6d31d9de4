"""The Eventarc stand-in (runtime.bridge.OutboxBridge) against the Firestore emulator: a
delivery the function refuses is tried again with backoff, well past a handful of tries, and
holds back no other event meanwhile; one refused until `give_up_s` is given up on."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.cloud import firestore

from skypanda.runtime.bridge import OutboxBridge
from skypanda.runtime.emulators import PROJECT
from tests.e2e.conftest import wait_until


class Function:
    """A function's URL on 127.0.0.1 that answers 503 to the events of `refuse` (their
    document ids) and 204 to the others, counting the tries and the deliveries of each."""

    def __init__(self) -> None:
        self.refuse: set[str] = set()
        self.tries: Counter[str] = Counter()
        self.delivered: list[str] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                doc_id = self.headers["ce-subject"].rsplit("/", 1)[-1]
                with owner._lock:
                    owner.tries[doc_id] += 1
                    refused = doc_id in owner.refuse
                    if not refused:
                        owner.delivered.append(doc_id)
                self.send_response(503 if refused else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def events(firestore_emulator: Any) -> Iterator[Any]:
    """An outbox collection of its own on the emulator, a client that writes to it, and one
    the bridge listens with. The bridge has a client of its own, as in the emulated cloud
    (runtime.emulated): the emulator may cancel a commit sent on the channel of a listen
    stream being closed (seen in CI: 499 "call already cancelled")."""
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT)
    writer, watcher = firestore.Client(project=project), firestore.Client(project=project)
    yield writer, f"b{uuid.uuid4().hex[:8]}-events", watcher
    for client in (writer, watcher):
        client.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def function() -> Iterator[Function]:
    fn = Function()
    yield fn
    fn.stop()


def _bridge(events: Any, function: Function, **opts: Any) -> OutboxBridge:
    _, collection, watcher = events
    bridge = OutboxBridge(watcher, collection, function.url, PROJECT, **opts)
    bridge.start()
    return bridge


def _event(events: Any, doc_id: str) -> None:
    client, collection, _ = events
    client.collection(collection).document(doc_id).set(
        {"type": "job.ended", "subject": "jobs/j", "data": "{}", "delivered": False}
    )


def test_a_refused_delivery_is_tried_again_past_five_tries_and_holds_back_no_other_event(
    events: Any, function: Function
) -> None:
    # Given a function that refuses event e1 (as one whose commit keeps meeting contention)
    function.refuse.add("e1")
    bridge = _bridge(events, function, backoff_s=0.01, max_backoff_s=0.05)
    try:
        _event(events, "e1")
        # When e1 has been refused more often than Eventarc's stand-in used to try (5), and
        # a second event comes meanwhile
        wait_until(lambda: function.tries["e1"] >= 7, 60, "e1 refused 7 times")
        _event(events, "e2")
        # Then e2 is delivered while e1 still waits for its retries
        wait_until(lambda: "e2" in function.delivered, 60, "e2 to be delivered")
        assert "e1" not in function.delivered
        # And once the function takes e1, e1 is delivered, and nothing was given up on (at
        # least once: a listener that restarts its stream may hear of a document again)
        function.refuse.discard("e1")
        wait_until(lambda: "e1" in function.delivered, 60, "e1 to be delivered")
        bridge.drain()
        assert set(function.delivered) == {"e1", "e2"}
        assert bridge.delivered >= 2 and bridge.given_up == 0 and bridge.retried >= 7
    finally:
        bridge.stop()


def test_a_delivery_refused_for_longer_than_give_up_s_is_given_up_on(
    events: Any, function: Function
) -> None:
    # Given a function that always refuses e1, and a bridge that gives up after 0.3 s
    function.refuse.add("e1")
    bridge = _bridge(events, function, backoff_s=0.01, max_backoff_s=0.05, give_up_s=0.3)
    try:
        # When e1 is written
        _event(events, "e1")
        # Then it is tried a few times, then given up on (the sweep's re-send is what is left)
        wait_until(lambda: bridge.given_up == 1, 60, "e1 to be given up on")
        bridge.drain()
        assert function.tries["e1"] >= 2 and not function.delivered and bridge.delivered == 0
    finally:
        bridge.stop()


def test_the_bridge_listens_again_when_its_listener_ends(events: Any, function: Function) -> None:
    # Given a bridge delivering events
    bridge = _bridge(events, function, backoff_s=0.01, max_backoff_s=0.05)
    try:
        _event(events, "e1")
        wait_until(lambda: "e1" in function.delivered, 60, "e1 to be delivered")
        # When its listener ends, as the client ends one whose stream the server cancelled
        # (google.cloud.firestore_v1.watch: Cancelled ends a listener for good)
        bridge._watch.close()
        # Then a later event is still delivered: the bridge listened again
        _event(events, "e2")
        wait_until(lambda: "e2" in function.delivered, 60, "e2 to be delivered")
        assert bridge.relistened >= 1
    finally:
        bridge.stop()


def test_an_event_the_listener_does_not_tell_is_found_by_the_listing(
    events: Any, function: Function, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a bridge whose listener fell silent (as the emulator's can, open yet telling
    # nothing): here ended, and never listened again
    bridge = _bridge(events, function, backoff_s=0.01, max_backoff_s=0.05)
    try:
        monkeypatch.setattr(bridge, "_listen", lambda: None)
        bridge._watch.close()
        # When an event is written
        _event(events, "e1")
        # Then the bridge's own listing finds it and delivers it, once
        wait_until(lambda: "e1" in function.delivered, 60, "e1 to be delivered")
        assert bridge.listed == 1 and function.delivered == ["e1"]
    finally:
        bridge.stop()
