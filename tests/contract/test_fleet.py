"""FleetStore contract (`skypanda.ports.fleet`): queues, pilots and the scaler's notes. Every
test runs against every backend in `conftest.BACKENDS`."""

from __future__ import annotations

import pytest

from skypanda.domain.errors import NotFound
from skypanda.domain.models import (
    Pilot,
    Resources,
)
from skypanda.domain.states import (
    PilotStatus,
)
from skypanda.ports import Store
from skypanda.ports.fleet import SweepMark
from tests.support import FakeClock

from .conftest import (
    Backend,
    ClosableStore,
    make_queue,
)
from .helpers import (
    pilot,
)

# --- queues --------------------------------------------------------------------------------------


def test_put_queue_then_get_and_list(store: Store) -> None:
    # Given two queues
    a = make_queue("a", max_pilots=5, pilot_resources=Resources(memory_mb=8000, cores=4))
    b = make_queue("b", online=False)

    # When they are put
    store.put_queue(b)
    store.put_queue(a)

    # Then they read back as written
    assert store.get_queue("a") == a
    assert store.get_queue("b") == b
    assert sorted(store.list_queues(), key=lambda q: q.name) == [a, b]


def test_put_queue_replaces_a_queue_of_the_same_name(store: Store) -> None:
    store.put_queue(make_queue("q", max_pilots=2))
    store.put_queue(make_queue("q", max_pilots=9))
    assert store.get_queue("q").max_pilots == 9
    assert len(store.list_queues()) == 1


def test_get_queue_of_an_unknown_name_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_queue("nope")


def test_queue_limits_and_status_round_trip(backend: Backend, store: ClosableStore) -> None:
    # Given a queue using every brokerage field
    q = make_queue(
        "big", status="test", mode="push", pilot_resources=Resources(memory_mb=32000, cores=8),
        max_memory_per_core_mb=4000, max_cores=8, max_walltime_s="1d", disk_gb=120.5, gpus=2,
    )  # fmt: skip
    # When it is put, and the store is reopened
    store.put_queue(q)
    store.close()
    reopened = backend.open()
    # Then it reads back equal, by name and in the list
    assert reopened.get_queue("big") == q
    assert reopened.list_queues() == [q]
    assert reopened.get_queue("big").status == "test"


def test_a_queue_stored_with_the_old_online_field_still_loads(store: ClosableStore) -> None:
    from skypanda.adapters.local.sqlite import SqliteStore

    # Given a queue record written before `status` replaced `online`
    legacy = '{"name": "old", "mode": "pull", "online": false, "min_pilots": 0}'
    if isinstance(store, SqliteStore):
        with store._tx() as db:
            db.execute("INSERT INTO queues (name, spec) VALUES (?, ?)", ("old", legacy))
    else:
        store._queues.document("old").set({"name": "old", "spec": legacy})  # type: ignore[attr-defined]
    # Then it loads as an offline queue
    (old,) = store.list_queues()
    assert old == store.get_queue("old")
    assert (old.status, old.online, old.min_pilots) == ("offline", False, 0)


# --- pilots --------------------------------------------------------------------------------------


def test_add_pilot_then_get_pilot_returns_it(store: Store, clock: FakeClock) -> None:
    p = pilot("p1", clock, host="h", pid=42, resources=Resources(cores=2), heartbeat_at=clock.t)
    store.add_pilot(p)
    assert store.get_pilot("p1") == p


def test_a_pilot_never_heard_from_reads_back_without_a_heartbeat(
    store: Store, clock: FakeClock
) -> None:
    # Given a pilot record made by the scaler before the pilot started (no heartbeat yet)
    p = pilot("p1", clock)

    # When it is stored and read back
    store.add_pilot(p)

    # Then it reads back as written: heartbeat_at is still None
    assert store.get_pilot("p1") == p


def test_get_pilot_of_an_unknown_id_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get_pilot("nope")


