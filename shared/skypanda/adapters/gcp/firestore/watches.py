"""WatchStore on Firestore: `watches/{name}` (the rule as JSON, its bucket, its open batch's
sequence number), `watch_objects/{key}` (one per (rule, object): created only if absent) and
`watch_batches/{rule uid}-{seq}`.

Adding an object is one transaction: it reads the rule (its open batch), the object and the
batch, then creates the object and counts it in the batch, closing the batch when full. A batch
document is written once per object it takes: a rule takes about one object a second per open
batch at a sustained rate (Firestore's per-document write rate); bursts are absorbed by
retries of contended transactions. The rule document is written once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.gcp.firestore.base import (
    BY_ID,
    FirestoreBase,
    Tx,
    eq,
    fields,
    is_in,
    where,
)
from skypanda.adapters.gcp.firestore.codec import MAX_WRITES
from skypanda.domain.errors import Conflict, NotFound
from skypanda.domain.watch import MAX_BATCH, Batch, BatchStatus, WatchRule, batch_id, full

OPEN, CLOSED = str(BatchStatus.OPEN), str(BatchStatus.CLOSED)
ENDED = [str(BatchStatus.SUBMITTED), str(BatchStatus.FAILED)]


def _rule(doc: dict[str, Any]) -> WatchRule:
    return WatchRule.model_validate_json(doc["rule"])


def _batch(bid: str, doc: dict[str, Any]) -> Batch:
    return Batch(
        id=bid, rule=doc["rule"], seq=doc["seq"], status=BatchStatus(doc["status"]),
        count=doc["count"], first_at=doc["first_at"], due_at=doc["due_at"],
        task_id=doc.get("task_id", ""), reason=doc.get("reason", ""),
    )  # fmt: skip


def new_batch_doc(rule: WatchRule, seq: int, now: float) -> dict[str, Any]:
    """A rule's batch `seq`, opened now, empty."""
    return {
        "rule": rule.name, "rule_uid": rule.uid, "seq": seq, "status": OPEN, "count": 0,
        "first_at": now, "due_at": now + rule.every_s, "task_id": "", "reason": "",
    }  # fmt: skip


