"""A server outage costs no attempt and no back-off (issue 13), on the embedded store with a
fake clock: the sweep notices its own downtime (a gap between its ticks) and gives every pilot
its heartbeat timeout again from the server's return; pilots that never come back left because
the server was unreachable (disconnected: their jobs are requeued without counting an attempt,
and the scaler does not back off for them); the back-off decays and an admin can clear it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from skypanda.domain.errors import NotFound
from skypanda.domain.events import TaskRef
from skypanda.domain.models import Job, JobReport, Pilot, Queue, Resources, TaskSpec
from skypanda.domain.states import JobStatus, PilotStatus
from skypanda.handlers import dispatch, queues, scale, split, sweep
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.pilot.agent import EXIT_UNREACHABLE
from skypanda.ports import LaunchedPilot
from skypanda.ports.fleet import SweepMark
from tests.support import FakeClock, sqlite_services

TIMEOUT_S = 60


class Launcher:
    """Starts nothing; reports the pilots named in `exited` as gone with their exit code."""

    def __init__(self) -> None:
        self.launched: list[str] = []
        self.exited: dict[str, int | None] = {}

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        self.launched.append(pilot_id)
        return f"fake:{pilot_id}"

    def list(self) -> list[LaunchedPilot]:
        return [
            LaunchedPilot(p, f"fake:{p}", p not in self.exited, self.exited.get(p))
            for p in self.launched
        ]

    def stop(self, pilot_id: str) -> None:
        pass


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    queue = Queue(
        name="local", min_pilots=0, max_pilots=10, max_new_per_cycle=10, max_queued=10,
        heartbeat_interval_s=5, heartbeat_timeout_s=TIMEOUT_S,
    )  # fmt: skip
    with sqlite_services(tmp_path, FakeClock(), queue) as services:
        services.launcher = Launcher()
        yield services


def _clock(svc: Services) -> FakeClock:
    assert isinstance(svc.clock, FakeClock)
    return svc.clock


def _launcher(svc: Services) -> Launcher:
    assert isinstance(svc.launcher, Launcher)
    return svc.launcher


def _tick(svc: Services) -> int:
    launched = scale.handle(svc)
    sweep.handle(svc)
    return launched


def _run(svc: Services, seconds: int, beating: Sequence[Pilot] = ()) -> int:
    """The server up for `seconds`, ticking each second; `beating` pilots heartbeat each
    second with the jobs they hold. How many pilots the scaler launched."""
    launched = 0
    for _ in range(seconds):
        _clock(svc).advance(1)
        for p in beating:
            dispatch.heartbeat(svc, p.id, [j.id for j in svc.store.live_jobs_of_pilot(p.id)])
        launched += _tick(svc)
    return launched


def _pilots_holding_jobs(svc: Services, n: int) -> list[Pilot]:
    """`n` jobs waiting, then `n` pilots the scaler launched, registered, one job each."""
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=n), owner="u")
    split.handle(svc, TaskRef(task_id=task.id))
    assert _tick(svc) == n
    pilots = []
    for pilot_id in _launcher(svc).launched[-n:]:
        pilot, _ = dispatch.register(svc, pilot_id=pilot_id, queue="local", host="h", pid=1,
                                     resources=Resources(), version="v")  # fmt: skip
        assert len(dispatch.acquire(svc, pilot.id, 1)) == 1
        pilots.append(pilot)
    return pilots


def _job_of(svc: Services, pilot: Pilot) -> Job:
    (job,) = svc.store.live_jobs_of_pilot(pilot.id)
    return job


def test_the_back_off_after_an_outage(svc: Services) -> None:
    # Given three pilots running a job each, the server up and sweeping every second
    pilots = _pilots_holding_jobs(svc, 3)
    jobs = [_job_of(svc, p) for p in pilots]
    assert _run(svc, 5, pilots) == 0

    # When the server is down for two minutes (no tick, no heartbeat reaches it), and its
    # pilots gave up on it meanwhile (they never come back)
    _clock(svc).advance(120)

    # Then, back, it does not blame the pilots for its own silence at once
    assert _tick(svc) == 0
    assert {p.status for p in svc.store.list_pilots()} == {PilotStatus.RUNNING}

    # And a heartbeat timeout after its return, they are disconnected, not missed
    _run(svc, TIMEOUT_S)
    ended = [svc.store.get_pilot(p.id) for p in pilots]
    assert {p.status for p in ended} == {PilotStatus.DISCONNECTED}
    assert all("unreachable" in p.reason for p in ended)

    # And their jobs run again as new attempts that cost nothing
    again = [svc.store.get_job(j.id) for j in jobs]
    assert {(j.status, j.attempt, j.failures) for j in again} == {(JobStatus.ACTIVATED, 2, 0)}

    # And the scaler does not back off: it launches pilots for them at once
    assert _tick(svc) == 3
    (view,) = queues.overview(svc)
    assert not view["last_decision"].startswith("backing off")


def test_a_pilot_that_rides_the_outage_out_loses_nothing(svc: Services) -> None:
    # Given a pilot running a job, the server up and sweeping
    (pilot,) = _pilots_holding_jobs(svc, 1)
    job = _job_of(svc, pilot)
    _run(svc, 5, [pilot])

    # When the server is down for longer than the heartbeat timeout, then comes back, and the
    # pilot's retried heartbeat reaches it a few seconds later
    _clock(svc).advance(3 * TIMEOUT_S)
    _run(svc, 4)
    _run(svc, TIMEOUT_S, [pilot])

    # Then the pilot is still running, and its report of the job (which ended during the
    # outage) is accepted: the job finishes on its first attempt
    assert svc.store.get_pilot(pilot.id).status is PilotStatus.RUNNING
    report = JobReport(job_id=job.id, attempt=1, status=JobStatus.FINISHED, exit_code=0)
    (result,), _ = dispatch.update(svc, pilot.id, [report], {})
    assert result["accepted"], result
    done = svc.store.get_job(job.id)
    assert (done.status, done.attempt, done.failures) == (JobStatus.FINISHED, 1, 0)


def test_silence_while_the_server_is_up_is_still_missed_and_counted(svc: Services) -> None:
    # Given a pilot running a job that stops heartbeating while the server runs on
    (pilot,) = _pilots_holding_jobs(svc, 1)
    job = _job_of(svc, pilot)
    _run(svc, 5, [pilot])

    # When its heartbeat timeout passes, the server ticking all along
    _run(svc, TIMEOUT_S + 1)

    # Then it is missed, and its job's lost attempt counts
    assert svc.store.get_pilot(pilot.id).status is PilotStatus.MISSED
    again = svc.store.get_job(job.id)
    assert (again.attempt, again.failures) == (2, 1)


def test_a_pilot_that_exited_because_the_server_was_unreachable_is_disconnected(
    svc: Services,
) -> None:
    # The server knows the pilot's exit code for "could not reach the server" (it does not
    # import the pilot)
    assert scale.PILOT_EXIT_UNREACHABLE == EXIT_UNREACHABLE
    # Given three registered pilots holding a job each, and one launched pilot never registered
    pilots = _pilots_holding_jobs(svc, 3)
    jobs = [_job_of(svc, p) for p in pilots]
    svc.store.add_pilot(Pilot(id="unregistered", queue="local", created_at=_clock(svc).now()))
    launcher = _launcher(svc)
    launcher.launched.append("unregistered")

    # When all of them exit with the pilot's "server unreachable" code
    for p in [*pilots, svc.store.get_pilot("unregistered")]:
        launcher.exited[p.id] = EXIT_UNREACHABLE
    scale.reconcile(svc)

    # Then the registered ones are disconnected, their jobs requeued without a counted attempt
    assert {svc.store.get_pilot(p.id).status for p in pilots} == {PilotStatus.DISCONNECTED}
    assert {svc.store.get_job(j.id).failures for j in jobs} == {0}
    # But one that never registered may have been given a wrong address: it failed
    assert svc.store.get_pilot("unregistered").status is PilotStatus.FAILED


def test_a_pilot_that_could_not_register_during_an_outage_is_disconnected(svc: Services) -> None:
    # Given a launched pilot, and then an outage of the server (a gap in its sweeps)
    _run(svc, 3)
    svc.store.add_pilot(Pilot(id="late", queue="local", created_at=_clock(svc).now()))
    _launcher(svc).launched.append("late")
    _clock(svc).advance(100)
    _tick(svc)

    # When the pilot exits with "server unreachable" before it could register
    _launcher(svc).exited["late"] = EXIT_UNREACHABLE
    scale.reconcile(svc)

    # Then the outage explains it
    assert svc.store.get_pilot("late").status is PilotStatus.DISCONNECTED


def test_an_admin_resets_a_back_off_and_the_queue_launches_at_once(svc: Services) -> None:
    # Given a queue backing off after three pilots failed, with work waiting
    pilots = _pilots_holding_jobs(svc, 3)
    for p in pilots:
        _launcher(svc).exited[p.id] = 1
    assert _tick(svc) == 0
    (view,) = queues.overview(svc)
    assert view["last_decision"].startswith("backing off: 3 pilots missed or failed")

    # When an admin resets its back-off
    reset = scale.reset_backoff(svc, "local")

    # Then the scaler launches for the waiting jobs at once, and says so
    assert reset == {"queue": "local", "reset_at": _clock(svc).now()}
    assert scale.handle(svc) == 3
    (view,) = queues.overview(svc)
    assert "launch 3" in view["last_decision"]


def test_resetting_the_back_off_of_an_unknown_queue_says_so(svc: Services) -> None:
    with pytest.raises(NotFound, match="nope"):
        scale.reset_backoff(svc, "nope")


# -- the sweep's pulse (pure) -------------------------------------------------------------------


def test_the_sweep_learns_its_cadence_and_takes_a_long_gap_for_an_outage() -> None:
    # Given sweeps a minute apart (Cloud Scheduler): the first sees nothing to compare; the
    # second, no cadence yet, takes the minute for an outage (one needless grace at the first
    # start) and learns the cadence from it
    mark = sweep.next_mark(None, 0.0)
    assert mark == SweepMark(swept_at=0.0)
    mark = sweep.next_mark(mark, 60.0)
    assert (mark.cadence_s, mark.resumed_at) == (60.0, 60.0)
    for t in (120.0, 180.0):
        mark = sweep.next_mark(mark, t)
    assert mark.cadence_s == pytest.approx(60.0) and mark.resumed_at == 60.0

    # When one tick is late (two minutes), Then that is no outage
    mark = sweep.next_mark(mark, 300.0)
    assert mark.resumed_at == 60.0

    # When the next comes ten minutes later, Then it is: from the last sweep to this one
    mark = sweep.next_mark(mark, 900.0)
    assert (mark.down_since, mark.resumed_at) == (300.0, 900.0)
    assert sweep.in_grace(mark, 900.0 + 59, 60) and not sweep.in_grace(mark, 900.0 + 60, 60)


def test_a_tick_delivered_twice_is_no_outage_for_the_next() -> None:
    # Given sweeps a second apart, one delivered twice (at-least-once delivery)
    mark = sweep.next_mark(None, 0.0)
    for t in (1.0, 2.0, 2.0, 3.0, 4.0):
        mark = sweep.next_mark(mark, t)
    # Then no outage was seen
    assert mark.resumed_at is None and mark.cadence_s is not None


def test_a_server_that_swept_once_then_went_down_knows_it_was_down() -> None:
    # Given a server that swept once, then was down for half a minute
    mark = sweep.next_mark(sweep.next_mark(None, 0.0), 30.0)
    # Then its next sweep sees the outage
    assert (mark.down_since, mark.resumed_at) == (0.0, 30.0)


def test_who_left_in_an_outage() -> None:
    mark = SweepMark(swept_at=500.0, cadence_s=1.0, down_since=400.0, resumed_at=500.0)
    # heard shortly before the server went down, or while it was down: the outage explains it
    assert sweep.left_in_outage(390.0, mark, 60)
    assert sweep.left_in_outage(450.0, mark, 60)
    # heard after the server came back, or silent long before it went down: it does not
    assert not sweep.left_in_outage(501.0, mark, 60)
    assert not sweep.left_in_outage(300.0, mark, 60)
    # no outage seen: nothing explains silence
    assert not sweep.left_in_outage(450.0, SweepMark(swept_at=500.0), 60)