def test_update_pilot_wins_from_an_expected_status(store: Store, clock: FakeClock) -> None:
    # Given a submitted pilot
    store.add_pilot(pilot("p1", clock, heartbeat_at=clock.t))

    # When it is written as running with details, expecting submitted
    running = store.get_pilot("p1").model_copy(
        update={"status": PilotStatus.RUNNING, "host": "node7", "pid": 99}
    )
    won = store.update_pilot(running, [PilotStatus.SUBMITTED])

    # Then the write wins and the record is the new one
    assert won is True
    assert store.get_pilot("p1") == running


def test_update_pilot_loses_from_another_status_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a pilot already declared missed
    store.add_pilot(pilot("p1", clock, status=PilotStatus.MISSED, heartbeat_at=clock.t))
    before = store.get_pilot("p1")

    # When a writer that expects it live writes it as running
    won = store.update_pilot(
        before.model_copy(update={"status": PilotStatus.RUNNING, "host": "late"}),
        [PilotStatus.SUBMITTED, PilotStatus.RUNNING],
    )

    # Then the write loses and the record is unchanged
    assert won is False
    assert store.get_pilot("p1") == before


def test_heartbeat_records_when_a_live_pilot_was_heard(store: Store, clock: FakeClock) -> None:
    store.add_pilot(pilot("p1", clock, status=PilotStatus.RUNNING, heartbeat_at=clock.t))
    beat = store.heartbeat("p1", clock.t + 30)
    assert beat is not None and beat.id == "p1" and not beat.drain
    assert store.get_pilot("p1").heartbeat_at == clock.t + 30


def test_heartbeat_of_an_ended_pilot_returns_none_and_changes_nothing(
    store: Store, clock: FakeClock
) -> None:
    # Given a pilot that has finished
    store.add_pilot(pilot("p1", clock, heartbeat_at=clock.t))
    ended = store.get_pilot("p1").model_copy(update={"status": PilotStatus.FINISHED})
    assert store.update_pilot(ended, [PilotStatus.SUBMITTED])

    # When a heartbeat from it arrives, Then it is refused and not recorded
    assert store.heartbeat("p1", clock.t + 30) is None
    assert store.get_pilot("p1") == ended


def test_a_drain_request_on_the_pilot_record_comes_back_with_its_heartbeat(
    store: Store, clock: FakeClock
) -> None:
    # Given a running pilot an operator asked to drain (a compare-and-set on its status)
    store.add_pilot(pilot("p1", clock, status=PilotStatus.RUNNING, heartbeat_at=clock.t))
    asked = store.get_pilot("p1").model_copy(update={"drain": True})
    assert store.update_pilot(asked, [PilotStatus.RUNNING])

    # When it heartbeats, Then the record it gets back says drain, and the beat is recorded
    beat = store.heartbeat("p1", clock.t + 5)
    assert beat is not None and beat.drain is True
    assert store.get_pilot("p1").heartbeat_at == clock.t + 5


def test_silent_pilots_are_live_pilots_of_the_queue_not_heard_since(
    store: Store, clock: FakeClock
) -> None:
    # Given, at t0: a pilot that never heartbeats, one that heartbeats later, one that ended,
    # one on another queue, and one only created later
    t0 = clock.t
    store.add_pilot(pilot("quiet", clock))
    store.add_pilot(pilot("chatty", clock, status=PilotStatus.RUNNING))
    store.add_pilot(pilot("gone", clock, status=PilotStatus.MISSED))
    store.add_pilot(pilot("elsewhere", clock, queue="other"))
    clock.advance(100)
    store.add_pilot(pilot("young", clock))
    store.heartbeat("chatty", clock.now())

    # When asking for pilots of q not heard from since t0 + 50
    silent = store.silent_pilots("q", t0 + 50)

    # Then only the quiet one is silent (its start counts as heard)
    assert [p.id for p in silent] == ["quiet"]


