"""The scaler on the embedded store with a launcher that starts nothing (its pilots never
check in): launches follow the decisions, silent pilots are declared missed, the queue backs
off, and the decision is visible."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from skypanda.domain.events import TaskRef
from skypanda.domain.models import Job, Queue, Resources, TaskSpec
from skypanda.domain.states import PilotStatus
from skypanda.handlers import dispatch, queues, scale, split, sweep
from skypanda.handlers.services import Services
from skypanda.handlers.submit import submit
from skypanda.ports import LaunchedPilot
from skypanda.runtime.launchers import QueueLaunchers
from tests.support import FakeClock, sqlite_services


class SilentLauncher:
    """Records what it is asked to start; starts nothing (a pilot that never checks in)."""

    def __init__(self) -> None:
        self.launched: list[tuple[str, str, str | None, int]] = []

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        memory = (job.resources if job else queue.pilot_resources).memory_mb
        self.launched.append((queue.name, pilot_id, job.id if job else None, memory))
        return f"silent:{pilot_id}"

    def list(self) -> list[LaunchedPilot]:
        return [
            LaunchedPilot(pilot_id=p, ref=f"silent:{p}", alive=True) for _, p, _, _ in self.launched
        ]

    def stop(self, pilot_id: str) -> None:
        pass


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    queue = Queue(
        name="local", min_pilots=0, max_pilots=5, max_new_per_cycle=2, max_queued=3,
        heartbeat_interval_s=5, heartbeat_timeout_s=60,
    )  # fmt: skip
    with sqlite_services(tmp_path, FakeClock(), queue) as services:
        services.launcher = SilentLauncher()
        services.memory.noted.clear()  # (a fresh Memory anyway)
        yield services


def _tick(svc: Services) -> int:
    launched = scale.handle(svc)
    sweep.handle(svc)
    return launched


def _run(svc: Services, seconds: int) -> int:
    """Tick once a second for `seconds`, the server up all along (a longer gap between two
    ticks is an outage of the server: see handlers.sweep); how many pilots were launched."""
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    launched = 0
    for _ in range(seconds):
        clock.advance(1)
        launched += _tick(svc)
    return launched


def test_silent_pilots_are_missed_and_the_queue_backs_off_with_the_reason_visible(
    svc: Services,
) -> None:
    clock = svc.clock
    assert isinstance(clock, FakeClock)
    launcher = svc.launcher
    assert isinstance(launcher, SilentLauncher)
    # Given 100 jobs waiting on a queue whose pilots never check in
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=100), owner="u")
    split.handle(svc, TaskRef(task_id=task.id))

    # When the scaler runs: at most 2 new per cycle, at most 3 queued (never running)
    assert _tick(svc) == 2
    assert _tick(svc) == 1
    assert _tick(svc) == 0
    (view,) = queues.overview(svc)
    assert "capped by max_queued 3" in view["last_decision"]
    assert view["pilots"] == {"submitted": 3}

    # When they stay silent past the heartbeat timeout, Then they are declared missed
    assert _run(svc, 61) == 0  # the sweep runs after each tick's decision
    assert {p.status for p in svc.store.list_pilots(queue="local")} == {PilotStatus.MISSED}

    # And the queue backs off instead of launching more that would die the same way
    assert _tick(svc) == 0
    (view,) = queues.overview(svc)
    assert view["last_decision"].startswith("backing off: 3 pilots missed or failed")
    assert len(launcher.launched) == 3

    # And once the pause three failures call for (30 s) has passed, it tries again
    assert _run(svc, 29) == 0
    assert _run(svc, 2) == 2


def test_push_mode_launches_one_pilot_per_job_sized_to_it(svc: Services) -> None:
    launcher = svc.launcher
    assert isinstance(launcher, SilentLauncher)
    svc.store.put_queue(
        Queue(name="push", mode="push", min_pilots=0, max_pilots=10, max_new_per_cycle=10,
              max_queued=10, pilot_resources=Resources(memory_mb=8000, cores=4))
    )  # fmt: skip
    spec = TaskSpec(name="p", command=["true"], n_jobs=3, queue="push",
                    resources=Resources(memory_mb=1500, cores=2))  # fmt: skip
    task = submit(svc, spec, owner="u")
    split.handle(svc, TaskRef(task_id=task.id))

    # When the scaler runs twice, Then exactly one pilot per job, each with the job's memory
    scale.handle(svc)
    scale.handle(svc)
    pushed = [(j, m) for q, _, j, m in launcher.launched if q == "push"]
    jobs = {j.id for j in svc.store.list_jobs(task.id)}
    assert sorted(j for j, _ in pushed) == sorted(jobs)
    assert {m for _, m in pushed} == {1500}
    pilots = svc.store.list_pilots(queue="push")
    assert {p.push_job for p in pilots} == jobs
    assert {(p.resources.memory_mb, p.resources.cores) for p in pilots} == {(1500, 2)}


class VanishingLauncher(SilentLauncher):
    """Reports every pilot it launched as gone without a trace (a deleted pod or task)."""

    def list(self) -> list[LaunchedPilot]:
        return [
            LaunchedPilot(pilot_id=p, ref=f"gone:{p}", alive=False, exit_code=None)
            for _, p, _, _ in self.launched
        ]


def test_a_pilot_that_vanished_from_the_launcher_is_missed_and_its_jobs_requeued(
    svc: Services,
) -> None:
    # Given a pilot holding a job, whose pod (or task, or process) then vanishes
    svc.launcher = VanishingLauncher()
    task = submit(svc, TaskSpec(name="t", command=["true"], n_jobs=1), owner="u")
    split.handle(svc, TaskRef(task_id=task.id))
    scale.scale_queue(svc, svc.store.get_queue("local"))
    (pilot,) = svc.store.list_pilots(queue="local")
    dispatch.register(svc, pilot_id=pilot.id, queue="local", host="h", pid=None,
                      resources=Resources(), version="v")  # fmt: skip
    (job,) = dispatch.acquire(svc, pilot.id, 1)

    # When the scaler reconciles with the launcher's view
    scale.reconcile(svc)

    # Then the pilot is missed (vanished) and its job requeued as a new attempt
    ended = svc.store.get_pilot(pilot.id)
    assert ended.status is PilotStatus.MISSED and ended.reason.startswith("vanished")
    requeued = svc.store.get_job(job.id)
    assert (requeued.status.value, requeued.attempt) == ("activated", 2)


def test_a_queue_whose_launcher_is_not_available_says_so_and_others_still_scale(
    svc: Services,
) -> None:
    # Given the local launcher only, and a Cloud Run queue with jobs waiting
    silent = SilentLauncher()
    svc.launcher = QueueLaunchers({"local": lambda queue: silent})
    cloudrun = {"kind": "cloudrun", "project": "my-project", "region": "europe-west1",
                "job": "pilots", "image": "img"}  # fmt: skip
    svc.store.put_queue(Queue(name="cr", min_pilots=1, launcher=cloudrun))
    svc.store.put_queue(Queue(name="local", min_pilots=1))

    # When the scaler runs, Then the local queue gets its pilot, the other names the problem
    assert scale.handle(svc) == 1
    notes = {q["name"]: q["last_decision"] for q in queues.overview(svc)}
    assert (
        notes["cr"]
        == "cannot launch pilots: queue cr: no cloudrun launcher here (available: local)"
    )
    assert notes["local"].endswith("launch 1 (target 1)")


class PausingLauncher(SilentLauncher):
    """A SilentLauncher whose first launch waits until `go` is set (a slow start)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def launch(self, queue: Queue, pilot_id: str, job: Job | None = None) -> str:
        if not self.entered.is_set():
            self.entered.set()
            assert self.go.wait(60), "the test never let the first launch go on"
        return super().launch(queue, pilot_id, job)


def test_two_decisions_at_once_do_not_pass_max_pilots(svc: Services) -> None:
    # Given 100 jobs waiting on a queue of at most 5 pilots, 2 new a decision, 3 queued at
    # most, and a launcher whose first launch is slow
    launcher = PausingLauncher()
    svc.launcher = launcher
    spec = TaskSpec(name="t", command=["true"], n_jobs=100)
    split.handle(svc, TaskRef(task_id=submit(svc, spec, "alice").id))
    # When a decision is under way (its first launch not returned yet) and a second one
    # starts, as the embedded system's tick and a jobs.activated may
    first = threading.Thread(target=scale.handle, args=(svc,))
    first.start()
    assert launcher.entered.wait(60)
    second = threading.Thread(target=scale.handle, args=(svc,))
    second.start()
    second.join(3)  # the second decision waits for the first (it used to go ahead)
    launcher.go.set()
    first.join(60)
    second.join(60)
    # Then the second counted the first's pilots: 2, then 1 up to max_queued (3: the
    # pilots never check in); at once they launched 2 + 2
    assert not first.is_alive() and not second.is_alive()
    assert len(launcher.launched) == 3
