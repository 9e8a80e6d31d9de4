"""Stand-ins for what Google Cloud does between services, for running on the emulators.

- `OutboxBridge` plays Eventarc: the Firestore emulator delivers no triggers, so a snapshot
  listener on the outbox collection turns each new event document into the CloudEvent Eventarc
  would send (`google.cloud.firestore.document.v1.created`, protobuf `DocumentEventData`,
  binary mode) and POSTs it to the `release` function, retrying like Eventarc does (with
  backoff, for up to a day, holding back no other event). Like Eventarc it marks nothing: the
  function marks the event handled. `drop` loses deliveries on purpose (tests of the sweep's
  re-send).
- `gateway` plays the HTTPS load balancer's URL map: one URL, the paths of pilots' routes to
  `dispatch` (`runtime.deployment.dispatch_rules`, which the real URL map is made from),
  everything else to `submit`.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter
from google.events.cloud.firestore_v1.types import (
    ArrayValue,
    Document,
    DocumentEventData,
    MapValue,
    Value,
)
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule

from skypanda.runtime.cloudfn import FIRESTORE_CREATED

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
        "ce-type": FIRESTORE_CREATED,
        "ce-source": f"//firestore.googleapis.com/projects/{project}/databases/(default)",
        "ce-subject": f"documents/{path}",
        "Content-Type": "application/protobuf",
    }
    return headers, body


LISTENER_CHECK_S = 1.0
"""How often the bridge checks that its outbox listener still listens."""
LIST_EVERY_S = 2.0
"""How often the bridge also lists the undelivered events itself (`OutboxBridge._list`)."""


@dataclass
class _Delivery:
    """One outbox document on its way: the CloudEvent, and its tries so far."""

    subject: str
    headers: dict[str, str]
    body: bytes
    first: float  # monotonic time of its first try
    tries: int = 0


class OutboxBridge:
    """Deliver new outbox documents to a function URL, at least once, retrying like Eventarc.

    Eventarc retries a failed delivery (the function raised, or its instance was busy) with
    exponential backoff for up to a day (`retry_policy` RETRY_POLICY_RETRY:
    infra/terraform/functions.tf), and a delivery waiting for its retry holds back no other.
    So here: a failed delivery is tried again after `backoff_s`, doubling up to
    `max_backoff_s`, until `give_up_s` after its first try, while new events go on being
    delivered; one at a time, new events in the order they came (a retry due goes first).
    Events are heard from a Firestore listener, listened again when the client ends it, and
    from a listing every LIST_EVERY_S (the emulator's listener can fall silent).
    """

    def __init__(
        self,
        client: Any,
        collection: str,
        url: str,
        project: str,
        *,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        give_up_s: float = 24 * 3600.0,
        drop: Callable[[str, dict[str, Any]], bool] | None = None,
    ) -> None:
        self._col = client.collection(collection)
        self._collection = collection
        self._url = url
        self._project = project
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._give_up_s = give_up_s
        self._drop = drop or (lambda _id, _fields: False)
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._watch: Any = None
        self._known: set[str] = set()  # ids queued, or delivered and not yet marked so
        self._known_lock = threading.Lock()
        self._listening = threading.Lock()  # (re)opening or closing the listener
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="skypanda-eventarc", daemon=True)
        self.delivered = 0
        self.dropped = 0
        self.retried = 0
        self.given_up = 0
        self.relistened = 0
        self.listed = 0  # events found by a listing, not by the listener

    def start(self) -> None:
        self._listen()
        self._thread.start()

    def _undelivered(self) -> Any:
        """The query of the events not handled yet (after a restart, what was delivered is
        not sent again)."""
        return self._col.where(filter=FieldFilter("delivered", "==", False))

    def _listen(self) -> None:
        self._watch = self._undelivered().on_snapshot(self._on_snapshot)

    def _list(self) -> None:
        """List the undelivered events and queue those not known: the emulator's listener can
        stay open yet fall silent under load (seen: events left undelivered for minutes while
        it was alive). What was marked delivered meanwhile is forgotten."""
        try:
            docs = {d.id: d for d in self._undelivered().stream()}
        except Exception as e:  # the emulator is what failed: the next listing tries again
            log.warning("eventarc stand-in: cannot list the outbox: %s", e)
            return
        with self._known_lock:
            self._known &= docs.keys()
        for doc_id, doc in docs.items():
            self.listed += self._heard(doc_id, doc.to_dict() or {})

    def _keep_listening(self) -> None:
        """Listen again if the listener died: the client ends a listener whose stream the
        server cancelled (the emulator does, under load), and every later event would wait
        for the sweep's re-send."""
        with self._listening:
            if self._stopping or self._watch is None or self._watch.is_active:
                return
            log.warning("eventarc stand-in: the outbox listener ended; listening again")
            self.relistened += 1
            self._listen()

    def _on_snapshot(self, _docs: Any, changes: Any, _read_time: Any) -> None:
        for change in changes:
            if change.type.name == "ADDED":
                self._heard(change.document.id, change.document.to_dict() or {})

    def _heard(self, doc_id: str, fields: dict[str, Any]) -> bool:
        """Queue an event not known yet (from the listener or a listing); whether it was new."""
        with self._known_lock:
            if doc_id in self._known:
                return False
            self._known.add(doc_id)
        self._queue.put((doc_id, fields))
        return True

    def _run(self) -> None:
        waiting: list[tuple[float, int, _Delivery]] = []  # retries: (due, order, delivery)
        order = itertools.count()
        listed_at = time.monotonic()
        while True:
            self._keep_listening()
            now = time.monotonic()
            if now - listed_at >= LIST_EVERY_S:
                self._list()
                listed_at = now = time.monotonic()
            delivery: _Delivery | None
            if waiting and waiting[0][0] <= now:
                delivery = heapq.heappop(waiting)[2]
            else:
                wait = min(waiting[0][0] - now, LISTENER_CHECK_S) if waiting else LISTENER_CHECK_S
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    continue  # a retry is due, or the listener's check
                if item is None:
                    return
                delivery = self._new(*item)
                if delivery is None:
                    self._queue.task_done()
                    continue
            due = self._try(delivery)
            if due is None:
                self._queue.task_done()
            else:
                heapq.heappush(waiting, (due, next(order), delivery))

    def _new(self, doc_id: str, fields: dict[str, Any]) -> _Delivery | None:
        """The delivery of a new document; None when it is dropped on purpose (`drop`)."""
        if self._drop(doc_id, fields):
            self.dropped += 1
            return None
        path = f"{self._collection}/{doc_id}"
        headers, body = written_event(self._project, path, fields)
        return _Delivery(headers["ce-subject"], headers, body, time.monotonic())

    def drain(self) -> None:
        """Wait until every event seen so far has been delivered (or given up on)."""
        self._queue.join()

    def _try(self, d: _Delivery) -> float | None:
        """POST the event once. None when it is settled (delivered, or given up on); else when
        to try it again."""
        d.tries += 1
        req = urllib.request.Request(self._url, data=d.body, headers=d.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                self.delivered += 200 <= resp.status < 300
                return None
        except (urllib.error.URLError, OSError) as e:
            now = time.monotonic()
            delay = min(self._max_backoff_s, self._backoff_s * 2.0 ** (d.tries - 1))
            if now + delay - d.first > self._give_up_s:
                log.error("eventarc stand-in: giving up on %s after %d tries", d.subject, d.tries)
                self.given_up += 1
                return None
            log.warning(
                "eventarc stand-in: delivery %d of %s failed (%s); again in %.1f s",
                d.tries, d.subject, e, delay,
            )  # fmt: skip
            self.retried += 1
            return now + delay

    def stop(self) -> None:
        """Stop listening and delivering (retries still waiting are abandoned)."""
        with self._listening:
            self._stopping = True
            if self._watch is not None:
                self._watch.unsubscribe()
        self._queue.put(None)
        self._thread.join(timeout=10)


def path_router(dispatch_rules: Iterable[str]) -> Callable[[str], str]:
    """path -> the function its request goes to (`dispatch` or `submit`), matching paths only,
    whatever the method, as the load balancer's URL map does."""
    adapter = Map([Rule(rule, endpoint="dispatch") for rule in dispatch_rules]).bind("")

    def route(path: str) -> str:
        try:
            endpoint, _ = adapter.match(path, method="GET")
        except HTTPException:  # no path of dispatch's (a 405 cannot happen: no methods given)
            return "submit"
        return str(endpoint)

    return route


def gateway(users: WsgiApp, pilots: WsgiApp, dispatch_rules: Iterable[str]) -> WsgiApp:
    """One WSGI app in front of the `submit` and `dispatch` functions."""
    route = path_router(dispatch_rules)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        pick = pilots if route(environ.get("PATH_INFO", "")) == "dispatch" else users
        return pick(environ, start_response)

    return app
