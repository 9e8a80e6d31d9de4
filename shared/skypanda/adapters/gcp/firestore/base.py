"""What every part of the Firestore store shares: the client and its collections, error
mapping and metering attribution, transactions, the one-document compare-and-set, outbox
writes, and the job versions remembered for commits without a read.

Every function given to `_transact` may run more than once (the client re-runs it when the
commit aborts on contention): it only reads and writes through the transaction and returns a
value; anything else (calling `on_events`, cleanup) happens after the commit.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath

from skypanda.adapters.gcp import metering
from skypanda.adapters.gcp.firestore import codec
from skypanda.adapters.gcp.firestore.plans import SEQS
from skypanda.domain.errors import BackendUnavailable, InvalidInput
from skypanda.domain.events import Event
from skypanda.domain.scaling import Work
from skypanda.domain.states import JobStatus

T = TypeVar("T")
Tx = Any  # google.cloud.firestore.Transaction
Snapshot = codec.Snapshot

CAS_ROUNDS = 20  # compare-and-set commits per call at most, while the document keeps changing
VERSIONS = 20_000  # job versions remembered for job changes without a read (a few MB)
BULK_PAGE = 2000  # job indexes one `apply_bulk` call covers, by default (one task.bulk event)
ACTIVATED = str(JobStatus.ACTIVATED)
BY_ID = FieldPath.document_id()
eq, is_in, fields = codec.eq, codec.is_in, codec.fields


def where(query: Any, *filters: FieldFilter | None) -> Any:
    """`query` narrowed by each of `filters` (None: no filter)."""
    for f in filters:
        query = query if f is None else query.where(filter=f)
    return query


def count(query: Any) -> int:
    """Run a count() aggregation over `query` (billed per 1000 index entries counted)."""
    result = query.count().get()
    return int(result[0][0].value)


def count_sum(query: Any, field: str) -> tuple[int, int]:
    """One aggregation over `query`: how many documents, and the sum of their `field` (over
    the index entries: the query's index must hold `field`). Billed like a count alone, one
    read per 1000 entries (the meter tells the sum from the count by its alias)."""
    result = query.count(alias="n").sum(field, alias="total").get()
    values = {a.alias: a.value for a in result[0]}
    return int(values["n"]), round(values["total"])


def count_cores(query: Any) -> Work:
    """One aggregation over the jobs of `query`: how many, and the cores they ask for."""
    jobs, cores = count_sum(query, "cores")
    return Work(jobs=jobs, cores=cores)


class FirestoreBase:
    """The store's shared state and plumbing; each aggregate's part (tasks, workflows, jobs,
    claims, fleet, outbox) builds on it. `on_events` is called after a commit that wrote
    outbox events. The store owns `client` from here on: `close()` closes it.

    `bulk_page`: how many job indexes one `apply_bulk` call covers (one `task.bulk` event:
    a bounded invocation), or None to apply a bulk to a whole task at once.
    """

    def __init__(
        self,
        client: firestore.Client,
        *,
        clock: Callable[[], float],
        prefix: str = "",
        bulk_page: int | None = BULK_PAGE,
    ) -> None:
        if bulk_page is not None and bulk_page < 1:
            raise InvalidInput(f"bulk_page must be at least 1, not {bulk_page}")
        self._db = client
        self._clock = clock
        self.prefix = prefix
        self._bulk_page = bulk_page
        self._tasks = client.collection(f"{prefix}tasks")
        self._jobs = client.collection(f"{prefix}jobs")
        self._attempts = client.collection(f"{prefix}attempts")
        self._queues = client.collection(f"{prefix}queues")
        self._pilots = client.collection(f"{prefix}pilots")
        self._events = client.collection(f"{prefix}events")
        self._workflows = client.collection(f"{prefix}workflows")
        self._edges = client.collection(f"{prefix}edges")
        self._scaler = client.collection(f"{prefix}scaler")
        self._pool = ThreadPoolExecutor(max_workers=len(JobStatus), thread_name_prefix="fs-query")
        self.on_events: Callable[[], None] = lambda: None
        self.claim_stats: Counter[str] = Counter()  # claim commits tried, and lost to a race
        self._stats_lock = threading.Lock()
        self._claim_turns: dict[str, threading.Lock] = {}  # queue -> its claims' turn here
        # job id -> (update time, status, attempt) of the job as this store last read or
        # wrote it: what `apply_job_changes` commits against without reading the job again.
        self._versions: OrderedDict[str, tuple[Any, str, int]] = OrderedDict()
        self._versions_lock = threading.Lock()

    @property
    def bulk_page(self) -> int | None:
        return self._bulk_page

    def collection(self, name: str) -> str:
        """The full name of one of the store's collections (`events` -> `{prefix}events`)."""
        return f"{self.prefix}{name}"

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._db.close()  # type: ignore[no-untyped-call]

    # -- calls to Firestore ------------------------------------------------------------------------
    @contextmanager
    def _backend(self, what: str) -> Iterator[None]:
        """Map the client library's errors to BackendUnavailable (retryable); attribute the
        operations inside to `what` for metering."""
        try:
            with metering.operation(what):
                yield
        except gexc.GoogleAPIError as e:
            raise BackendUnavailable(f"Firestore {what} failed: {e}") from e

    def _transact(self, what: str, fn: Callable[[Tx], T]) -> T:
        """Run `fn(transaction)` in a transaction, committing after it returns.

        `fn` may be run several times (see the module docstring). A fresh `_Transactional` is
        made per call: it keeps per-call retry state, so one instance cannot serve two threads.

        Raises:
            BackendUnavailable: Firestore failed, or the commit kept aborting on contention.
        """
        with self._backend(what):
            try:
                run = firestore.transactional(fn)
                return run(self._db.transaction())  # type: ignore[no-any-return]
            except gexc.Aborted as e:
                raise BackendUnavailable(f"Firestore {what}: contention, try again") from e
            except ValueError as e:  # the client's "Failed to commit transaction in N attempts"
                if isinstance(e.__cause__, gexc.Aborted):
                    raise BackendUnavailable(f"Firestore {what}: contention, try again") from e
                raise

    def _read(self, what: str, ref: Any) -> codec.Doc | None:
        with self._backend(what):
            snap = ref.get()
        return fields(snap) if snap.exists else None

    def _stream(self, what: str, query: Any) -> list[Snapshot]:
        with self._backend(what):
            return list(query.stream())

    def _get_all(self, what: str, refs: Sequence[Any], tx: Tx | None = None) -> list[Snapshot]:
        with self._backend(what):
            return [s for s in self._db.get_all(list(refs), transaction=tx) if s.exists]

    def _of_task(self, task_id: str, *filters: FieldFilter | None) -> Any:
        """The query of a task's jobs that pass `filters`."""
        return where(self._jobs, eq("task_id", task_id), *filters)

    def _waits_for_parent(self, what: str, job_id: str) -> bool:
        """Whether an edge into the job is pending (a parent not ended): a limit-1 query that
        fetches no fields. Safe on a pool thread (its own metering attribution)."""
        query = where(self._edges, eq("child", job_id), eq("parent_status", None))
        with self._backend(what):
            return bool(list(query.select([]).limit(1).stream()))

    # -- compare-and-set of one document -----------------------------------------------------------
    def _cas(
        self,
        what: str,
        ref: Any,
        ok: Callable[[codec.Doc], bool],
        change: codec.Doc,
        events: Sequence[Event] = (),
    ) -> bool:
        """Compare-and-set one document: if it exists and `ok(its fields)`, apply `change` and
        add `events`, in one commit. Whether it won.

        Optimistic, like claims: read without a transaction, then commit with the precondition
        "not updated since read"; if another writer got in between, read again and re-check.
        Transactions would lock the document on read, and every heartbeat, report or sweep
        touching it would queue behind the lock (on the emulator, about 2 s per collision).
        """
        for _ in range(CAS_ROUNDS):
            with self._backend(what):
                snap = ref.get()
            if not snap.exists or not ok(fields(snap)):
                return False
            fresh = self._absent_events(what, events)
            batch = self._db.batch()
            batch.update(
                ref, change, option=self._db.write_option(last_update_time=snap.update_time)
            )
            now = self._clock()
            for e in fresh:
                batch.create(self._events.document(e.id), codec.event_doc(e, SEQS.next(), now))
            with self._backend(what):
                try:
                    batch.commit()
                except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict):
                    continue  # changed since read, or an event landed meanwhile: look again
            if events:
                self.on_events()
            return True
        raise BackendUnavailable(f"Firestore {what}: document kept changing, try again")

    # -- outbox writes -----------------------------------------------------------------------------
    def _absent_events(self, what: str, events: Sequence[Event]) -> list[Event]:
        """The events (deduplicated) whose id is not in the outbox yet (a plain read)."""
        unique = list({e.id: e for e in events}.values())
        if not unique:
            return []
        stored = {s.id for s in self._get_all(what, [self._events.document(e.id) for e in unique])}
        return [e for e in unique if e.id not in stored]

    def _unstored(self, tx: Tx, events: Sequence[Event]) -> list[Event]:
        """Transaction read: the events (deduplicated) whose id is not in the outbox yet."""
        unique = list({e.id: e for e in events}.values())
        if not unique:
            return []
        refs = [self._events.document(e.id) for e in unique]
        stored = {s.id for s in self._db.get_all(refs, transaction=tx) if s.exists}
        return [e for e in unique if e.id not in stored]

    def _put_events(self, tx: Tx, events: Sequence[Event]) -> None:
        """Transaction write of events `_unstored` returned (after every read of `tx`)."""
        now = self._clock()
        for e in events:
            tx.create(self._events.document(e.id), codec.event_doc(e, SEQS.next(), now))

    # -- job versions remembered -------------------------------------------------------------------
    def _remember(self, job_id: str, update_time: Any, status: str, attempt: int) -> None:
        """Remember a job's version (unless a later one is remembered), the oldest forgotten.

        Only versions this store read, or wrote itself from a job it read (a claim), are
        remembered: `apply_job_changes` trusts the caller's `before` to describe the version
        (kill flag included)."""
        with self._versions_lock:
            known = self._versions.get(job_id)
            if known is not None and known[0] > update_time:
                return
            self._versions[job_id] = (update_time, status, attempt)
            self._versions.move_to_end(job_id)
            while len(self._versions) > VERSIONS:
                self._versions.popitem(last=False)

    def _remember_read(self, snaps: Iterable[Snapshot]) -> None:
        for snap in snaps:
            self._remember(snap.id, snap.update_time, snap.get("status"), snap.get("attempt"))

    def _forget(self, job_ids: Iterable[str]) -> None:
        with self._versions_lock:
            for job_id in job_ids:
                self._versions.pop(job_id, None)

    def _remembered(self, job_ids: Iterable[str]) -> dict[str, tuple[Any, str, int]] | None:
        """The remembered versions of all of `job_ids`, or None if one is not remembered."""
        with self._versions_lock:
            found = {i: self._versions.get(i) for i in job_ids}
        known = {i: v for i, v in found.items() if v is not None}
        return known if len(known) == len(found) else None
