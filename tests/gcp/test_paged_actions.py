"""Task actions on a big task on Firestore run in pages: one `task.bulk` event per
`bulk_page` job indexes, each page emitting the next through the outbox, so no invocation
grows with the task, and a crash part way is resumed by redelivery.

The real handlers (`task_actions.kill`, `bulk`), the real pipeline and a delivery loop driven
here stand in for Eventarc; the store is the Firestore store on the emulator (its own
collection prefix per test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TypeVar
from uuid import uuid4

import pytest
from google.cloud import firestore

from skypanda.adapters.gcp.firestore import FirestoreStore
from skypanda.domain.bulk import JobBulk
from skypanda.domain.events import Event, EventType
from skypanda.domain.jobflow import new_job
from skypanda.domain.models import Job, Queue, Resources, Task, TaskSpec
from skypanda.domain.splitter import split
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.handlers import task_actions
from skypanda.handlers.pipeline import Outcome, Pipeline
from skypanda.handlers.services import Services
from skypanda.runtime.emulators import PROJECT, Emulator
from tests.support import FakeClock

N_JOBS = 3000
PAGE = 500
PAGES = N_JOBS // PAGE  # 6
OWNER = "alice"
ANY = Resources(memory_mb=100_000, cores=64)
S = TypeVar("S", bound=FirestoreStore)


class RecordingStore(FirestoreStore):
    """The Firestore store, recording each `apply_bulk` call: (first index, count, changed)."""

    calls: list[tuple[int, int | None, int]]

    def apply_bulk(
        self, bulk: JobBulk, now: float, *, first_index: int = 0, count: int | None = None
    ) -> int:
        changed = super().apply_bulk(bulk, now, first_index=first_index, count=count)
        self.calls = [*getattr(self, "calls", []), (first_index, count, changed)]
        return changed


class CrashMidPage(FirestoreStore):
    """The Firestore store, but the process dies once half way through the page that starts
    at `crash_at`: half of that page's first bulk is written, then the handler raises."""

    crash_at: int | None = 2 * PAGE

    def apply_bulk(
        self, bulk: JobBulk, now: float, *, first_index: int = 0, count: int | None = None
    ) -> int:
        if first_index == self.crash_at and count is not None:
            self.crash_at = None
            super().apply_bulk(bulk, now, first_index=first_index, count=count // 2)
            raise RuntimeError("process killed half way through a page")
        return super().apply_bulk(bulk, now, first_index=first_index, count=count)


class NoBus:
    def __init__(self) -> None:
        self.published: list[Event] = []

    def publish(self, events: Sequence[Event]) -> None:
        self.published.extend(events)


class NoBlobs:
    def append(self, key: str, data: bytes) -> None:
        pass

    def read(self, key: str) -> bytes:
        return b""

    def uri(self, key: str) -> str:
        return f"mem://{key}"


@pytest.fixture
def prefix(firestore_emulator: Emulator) -> str:
    return f"t{uuid4().hex[:12]}-"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def open_store(kind: type[S], prefix: str, clock: FakeClock) -> S:
    client = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT))
    return kind(client, clock=clock.now, prefix=prefix, bulk_page=PAGE)


@pytest.fixture
def stores() -> Iterator[list[FirestoreStore]]:
    """Stores opened by a test, closed after it."""
    opened: list[FirestoreStore] = []
    yield opened
    for store in opened:
        store.close()


def services(store: FirestoreStore, clock: FakeClock) -> Services:
    return Services(store=store, bus=NoBus(), blobs=NoBlobs(), clock=clock)


def add_big_task(store: FirestoreStore, clock: FakeClock) -> Task:
    """A task of N_JOBS activated jobs on queue q, split (ready)."""
    now = clock.now()
    spec = TaskSpec(name="big", command=["run", "{index}"], n_jobs=N_JOBS, queue="q")
    task = Task(id="big", spec=spec, owner=OWNER, n_jobs=N_JOBS, created_at=now, updated_at=now)
    store.put_queue(Queue(name="q"))
    store.add_task(task, [])
    jobs = (new_job(task, job_spec, now) for job_spec in split(spec))
    assert store.add_jobs(task.id, jobs, expect=TaskStatus.REGISTERED, to=TaskStatus.READY)
    return task


def deliver(
    store: FirestoreStore, pipeline: Pipeline, clock: FakeClock, *, stop_after: int | None = None
) -> list[Event]:
    """Deliver the outbox's pending events (the next page's events too, as they appear) until
    none is left, or until `stop_after` pages were delivered (the process stops there). Returns
    the events delivered, in order."""
    delivered: list[Event] = []
    for _ in range(100):
        pending = store.pending_events(20)
        if not pending:
            return delivered
        for stored in pending:
            result = pipeline.deliver(stored.event, tries=stored.tries, transport="test")
            if result.outcome is Outcome.DELIVERED:
                store.mark_delivered([stored.seq], clock.now())
                delivered.append(stored.event)
            else:
                dead = result.outcome is Outcome.DEAD
                store.mark_failed(stored.seq, result.reason, dead=dead)
            if stop_after is not None and len(pages(delivered)) >= stop_after:
                return delivered
    raise AssertionError("the outbox never drained")


