"""The scaler's counts in cores, on every backend: `held_cores` (the jobs a queue's pilots hold,
and the cores they ask for) and `waiting_cores` (the activated jobs that fit a pilot of the
queue, and their cores); the scaler (handlers.scale) deciding with them; and, on Firestore,
that each is one aggregation billed as the count of its entries (one read per 1000), however
many cores it sums."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from skypanda.adapters.gcp.firestore import FirestoreStore
from skypanda.adapters.gcp.metering import meter_firestore
from skypanda.adapters.local.bus import OutboxBus
from skypanda.adapters.local.files import FileBlobs
from skypanda.domain.events import TaskRef
from skypanda.domain.models import Pilot, Queue, Resources, TaskSpec
from skypanda.domain.scaling import Work
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch, scale, split
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.ports import Store
from skypanda.runtime.emulators import Emulator
from tests.handlers.test_scale import SilentLauncher
from tests.support import FakeClock

from .conftest import FirestoreBackend, add_split_task, fits_all
from .helpers import report

PILOT = Resources(memory_mb=16_000, cores=8)
"""The queue's pilots in these tests: 8 cores, 16 GB."""


def _sized(cores: int, memory_mb: int = 2000) -> Resources:
    return Resources(cores=cores, memory_mb=memory_mb)


def test_held_cores_sums_the_cores_of_the_jobs_the_queues_pilots_hold(
    store: Store, clock: FakeClock
) -> None:
    # Given, on queue q, two 8-core jobs and three 1-core jobs; on queue r, one 4-core job
    add_split_task(store, clock, 2, task_id="big", resources=_sized(8))
    add_split_task(store, clock, 3, task_id="small")
    add_split_task(store, clock, 1, task_id="other", queue="r", resources=_sized(4))
    assert store.held_cores("q") == Work(jobs=0, cores=0)
    # When pilots take both 8-core jobs and two 1-core ones (one starting, one running), and
    # the job of r
    held = store.claim_jobs("q", "p1", 4, fits_all(), clock.now())
    assert sorted(j.resources.cores for j in held) == [1, 1, 8, 8]
    store.claim_jobs("r", "p2", 1, fits_all(), clock.now())
    big = [j for j in held if j.resources.cores == 8]
    starting = report(big[0], JobStatus.STARTING, clock)
    running = report(big[1], JobStatus.RUNNING, clock)
    assert store.apply_job_changes([starting, running]) == [True, True]
    # Then each queue sums the cores its pilots hold: 8 + 8 + 1 + 1 on q
    assert store.held_cores("q") == Work(jobs=4, cores=18)
    assert store.held_cores("r") == Work(jobs=1, cores=4)
    # And a job that ended is held no more: its cores are free again
    done = report(running.after, JobStatus.FINISHED, clock)
    assert store.apply_job_changes([done]) == [True]
    assert store.held_cores("q") == Work(jobs=3, cores=10)
    # And the activated 1-core job left is waiting, not held
    assert store.waiting_cores("q", PILOT, 10_000) == Work(jobs=1, cores=1)


def test_waiting_cores_sums_the_activated_jobs_that_fit_the_queues_pilot(
    store: Store, clock: FakeClock
) -> None:
    # Given, on queue q: three 8-core jobs, two 1-core jobs, and jobs no pilot of 8 cores and
    # 16 GB takes (16 cores; 32 GB); on queue r, 4-core jobs
    add_split_task(store, clock, 3, task_id="big", resources=_sized(8))
    add_split_task(store, clock, 2, task_id="small")
    add_split_task(store, clock, 2, task_id="wide", resources=_sized(16))
    add_split_task(store, clock, 1, task_id="fat", resources=_sized(2, 32_000))
    add_split_task(store, clock, 5, task_id="other", queue="r", resources=_sized(4))
    # Then the queue's waiting work is what fits its pilot: 3 x 8 + 2 x 1 cores
    assert store.waiting_cores("q", PILOT, 10_000) == Work(jobs=5, cores=26)
    assert store.waiting_cores("r", PILOT, 10_000) == Work(jobs=5, cores=20)
    assert store.waiting_cores("empty", PILOT, 10_000) == Work(jobs=0, cores=0)
    # And a larger pilot would take the rest too
    assert store.waiting_cores("q", Resources(memory_mb=64_000, cores=16), 10_000) == Work(8, 60)
    # And a job claimed no longer waits (by a pilot of 1 core: one of the 1-core jobs)
    taken = store.claim_jobs("q", "p1", 1, _sized(1), clock.now())
    assert [j.resources.cores for j in taken] == [1]
    assert store.waiting_cores("q", PILOT, 10_000) == Work(jobs=4, cores=25)
    # And at most `limit` jobs are counted (the scaler asks for what its pilots could hold)
    assert store.waiting_cores("r", PILOT, 3) == Work(jobs=3, cores=12)


# --- the scaler, deciding with them ------------------------------------------------------------


