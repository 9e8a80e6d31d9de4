"""Where object.finalized events come from.

- On Google Cloud: Cloud Storage's Pub/Sub notifications (infra/terraform/watch.tf), payload
  format JSON_API_V1: attributes `eventType`, `bucketId`, `objectId`, `objectGeneration`, and
  the object resource as JSON in the data. `decode_notification` makes one an event;
  other event types (deletes, metadata updates, archives) are acknowledged and ignored.
- On the embedded default and the emulators: `Poller`, a thread that lists each watched
  folder (or fake-gcs bucket) and writes an event per object it has not announced yet into
  the outbox, so it is delivered like any event. It may announce an object again (after a
  restart, or when its memory of announced objects is full): the store makes that harmless
  (exactly once per object is `WatchStore.add_watched_object`'s job). Bounded: one listing
  page per source per poll.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from cachetools import LRUCache

from skypanda.domain.errors import InvalidInput
from skypanda.domain.events import Event
from skypanda.domain.watch import SourceKind, WatchRule, object_finalized
from skypanda.ports import Store

log = logging.getLogger(__name__)

FINALIZE = "OBJECT_FINALIZE"
PAGE = 1000
"""Objects listed per source per poll at most."""
MAX_NAME = 1024
MAX_RULES = 100
SEEN = 200_000
"""Objects the poller remembers having announced (then it may announce one again)."""

Lister = Callable[[str, str, str, int], Iterator[tuple[str, str, int]]]
"""(bucket, prefix, after, page) -> (name, generation, size) of the objects there whose name
sorts after `after`, in name order, at most `page`."""
MAX_SCAN = 100_000
"""Files of a folder looked at per poll at most."""
SETTLE_S = 1.0
"""A file modified less than this long ago is left for a later poll: one being written is
announced once it is whole, not once half-written and again when done (its modification time,
its generation, changed)."""


def is_notification(attributes: Mapping[str, str]) -> bool:
    """Whether a Pub/Sub message is a Cloud Storage notification (not one of our events)."""
    return "type" not in attributes and "eventType" in attributes and "bucketId" in attributes


def decode_notification(attributes: Mapping[str, str], data: bytes) -> Event | None:
    """A Cloud Storage notification as an object.finalized event; None for another event type
    (acknowledged and ignored).

    Raises:
        InvalidInput: a finalize notification without its bucket or object.
    """
    if attributes.get("eventType") != FINALIZE:
        return None
    bucket, name = attributes.get("bucketId", ""), attributes.get("objectId", "")
    if not bucket or not name:
        raise InvalidInput("a Cloud Storage notification without bucketId or objectId")
    size = 0
    try:
        resource = json.loads(data or b"{}")
        size = int(resource.get("size") or 0) if isinstance(resource, dict) else 0
    except (ValueError, TypeError):
        pass  # the attributes name the object; the size is only informative
    return object_finalized(bucket, name, attributes.get("objectGeneration", ""), size)


def list_folder(
    folder: str, prefix: str, after: str, page: int, *, settle_s: float = SETTLE_S
) -> Iterator[tuple[str, str, int]]:
    """Files under `folder` (recursively, names relative to it; hidden files, files being
    written as `*.part`/`*.tmp`, and files modified in the last `settle_s` skipped: a later
    poll lists them). The generation is the modification time in ns: a file written again is
    a new object."""
    settled_before = time.time_ns() - int(settle_s * 1e9)
    names: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if f.startswith(".") or f.endswith((".part", ".tmp")):
                continue
            name = os.path.relpath(os.path.join(root, f), folder)
            if name > after and name.startswith(prefix) and len(name) <= MAX_NAME:
                names.append(name)
        if len(names) >= MAX_SCAN:
            break
    for name in sorted(names)[:page]:
        try:
            st = os.stat(os.path.join(folder, name))
        except OSError:
            continue  # removed meanwhile
        if st.st_mtime_ns <= settled_before:
            yield name, str(st.st_mtime_ns), st.st_size


def gcs_lister(client: Any) -> Lister:
    """A Lister over a `google.cloud.storage.Client` (fake-gcs-server on the emulators)."""

    def list_bucket(
        bucket: str, prefix: str, after: str, page: int
    ) -> Iterator[tuple[str, str, int]]:
        blobs = client.list_blobs(
            bucket, prefix=prefix or None, start_offset=after or None, max_results=page
        )
        for blob in blobs:
            if blob.name == after:
                continue
            if not blob.name.endswith("/") and len(blob.name) <= MAX_NAME:
                yield blob.name, str(blob.generation or ""), int(blob.size or 0)

    return list_bucket


class Poller:
    """Lists watched sources every `interval_s` and announces new objects through `store`'s
    outbox (on the emulators a store on a client of its own: Cloud Storage's notifications are
    not the functions' Firestore bill).
    `listers` by source kind: a kind with no lister is not polled (Cloud Storage on Google
    Cloud: notifications announce its objects)."""

    def __init__(
        self, store: Store, listers: Mapping[SourceKind, Lister], interval_s: float = 1.0
    ) -> None:
        self.store = store
        self.listers = dict(listers)
        self.interval_s = interval_s
        self._seen: LRUCache[str, bool] = LRUCache(SEEN)
        self._after: dict[tuple[str, str], str] = {}  # source -> last name listed (a page)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="skypanda-watch", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # keep polling: one bad listing must not stop the others
                log.exception("watch poll failed")

    def poll(self) -> int:
        """One pass over every enabled rule's source; returns how many objects it announced."""
        announced = 0
        polled: set[tuple[str, str]] = set()
        for rule in self.store.list_watches(limit=MAX_RULES):
            where = rule.where
            lister = self.listers.get(where.kind)
            if not rule.enabled or lister is None or (where.bucket, where.prefix) in polled:
                continue
            polled.add((where.bucket, where.prefix))
            announced += self._poll_source(rule, lister)
        return announced

    def _poll_source(self, rule: WatchRule, lister: Lister) -> int:
        where = rule.where
        source = (where.bucket, where.prefix)
        fresh: list[Event] = []
        last = ""
        for name, generation, size in lister(
            where.bucket, where.prefix, self._after.get(source, ""), PAGE
        ):
            last = name
            event = object_finalized(where.bucket, name, generation, size)
            if event.id not in self._seen:
                fresh.append(event)
        self._after[source] = last  # the next page; "" after the last one: from the start again
        if fresh:
            self.store.add_events(fresh)
            for e in fresh:
                self._seen[e.id] = True
        return len(fresh)