def pages(events: Sequence[Event]) -> list[int]:
    return [int(e.data["page"]) for e in events if e.type is EventType.TASK_BULK]


def assert_killed(store: FirestoreStore, task_id: str, live: Sequence[Job]) -> None:
    """Nothing of the task can be dispatched any more; its live jobs are flagged for their
    pilots to kill; nothing is left in the outbox."""
    counts = store.job_counts(task_id)
    assert counts == {JobStatus.CANCELLED: N_JOBS - len(live), JobStatus.SENT: len(live)}
    assert store.claim_jobs("q", "late", 10, ANY, 0.0) == []
    assert all(store.get_job(j.id).kill_requested for j in live)
    assert sorted(store.jobs_to_kill("p1")) == sorted(j.id for j in live)
    cancelled = store.list_jobs(task_id, status=JobStatus.CANCELLED, limit=3, offset=N_JOBS - 10)
    assert {(j.error_diag, j.ended_at is not None) for j in cancelled} == {("too big", True)}
    assert store.get_task(task_id, counts=False).status is TaskStatus.ABORTED
    assert store.pending_events(10) == []
    assert store.dead_events() == []


def test_a_kill_of_a_big_task_runs_in_one_event_per_page(
    prefix: str, clock: FakeClock, stores: list[FirestoreStore]
) -> None:
    # Given a task of 3000 jobs, five of them already sent to a pilot
    store = open_store(RecordingStore, prefix, clock)
    stores.append(store)
    task = add_big_task(store, clock)
    live = store.claim_jobs("q", "p1", 5, ANY, clock.now())
    svc = services(store, clock)

    # When its owner kills it, and the outbox is delivered
    killed = task_actions.kill(svc, task.id, OWNER, "too big")
    delivered = deliver(store, Pipeline(svc), clock)

    # Then the task is aborted at once, and its jobs were changed one page per event: six
    # task.bulk events, one per 500 job indexes, each applying the kill's two bulks (cancel
    # the queued jobs, flag the live ones) to its range only
    assert killed.status is TaskStatus.ABORTED
    assert pages(delivered) == list(range(PAGES))
    assert len({e.id for e in delivered}) == len(delivered)
    # (the live jobs are the first five in dispatch order: indexes 0 to 4, in page 0)
    assert store.calls == [
        (p * PAGE, PAGE, changed)
        for p in range(PAGES)
        for changed in ((PAGE - 5, 5) if p == 0 else (PAGE, 0))
    ]
    assert_killed(store, task.id, live)


def test_a_page_that_crashed_half_way_is_redelivered_and_the_kill_completes(
    prefix: str, clock: FakeClock, stores: list[FirestoreStore]
) -> None:
    # Given a task of 3000 jobs, five of them sent to a pilot, killed; and the process that
    # delivers the third page dies half way through it
    store = open_store(CrashMidPage, prefix, clock)
    stores.append(store)
    task = add_big_task(store, clock)
    live = store.claim_jobs("q", "p1", 5, ANY, clock.now())
    svc = services(store, clock)
    task_actions.kill(svc, task.id, OWNER, "too big")
    pipeline = Pipeline(svc)

    # When the outbox is delivered
    delivered = deliver(store, pipeline, clock)

    # Then the crashed page failed once, was delivered again, and the pages after it followed:
    # each page delivered once, and the kill is complete
    assert store.crash_at is None
    assert pipeline.counts[f"{EventType.TASK_BULK}:{Outcome.RETRY}"] == 1
    assert pages(delivered) == list(range(PAGES))
    assert_killed(store, task.id, live)


def test_a_kill_stopped_between_pages_is_resumed_by_a_new_process(
    prefix: str, clock: FakeClock, stores: list[FirestoreStore]
) -> None:
    # Given a killed task of 3000 jobs whose first two pages were delivered when the process
    # stopped
    first = open_store(FirestoreStore, prefix, clock)
    stores.append(first)
    task = add_big_task(first, clock)
    live = first.claim_jobs("q", "p1", 5, ANY, clock.now())
    svc = services(first, clock)
    task_actions.kill(svc, task.id, OWNER, "too big")
    before = deliver(first, Pipeline(svc), clock, stop_after=2)
    assert pages(before) == [0, 1]
    first.close()
    stores.remove(first)

    # ... so its later jobs are still queued: a pilot claims one meanwhile
    store = open_store(FirestoreStore, prefix, clock)
    stores.append(store)
    assert store.job_counts(task.id)[JobStatus.ACTIVATED] == N_JOBS - 2 * PAGE
    [late] = store.claim_jobs("q", "p1", 1, ANY, clock.now())
    assert late.index >= 2 * PAGE

    # When a new process (new store, services and pipeline) delivers the outbox
    after = deliver(store, Pipeline(services(store, clock)), clock)

    # Then the kill resumes from the third page and completes: the job claimed meanwhile
    # is flagged for its pilot to kill, every other job is cancelled
    assert pages(after) == list(range(2, PAGES))
    assert_killed(store, task.id, [*live, late])
