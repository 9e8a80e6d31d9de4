"""Store contract for what the scaler reads and writes, on SQLite and Firestore."""

from __future__ import annotations

from skypanda.domain.models import Pilot
from skypanda.domain.states import PilotStatus
from skypanda.ports import Store

from .conftest import FakeClock, add_split_task, fits_all


def test_list_activated_is_in_dispatch_order_and_limited(store: Store, clock: FakeClock) -> None:
    jobs = add_split_task(store, clock, 4)
    store.claim_jobs("q", "p1", 1, fits_all(), clock.now())
    listed = store.list_activated("q", 2)
    assert [j.index for j in listed] == [1, 2]
    assert {j.id for j in store.list_activated("q", 10)} == {j.id for j in jobs[1:]}
    assert store.list_activated("other", 10) == []


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


def test_scaling_notes_keep_the_last_decision_per_queue(store: Store, clock: FakeClock) -> None:
    assert store.scaling_notes() == {}
    store.note_scaling("q", "launch 2", clock.now())
    store.note_scaling("q", "enough", clock.now() + 1)
    store.note_scaling("r", "backing off", clock.now() + 2)
    assert store.scaling_notes() == {
        "q": ("enough", clock.now() + 1),
        "r": ("backing off", clock.now() + 2),
    }
