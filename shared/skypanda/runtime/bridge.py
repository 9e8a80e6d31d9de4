"""Stand-ins for what Google Cloud does between services, for running on the emulators.

- `OutboxBridge` plays Eventarc: the Firestore emulator delivers no triggers, so a snapshot
  listener on the outbox collection turns each new event document into the CloudEvent Eventarc
  would send (`google.cloud.firestore.document.v1.written`, protobuf `DocumentEventData`, binary
  mode) and POSTs it to the `release` function, retrying like Eventarc does.
- `gateway` plays the HTTPS load balancer's URL map: one URL, users' routes to `submit`,
  pilots' routes to `dispatch`.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter
from google.events.cloud.firestore_v1.types import (
    ArrayValue,
    Document,
    DocumentEventData,
    MapValue,
    Value,
)

from skypanda.runtime.cloudfn import FIRESTORE_WRITTEN

log = logging.getLogger(__name__)
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def to_value(v: Any) -> Value:
    """A Python value (as the Firestore client returns it) as a Firestore protobuf Value."""
    if v is None:
        return Value(null_value=0)
    if isinstance(v, bool):
        return Value(boolean_value=v)
    if isinstance(v, int):
        return Value(integer_value=v)
    if isinstance(v, float):
        return Value(double_value=v)
    if isinstance(v, str):
        return Value(string_value=v)
    if isinstance(v, bytes):
        return Value(bytes_value=v)
    if isinstance(v, dt.datetime):
        return Value(timestamp_value=v)
    if isinstance(v, dict):
        return Value(map_value=MapValue(fields={k: to_value(x) for k, x in v.items()}))
    if isinstance(v, list | tuple):
        return Value(array_value=ArrayValue(values=[to_value(x) for x in v]))
    return Value(string_value=str(v))


def written_event(project: str, path: str, fields: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """Headers and body of the binary-mode CloudEvent for the creation of document `path`."""
    name = f"projects/{project}/databases/(default)/documents/{path}"
    doc = Document(name=name, fields={k: to_value(v) for k, v in fields.items()})
    body = DocumentEventData.serialize(DocumentEventData(value=doc))
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"written:{path}",
        "ce-type": FIRESTORE_WRITTEN,
        "ce-source": f"//firestore.googleapis.com/projects/{project}/databases/(default)",
        "ce-subject": f"documents/{path}",
        "Content-Type": "application/protobuf",
    }
    return headers, body


class OutboxBridge:
    """Deliver new outbox documents to a function URL, at least once, in arrival order."""

    def __init__(
        self, client: Any, collection: str, url: str, project: str, *, tries: int = 5
    ) -> None:
        self._col = client.collection(collection)
        self._collection = collection
        self._url = url
        self._project = project
        self._tries = tries
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name="skypanda-eventarc", daemon=True)
        self.delivered = 0

    def start(self) -> None:
        self._thread.start()
        # Only undelivered events: after a restart, what was delivered is not sent again.
        undelivered = FieldFilter("delivered", "==", False)
        self._watch = self._col.where(filter=undelivered).on_snapshot(self._on_snapshot)

    def _on_snapshot(self, _docs: Any, changes: Any, _read_time: Any) -> None:
        for change in changes:
            if change.type.name == "ADDED":
                self._queue.put((change.document.id, change.document.to_dict() or {}))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            doc_id, fields = item
            headers, body = written_event(self._project, f"{self._collection}/{doc_id}", fields)
            if self._post(headers, body):
                self._col.document(doc_id).update({"delivered": True})
                self.delivered += 1
            self._queue.task_done()

    def drain(self) -> None:
        """Wait until every event seen so far has been delivered (or given up on)."""
        self._queue.join()

    def _post(self, headers: dict[str, str], body: bytes) -> bool:
        for attempt in range(self._tries):
            req = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return bool(200 <= resp.status < 300)
            except (urllib.error.URLError, OSError) as e:
                log.warning("eventarc stand-in: delivery to %s failed (%s); retrying", self._url, e)
                time.sleep(min(10.0, 0.5 * 2**attempt))
        log.error("eventarc stand-in: giving up on %s", headers["ce-subject"])
        return False

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.unsubscribe()
        self._queue.put(None)
        self._thread.join(timeout=10)


def is_pilot_route(method: str, path: str) -> bool:
    return (
        path.startswith("/v1/pilots/")
        or (method == "POST" and path.startswith("/v1/jobs/") and path.endswith("/log"))
        or (method == "POST" and path == "/v1/pilots")
    )


def gateway(users: WsgiApp, pilots: WsgiApp) -> WsgiApp:
    """One WSGI app in front of the `submit` and `dispatch` functions."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        pick = (
            pilots
            if is_pilot_route(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
            else users
        )
        return pick(environ, start_response)

    return app
