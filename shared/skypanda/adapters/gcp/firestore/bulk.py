"""`apply_bulk` on Firestore: a task-wide job change (`domain.bulk.JobBulk`) over a range of
job indexes, each job written compare-and-set on its document version.

Nothing is decided here: `JobBulk.selects` says which jobs change and `JobBulk.changes` what
they get; this module only reads the jobs, asks, and writes the answer under a precondition.

- **Read.** The task's jobs in the range whose status the bulk selects from: `task_id ==`,
  `status in [...]`, `index >= first`, `index < first + count`, ordered by `index`, in chunks
  of 500 (the next chunk starts after the last index read). The status filter only narrows
  the read (a job in another state is never selected): a kill of a task whose jobs mostly
  ended reads only its queued and live ones. Index: `task_id, status, index`.
- **Decide.** Each job is decoded and kept if `bulk.selects(job)`; for a bulk of unblocked
  jobs only (resume), each kept job that has parents is then checked for a pending edge (a
  limit-1 query, on the store's pool) and asked again with `parent_pending`.
- **Write.** One BatchWrite per chunk (at most 500 writes), each job's write carrying the
  precondition "not updated since read" (`last_update_time`): BatchWrite applies each on its
  own, so a job another writer changed meanwhile (a claim, a report, another page) fails
  alone. Those are read again and decided again: written if still selected, else skipped.
  A job that keeps changing through `CAS_ROUNDS` rounds makes the call raise
  BackendUnavailable, and the page's event is redelivered.

Applying a bulk again changes nothing (a changed job is no longer selected), so a page can be
redelivered after a crash at any point.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.bulk_batch import BulkWriteBatch

from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.base import CAS_ROUNDS, FirestoreBase, Snapshot, fields, is_in
from skypanda.domain.bulk import JobBulk
from skypanda.domain.errors import BackendUnavailable
from skypanda.domain.models import Job

WHAT = "apply_bulk"


def apply_bulk(
    store: FirestoreBase,
    bulk: JobBulk,
    now: float,
    *,
    first_index: int = 0,
    count: int | None = None,
) -> int:
    """Apply `bulk` to the task's jobs with an index in [first_index, first_index + count)
    (count None: every job of the task). Returns how many jobs changed.

    Raises:
        BackendUnavailable: Firestore failed, or jobs kept changing under the writes.
    """
    if (count is not None and count <= 0) or not bulk.select:
        return 0
    end = None if count is None else first_index + count
    changed = 0
    low = first_index
    while True:
        query = store._of_task(
            bulk.task_id,
            is_in("status", bulk.select),
            FieldFilter("index", ">=", low),
            None if end is None else FieldFilter("index", "<", end),
        )
        snaps = store._stream(WHAT, query.order_by("index").limit(codec.MAX_WRITES))
        changed += _apply_chunk(store, bulk, now, snaps)
        if len(snaps) < codec.MAX_WRITES:
            return changed
        low = int(snaps[-1].get("index")) + 1


def _apply_chunk(store: FirestoreBase, bulk: JobBulk, now: float, snaps: list[Snapshot]) -> int:
    """Write the bulk's changes to the jobs of `snaps` it selects, each compare-and-set on the
    version read; re-read and re-decide those another writer changed meanwhile."""
    changed = 0
    for _ in range(CAS_ROUNDS):
        todo = _selected(store, bulk, snaps)
        if not todo:
            return changed
        batch = BulkWriteBatch(store._db)
        for snap, job in todo:
            unchanged = store._db.write_option(last_update_time=snap.update_time)
            change = codec.bulk_fields(bulk.changes(job, now))
            batch.update(snap.reference, change, option=unchanged)
        with store._backend(WHAT):
            response = batch.commit()
        # Versions remembered for reports without a read are stale now (and a report's
        # `before`, read earlier, would not carry the new kill flag): forget them.
        store._forget(job.id for _, job in todo)
        lost = []
        for (snap, _), status in zip(todo, response.status, strict=True):
            if status.code == 0:
                changed += 1
            else:
                lost.append(snap.reference)
        if not lost:
            return changed
        snaps = store._get_all(WHAT, lost)  # changed since read: decide again on what is there
    raise BackendUnavailable(f"Firestore {WHAT}: jobs of task {bulk.task_id} kept changing")


def _selected(
    store: FirestoreBase, bulk: JobBulk, snaps: Sequence[Snapshot]
) -> list[tuple[Snapshot, Job]]:
    """The jobs of `snaps` the bulk selects (with the snapshot each was read from)."""
    kept = [(s, job) for s in snaps if bulk.selects(job := codec.job_from(s.id, fields(s)))]
    if not bulk.unblocked_only:
        return kept
    with_parents = [job.id for _, job in kept if job.parents]
    waits = store._pool.map(lambda job_id: store._waits_for_parent(WHAT, job_id), with_parents)
    pending = {job_id for job_id, w in zip(with_parents, waits, strict=True) if w}
    return [(s, job) for s, job in kept if bulk.selects(job, parent_pending=job.id in pending)]
