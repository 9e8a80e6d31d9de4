"""FleetStore contract, the scaler's view of its pilots' slots: a pilot's `slots` (as it said at
registration) round-trips through every write of the pilot record, and `held_cores` counts the
jobs of a queue its pilots hold (sent, starting, running). Runs against every backend."""

from __future__ import annotations

from skypanda.domain.models import Resources
from skypanda.domain.states import JobStatus, PilotStatus
from skypanda.ports import Store
from tests.support import FakeClock

from .conftest import add_split_task, fits_all
from .helpers import pilot, report


def test_a_pilots_slots_round_trip_through_every_write(store: Store, clock: FakeClock) -> None:
    # Given a pilot with 4 slots on 2 cores, and one that did not say (one per core)
    four = pilot("p4", clock, resources=Resources(cores=2), slots=4)
    cores = pilot("pc", clock, resources=Resources(cores=3))
    store.add_pilot(four)
    store.add_pilot(cores)
    # Then they read back with their slots
    assert store.get_pilot("p4").payload_slots == 4
    assert store.get_pilot("pc").slots is None and store.get_pilot("pc").payload_slots == 3
    # And a registration's update, a heartbeat and a listing keep them
    running = four.model_copy(update={"status": PilotStatus.RUNNING, "heartbeat_at": clock.now()})
    assert store.update_pilot(running, [PilotStatus.SUBMITTED])
    beat = store.heartbeat("p4", clock.now())
    assert beat is not None and beat.slots == 4
    listed = {p.id: p.slots for p in store.list_pilots(queue="q", live=True)}
    assert listed == {"p4": 4, "pc": None}


def test_held_cores_counts_the_queues_jobs_its_pilots_hold(store: Store, clock: FakeClock) -> None:
    # Given 5 jobs on queue q and 2 on queue r
    add_split_task(store, clock, 5)
    add_split_task(store, clock, 2, task_id="t2", queue="r")
    assert store.held_cores("q").jobs == 0
    # When pilots take 3 of q's (one of them then starting, one running) and 1 of r's
    sent = store.claim_jobs("q", "p1", 3, fits_all(), clock.now())
    store.claim_jobs("r", "p2", 1, fits_all(), clock.now())
    assert len(sent) == 3
    starting = report(sent[0], JobStatus.STARTING, clock)
    running = report(sent[1], JobStatus.RUNNING, clock)
    assert store.apply_job_changes([starting, running]) == [True, True]
    # Then each queue counts its own
    assert (store.held_cores("q").jobs, store.held_cores("r").jobs) == (3, 1)
    # And a job that ended is held no more
    done = report(running.after, JobStatus.FINISHED, clock)
    assert store.apply_job_changes([done]) == [True]
    assert store.held_cores("q").jobs == 2