class WatchPart(FirestoreBase):
    @property
    def _watches(self) -> firestore.CollectionReference:
        return self._db.collection(self.collection("watches"))

    @property
    def _watch_objects(self) -> firestore.CollectionReference:
        return self._db.collection(self.collection("watch_objects"))

    @property
    def _watch_batches(self) -> firestore.CollectionReference:
        return self._db.collection(self.collection("watch_batches"))

    def add_watch(self, rule: WatchRule) -> None:
        doc = {
            "uid": rule.uid, "owner": rule.owner, "bucket": rule.where.bucket, "open_seq": 0,
            "rule": rule.model_dump_json(by_alias=True),
        }  # fmt: skip
        with self._backend("add_watch"):
            try:
                self._watches.document(rule.name).create(doc)
            except (gexc.AlreadyExists, gexc.Conflict) as e:
                raise Conflict(f"a watch named {rule.name!r} exists", watch=rule.name) from e

    def get_watch(self, name: str) -> WatchRule:
        doc = self._read("get_watch", self._watches.document(name))
        if doc is None:
            raise NotFound(f"no watch named {name!r}", watch=name)
        return _rule(doc)

    def list_watches(self, *, owner: str | None = None, limit: int = 100) -> list[WatchRule]:
        query = where(self._watches, None if owner is None else eq("owner", owner))
        snaps = self._stream("list_watches", query.order_by(BY_ID).limit(limit))
        return [_rule(fields(s)) for s in snaps]

    def remove_watch(self, name: str) -> bool:
        ref = self._watches.document(name)
        with self._backend("remove_watch"):
            existed = bool(ref.get().exists)
            ref.delete()
        return existed

    def watches_on(self, bucket: str, limit: int = 100) -> list[WatchRule]:
        snaps = self._stream("watches_on", self._watches.where(filter=eq("bucket", bucket)))
        return [r for r in (_rule(fields(s)) for s in snaps[:limit]) if r.enabled]

    def add_watched_object(
        self, rule: WatchRule, key: str, uri: str, now: float
    ) -> tuple[bool, Batch | None]:
        rule_ref = self._watches.document(rule.name)
        obj_ref = self._watch_objects.document(key)

        def add(tx: Tx) -> tuple[bool, Batch | None]:
            rule_snap = rule_ref.get(transaction=tx)
            if not rule_snap.exists or fields(rule_snap).get("uid") != rule.uid:
                return False, None  # removed (or removed and made again) meanwhile
            if obj_ref.get(transaction=tx).exists:
                return False, None
            seq = int(fields(rule_snap)["open_seq"])
            bid = batch_id(rule.uid, seq)
            batch_ref = self._watch_batches.document(bid)
            snap = batch_ref.get(transaction=tx)
            doc = fields(snap) if snap.exists else new_batch_doc(rule, seq, now)
            doc = {**doc, "count": int(doc["count"]) + 1}
            tx.create(obj_ref, {"batch": bid, "uri": uri, "seen_at": now})
            closed = full(doc["count"], rule)
            if closed:
                doc["status"] = CLOSED
                tx.update(rule_ref, {"open_seq": seq + 1})
            tx.set(batch_ref, doc)
            return True, _batch(bid, doc) if closed else None

        return self._transact("add_watched_object", add)

    def due_batches(self, now: float, limit: int) -> list[Batch]:
        closed = where(self._watch_batches, eq("status", CLOSED)).order_by("due_at").limit(limit)
        found = self._stream("due_batches", closed)
        if len(found) < limit:
            due = where(
                self._watch_batches, eq("status", OPEN), FieldFilter("due_at", "<=", now)
            ).order_by("due_at")
            found += self._stream("due_batches", due.limit(limit - len(found)))
        return [_batch(s.id, fields(s)) for s in found]

    def close_batch(self, batch_id: str, now: float) -> Batch | None:
        batch_ref = self._watch_batches.document(batch_id)

        def close(tx: Tx) -> Batch | None:
            snap = batch_ref.get(transaction=tx)
            if not snap.exists or fields(snap)["status"] != OPEN:
                return None
            doc = {**fields(snap), "status": CLOSED}
            rule_ref = self._watches.document(doc["rule"])
            rule_snap = rule_ref.get(transaction=tx)
            rule_doc = fields(rule_snap) if rule_snap.exists else {}
            if (rule_doc.get("open_seq"), rule_doc.get("uid")) == (doc["seq"], doc["rule_uid"]):
                tx.update(rule_ref, {"open_seq": doc["seq"] + 1})
            tx.update(batch_ref, {"status": CLOSED})
            return _batch(batch_id, doc)

        return self._transact("close_batch", close)

    def batch_inputs(self, batch_id: str) -> list[str]:
        query = self._watch_objects.where(filter=eq("batch", batch_id)).limit(2 * MAX_BATCH)
        return [fields(s)["uri"] for s in self._stream("batch_inputs", query)]

    def end_batch(self, batch_id: str, *, task_id: str = "", reason: str = "") -> bool:
        to = BatchStatus.SUBMITTED if task_id else BatchStatus.FAILED
        return self._cas(
            "end_batch",
            self._watch_batches.document(batch_id),
            lambda doc: doc.get("status") == CLOSED,
            {"status": str(to), "task_id": task_id, "reason": reason},
        )

    def prune_watch_records(self, older_than: float, limit: int = 1000) -> int:
        old = where(
            self._watch_batches, is_in("status", ENDED), FieldFilter("due_at", "<", older_than)
        ).order_by("due_at")
        pruned = 0
        for batch in self._stream("prune_watch_records", old.limit(limit)):
            objects = self._watch_objects.where(filter=eq("batch", batch.id))
            gone = self._stream("prune_watch_records", objects.limit(limit - pruned))
            done = len(gone) < limit - pruned  # every object of the batch is in `gone`
            refs = [s.reference for s in gone] + ([batch.reference] if done else [])
            for start in range(0, len(refs), MAX_WRITES):
                with self._backend("prune_watch_records"):
                    writes = self._db.batch()
                    for ref in refs[start : start + MAX_WRITES]:
                        writes.delete(ref)
                    writes.commit()
            pruned += len(refs)
            if not done:
                break
        return pruned

    def get_batches(self, rule_uid: str, limit: int = 100) -> Sequence[Batch]:
        query = where(self._watch_batches, eq("rule_uid", rule_uid))
        query = query.order_by("seq", direction=firestore.Query.DESCENDING).limit(limit)
        return [_batch(s.id, fields(s)) for s in self._stream("get_batches", query)]
