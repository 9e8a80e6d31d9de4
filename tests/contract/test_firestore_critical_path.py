"""Firestore's part of the critical path (issue 17), on the emulator: events added on their own
(a release's activation event) cost one commit and no read, and stay idempotent; a pilot's
report releases its job's children in its own request, where the store cannot commit them
together, and the later delivery of job.ended finds nothing left to do."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
from google.cloud import firestore

from skypanda.adapters.gcp.firestore import FirestoreStore
from skypanda.adapters.gcp.metering import FirestoreMeter, meter_firestore
from skypanda.cli.bench_cloud import _NoBlobs, _NoBus
from skypanda.domain import events as ev
from skypanda.domain.models import JobReport, Queue, Resources
from skypanda.domain.states import JobStatus, PilotStatus
from skypanda.domain.workflow import WorkflowSpec
from skypanda.handlers import dispatch, release, workflow
from skypanda.handlers.services import Services
from skypanda.runtime.emulators import PROJECT
from tests.support import FakeClock


@pytest.fixture
def store(firestore_emulator: Any, clock: FakeClock) -> Iterator[FirestoreStore]:
    client = firestore.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", PROJECT))
    made = FirestoreStore(client, clock=clock.now, prefix=f"t{uuid4().hex[:12]}-")
    yield made
    made.close()


@pytest.fixture
def meter(store: FirestoreStore) -> FirestoreMeter:
    return meter_firestore(store._db)


def test_new_events_are_added_in_one_commit_without_a_read(
    store: FirestoreStore, meter: FirestoreMeter
) -> None:
    # When two new events are added
    store.add_events([ev.jobs_activated("q", 1, key="a"), ev.jobs_activated("q", 2, key="b")])
    # Then they are stored, for two writes and no read
    assert meter.snapshot() == {"reads": 0, "writes": 2, "deletes": 0}
    assert [e.event.id for e in store.pending_events(10)] == [
        "jobs-activated:q:a",
        "jobs-activated:q:b",
    ]
    # When one of them is added again with a third (a handler run again)
    first = store.pending_events(10)
    store.add_events([ev.jobs_activated("q", 1, key="a"), ev.jobs_activated("q", 3, key="c")])
    # Then only the third is added; the stored one is kept as it was
    after = store.pending_events(10)
    assert after[:2] == first and [e.event.id for e in after[2:]] == ["jobs-activated:q:c"]


def test_a_report_releases_its_job_s_child_in_its_own_request(
    store: FirestoreStore, clock: FakeClock
) -> None:
    # Given a workflow a -> b (job level) on Firestore, and a pilot holding a
    svc = Services(store=store, bus=_NoBus(), blobs=_NoBlobs(), clock=clock)
    store.put_queue(Queue(name="q"))
    tasks = [
        {"name": "a", "command": ["true"], "queue": "q", "n_jobs": 1},
        {"name": "b", "command": ["true"], "queue": "q", "n_jobs": 1, "depends": [{"task": "a"}]},
    ]
    spec = WorkflowSpec.model_validate({"name": "w", "tasks": tasks})
    wf = workflow.submit_workflow(svc, spec, "tester")
    workflow.start(svc, wf.id)  # what the workflow function does on workflow.registered
    by_name = {t.spec.name: store.list_jobs(t.id)[0] for t in store.workflow_tasks(wf.id)}
    pilot, _ = dispatch.register(
        svc, pilot_id=None, queue="q", host="h", pid=None,
        resources=Resources(memory_mb=2000, cores=1), version="t",
    )  # fmt: skip
    assert pilot.status is PilotStatus.RUNNING
    [a] = dispatch.acquire(svc, pilot.id, 1)
    assert a.id == by_name["a"].id
    # When its end is reported with an acquire (Firestore cannot commit the two together)
    with store.atomic() as together:
        assert together is False
    report = JobReport(job_id=a.id, attempt=a.attempt, status=JobStatus.FINISHED, exit_code=0)
    results, reply = dispatch.update(svc, pilot.id, [report], {}, acquire_n=1)
    # Then the child, released in that request, is in the reply, sent to this pilot
    assert [r["accepted"] for r in results] == [True]
    assert [j.id for j in reply.jobs] == [by_name["b"].id]
    assert store.get_job(by_name["b"].id).status is JobStatus.SENT
    # And the job.ended event is in the outbox all the same; its delivery changes no child
    ended = [
        ev.JobEnded.model_validate(s.event.data)
        for s in store.pending_events(50)
        if s.event.type is ev.EventType.JOB_ENDED
    ]
    assert [e.job_id for e in ended] == [a.id]
    assert not release.release_children_of(svc, ended)
    assert store.get_job(by_name["b"].id).status is JobStatus.SENT