def test_list_pilots_filters_by_queue_and_liveness(store: Store, clock: FakeClock) -> None:
    store.add_pilot(pilot("submitted", clock))
    store.add_pilot(pilot("running", clock, status=PilotStatus.RUNNING))
    store.add_pilot(pilot("finished", clock, status=PilotStatus.FINISHED))
    store.add_pilot(pilot("elsewhere", clock, queue="other", status=PilotStatus.RUNNING))

    def ids(pilots: list[Pilot]) -> set[str]:
        return {p.id for p in pilots}

    assert ids(store.list_pilots()) == {"submitted", "running", "finished", "elsewhere"}
    assert ids(store.list_pilots(live=True)) == {"submitted", "running", "elsewhere"}
    assert ids(store.list_pilots(queue="q")) == {"submitted", "running", "finished"}
    assert ids(store.list_pilots(queue="q", live=True)) == {"submitted", "running"}


def test_failed_pilots_are_counted_since_a_time(store: Store, clock: FakeClock) -> None:
    t0 = clock.now()
    for i, (status, ended) in enumerate(
        [(PilotStatus.MISSED, t0 - 100), (PilotStatus.FAILED, t0 + 5),
         (PilotStatus.MISSED, t0 + 6), (PilotStatus.FINISHED, t0 + 7)]
    ):  # fmt: skip
        pilot = Pilot(id=f"p{i}", queue="q", created_at=t0 - 200)
        store.add_pilot(pilot)
        ended_pilot = pilot.model_copy(update={"status": status, "ended_at": ended})
        assert store.update_pilot(ended_pilot, [PilotStatus.SUBMITTED])
    assert store.count_failed_pilots("q", t0) == 2
    assert store.count_failed_pilots("q", t0 - 1000) == 3
    assert store.count_failed_pilots("other", t0 - 1000) == 0


def test_disconnected_pilots_are_not_counted_as_failed(store: Store, clock: FakeClock) -> None:
    # Given, in one window, a pilot that failed and two that left because the server was down
    t0 = clock.now()
    for i, status in enumerate(
        [PilotStatus.FAILED, PilotStatus.DISCONNECTED, PilotStatus.DISCONNECTED]
    ):
        p = Pilot(id=f"p{i}", queue="q", created_at=t0 - 50, status=PilotStatus.RUNNING)
        store.add_pilot(p)
        gone = p.model_copy(update={"status": status, "ended_at": t0 + i})
        assert store.update_pilot(gone, [PilotStatus.RUNNING])
    # Then only the failure counts for the back-off, and the others read back as disconnected
    assert store.count_failed_pilots("q", t0 - 100) == 1
    assert store.get_pilot("p1").status is PilotStatus.DISCONNECTED


def test_a_back_off_reset_is_kept_per_queue_and_replaced_by_the_next(
    store: Store, clock: FakeClock
) -> None:
    # Given no reset yet
    assert store.backoff_reset_at("q") is None
    # When an admin resets q twice, Then the last reset is kept, and only for q
    store.reset_backoff("q", clock.now())
    store.reset_backoff("q", clock.now() + 5)
    assert store.backoff_reset_at("q") == clock.now() + 5
    assert store.backoff_reset_at("other") is None


def test_the_sweep_mark_is_kept_across_a_restart(backend: Backend, store: ClosableStore) -> None:
    # Given no sweep ever
    assert store.last_sweep() is None
    # When two marks are written, the second after an outage
    store.mark_sweep(SweepMark(swept_at=100.0))
    outage = SweepMark(swept_at=200.5, cadence_s=1.25, down_since=150.0, resumed_at=200.5)
    store.mark_sweep(outage)
    # Then the last one reads back, also from a store opened again (a restarted server)
    assert store.last_sweep() == outage
    store.close()
    assert backend.open().last_sweep() == outage


# --- scaler notes --------------------------------------------------------------------------------


def test_scaling_notes_keep_the_last_decision_per_queue(store: Store, clock: FakeClock) -> None:
    assert store.scaling_notes() == {}
    store.note_scaling("q", "launch 2", clock.now())
    store.note_scaling("q", "enough", clock.now() + 1)
    store.note_scaling("r", "backing off", clock.now() + 2)
    assert store.scaling_notes() == {
        "q": ("enough", clock.now() + 1),
        "r": ("backing off", clock.now() + 2),
    }