@pytest.fixture
def svc(store: Store, clock: FakeClock, tmp_path: Path) -> Services:
    """The scaler's services on the backend's store: queue q of pilots of 8 cores, none kept
    idle, room for 10 at once."""
    store.put_queue(
        Queue(name="q", pilot_resources=PILOT, min_pilots=0, max_pilots=10,
              max_new_per_cycle=10, max_queued=10)
    )  # fmt: skip
    services = Services(store=store, bus=OutboxBus(store), blobs=FileBlobs(tmp_path), clock=clock)
    services.launcher = SilentLauncher()
    return services


def _jobs(svc: Services, n: int, cores: int) -> None:
    spec = TaskSpec(name="t", command=["true"], n_jobs=n, queue="q", resources=_sized(cores))
    task = submit(svc, spec, owner="u")
    split.handle(svc, TaskRef(task_id=task.id))


def _register(svc: Services, pilot_id: str | None = None) -> Pilot:
    """A pilot of the queue's size registers (a new one, or the launched `pilot_id`)."""
    pilot, _ = dispatch.register(
        svc, pilot_id=pilot_id, queue="q", host="h", pid=None, resources=PILOT, version="v"
    )
    return pilot


def _scale(svc: Services) -> tuple[int, str]:
    launched = scale.scale_queue(svc, svc.store.get_queue("q"))
    return launched, svc.store.scaling_notes()["q"][0]


def test_an_8_core_job_waiting_behind_a_pilot_busy_with_one_gets_a_pilot(svc: Services) -> None:
    # Given the only pilot (8 cores, so 8 slots) running an 8-core job
    pilot = _register(svc)
    _jobs(svc, 1, cores=8)
    assert len(dispatch.acquire(svc, pilot.id, 1)) == 1
    # And a second 8-core job waiting
    _jobs(svc, 1, cores=8)
    # When the scaler looks at the queue
    launched, why = _scale(svc)
    # Then the pilot's 7 idle slots do not hide that its cores are all busy: a pilot is
    # launched for the job
    assert launched == 1
    assert "1 jobs waiting (8 cores), 8 cores without a free slot" in why
    assert "1 running (0 cores free, 7 slots)" in why


def test_multi_core_jobs_waiting_get_a_pilot_per_pilots_worth_of_cores(svc: Services) -> None:
    # Given eight 8-core jobs and eight 1-core jobs waiting, no pilot
    _jobs(svc, 8, cores=8)
    _jobs(svc, 8, cores=1)
    # Then 72 cores wait: nine pilots of 8 cores
    launched, why = _scale(svc)
    assert launched == 9 and "16 jobs waiting (72 cores)" in why
    # And once they run, idle, their cores cover the work: none more
    assert isinstance(svc.launcher, SilentLauncher)
    for _, pilot_id, _, _ in svc.launcher.launched:
        _register(svc, pilot_id)
    launched, why = _scale(svc)
    assert launched == 0 and "9 running (72 cores free)" in why and "enough (target 9)" in why


def test_a_job_too_big_for_the_queues_pilots_gets_no_pilot(svc: Services) -> None:
    # Given a 16-core job submitted while the queue's pilots had 16 cores, which then became 8
    queue = svc.store.get_queue("q")
    svc.store.put_queue(queue.model_copy(update={"pilot_resources": _sized(16, 16_000)}))
    _jobs(svc, 1, cores=16)
    svc.store.put_queue(queue)
    # Then no pilot launched here could take it: none is launched, pass after pass
    assert [_scale(svc)[0] for _ in range(3)] == [0, 0, 0]
    assert _scale(svc)[1].startswith("0 jobs waiting")
    # And a job that fits still gets one
    _jobs(svc, 1, cores=8)
    assert _scale(svc)[0] == 1


# --- Firestore: what the aggregations cost -----------------------------------------------------


@pytest.fixture
def firestore_store(firestore_emulator: Emulator, clock: FakeClock) -> Iterator[FirestoreStore]:
    backend = FirestoreBackend(f"t{uuid4().hex[:12]}-", clock)
    yield backend.open()
    backend.close()


def test_a_sum_of_cores_is_billed_by_the_jobs_it_counts_not_by_the_cores(
    firestore_store: FirestoreStore, clock: FakeClock
) -> None:
    # Given 130 jobs of 8 cores waiting (1040 cores), all of them then held
    store = firestore_store
    add_split_task(store, clock, 130, task_id="big", resources=_sized(8))
    meter = meter_firestore(store._db)
    # When the scaler sums what waits
    assert store.waiting_cores("q", PILOT, 10_000) == Work(jobs=130, cores=1040)
    # Then it costs one read: 130 index entries, whatever the 1040 cores summed
    assert meter.snapshot()["reads"] == 1
    assert meter.by_operation["waiting_cores.reads"] == 1
    # And likewise for what the pilots hold
    assert len(store.claim_jobs("q", "p1", 130, PILOT, clock.now())) == 130
    meter.reset()
    assert store.held_cores("q") == Work(jobs=130, cores=1040)
    assert meter.snapshot()["reads"] == 1
