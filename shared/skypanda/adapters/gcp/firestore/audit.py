"""AuditLog on Firestore: the `audit` collection, one document per entry, its id the entry's
time-sorted id; listed newest first by id (indexes: infra/firestore.indexes.json). Each
document carries `expire_at` (a timestamp) for a Firestore TTL policy; `prune_audit` deletes
in bounded batches where none is set."""

from __future__ import annotations

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import FirestoreBase, eq, fields, where
from skypanda.adapters.gcp.firestore.codec import MAX_WRITES
from skypanda.domain.audit import AuditEntry, check_cursor, id_floor


class AuditPart(FirestoreBase):
    @property
    def _audit(self) -> firestore.CollectionReference:
        return self._db.collection(self.collection("audit"))

    def record_audit(self, entry: AuditEntry) -> None:
        with self._backend("record_audit"):
            self._audit.document(entry.id).set(codec.audit_doc(entry))

    def list_audit(
        self,
        *,
        target_id: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        before: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        query = where(
            self._audit,
            None if target_id is None else eq("target_id", target_id),
            None if actor is None else eq("actor", actor),
            None if since is None else FieldFilter("id", ">=", id_floor(since)),
            None if before is None else FieldFilter("id", "<", check_cursor(before)),
        )
        query = query.order_by("id", direction=firestore.Query.DESCENDING).limit(limit)
        found = self._stream("list_audit", query)
        return [codec.audit_from(fields(s)) for s in found]

    def prune_audit(self, older_than: float, limit: int = 1000) -> int:
        query = self._audit.where(filter=FieldFilter("id", "<", id_floor(older_than)))
        old = self._stream("prune_audit", query.order_by("id").limit(limit))
        for start in range(0, len(old), MAX_WRITES):
            with self._backend("prune_audit"):
                batch = self._db.batch()
                for snap in old[start : start + MAX_WRITES]:
                    batch.delete(snap.reference)
                batch.commit()
        return len(old)
