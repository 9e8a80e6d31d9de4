"""How many pilots a queue needs now (Harvester's decisions), as pure functions.

Pull mode: keep `min_pilots` ready (zero allowed); with jobs waiting, launch pilots for the work
that no free payload slot covers (a slot free on a running pilot, or on a pilot launched and not
yet running), up to `max_pilots`: a pilot whose slots are all busy serves no waiting job, however
live it is (`uncovered`). Work is counted in cores as well as in jobs: a job takes one of its
pilot's slots and the cores it asks for, as the pilot does (skypanda.pilot: a worker thread per
slot, and a job starts once its cores are free), so an 8-core job held by a pilot of 8 cores
leaves it nothing free, and eight 8-core jobs waiting need eight such pilots. A pilot launched
here brings `slots_per_pilot` of each (one slot per core). At most `max_new_per_cycle` new
pilots per decision and never more than `max_queued` launched-but-not-yet-running (Harvester's
maxNewWorkersPerCycle, maxWorkers, nQueueLimitWorker). Push mode: one pilot per activated job
that has none, sized to it, within the same limits. Either backs off when recent pilots died or
never checked in.

The back-off is a pause that grows with the failures and ends: with `BACKOFF_FAILURES` pilots
missed or failed in the last `BACKOFF_WINDOW_S`, the queue launches nothing until
`backoff_pause_s(failures)` passed since the last of them (30 s, doubling with each further
failure, at most the window). As failures age out of the window the pause shrinks, so the
queue always tries again. Pilots that left because the server was unreachable are not
failures (they end `disconnected`), and an admin's `skypanda queues reset-backoff Q` forgets
the failures before it (ports.FleetStore.reset_backoff).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BACKOFF_FAILURES = 3
"""This many pilots missed or failed in the window: pause launching."""
BACKOFF_WINDOW_S = 600.0
"""Failures older than this are forgotten."""
BACKOFF_PAUSE_S = 30.0
"""The pause after the BACKOFF_FAILURES-th failure; each further one doubles it."""


@dataclass(frozen=True)
class Work:
    """Jobs, and the cores they ask for (the scaler's counts: held by pilots, or waiting)."""

    jobs: int
    cores: int


@dataclass(frozen=True)
class QueueState:
    """What the scaler knows of a queue now. The core counts left out (None) are the job
    counts: work of 1-core jobs, pilots with one slot per core."""

    activated: int  # jobs waiting for a pilot
    submitted: int  # pilots launched, not yet registered (queued at the launcher)
    running: int  # pilots registered and live
    recent_failures: int = 0  # pilots missed or failed in the back-off window (since a reset)
    unserved: Sequence[str] = ()  # push mode: activated jobs without a pilot (ids, in order)
    paused_failures: int = 0  # of the recent failures, those within backoff_pause_s(recent)
    free_slots: int = 0  # pull mode: payload slots free on the running pilots (take a job now)
    slots_per_pilot: int = 1  # pull mode: the slots (= cores) a pilot launched here brings
    waiting_cores: int | None = None  # pull mode: the cores the `activated` jobs ask for
    free_cores: int | None = None  # pull mode: cores free on the running pilots

    @property
    def cores_waiting(self) -> int:
        return self.activated if self.waiting_cores is None else self.waiting_cores

    @property
    def cores_free(self) -> int:
        return self.free_slots if self.free_cores is None else self.free_cores

    @property
    def one_core(self) -> bool:
        """Whether cores count as jobs here (1-core work, pilots of one slot per core)."""
        return (self.cores_waiting, self.cores_free) == (self.activated, self.free_slots)


@dataclass(frozen=True)
class Decision:
    launch: int  # pull mode: new pilots
    push: tuple[str, ...]  # push mode: one new pilot for each of these jobs
    reason: str

    @property
    def total(self) -> int:
        return self.launch + len(self.push)


@dataclass(frozen=True)
class Limits:
    min_pilots: int
    max_pilots: int
    max_new_per_cycle: int
    max_queued: int


def _room(limits: Limits, state: QueueState) -> tuple[int, str]:
    """How many pilots may start now, and what bounds it."""
    live = state.submitted + state.running
    caps = {
        f"max_pilots {limits.max_pilots}": limits.max_pilots - live,
        f"max_new_per_cycle {limits.max_new_per_cycle}": limits.max_new_per_cycle,
        f"max_queued {limits.max_queued}": limits.max_queued - state.submitted,
    }
    name, room = min(caps.items(), key=lambda kv: kv[1])
    return max(0, room), name


def backoff_pause_s(failures: int) -> float:
    """How long to launch nothing after the last of `failures` recent failures: none below
    BACKOFF_FAILURES, then 30 s, 60 s, 120 s, ... at most the window."""
    if failures < BACKOFF_FAILURES:
        return 0.0
    doublings = min(failures - BACKOFF_FAILURES, 32)  # past the window anyway
    return float(min(BACKOFF_WINDOW_S, BACKOFF_PAUSE_S * 2**doublings))


def backing_off(state: QueueState) -> str | None:
    """Why the queue launches nothing now, or None: enough recent failures, the last of them
    within the pause they call for."""
    pause = backoff_pause_s(state.recent_failures)
    if pause and state.paused_failures:
        return (
            f"backing off: {state.recent_failures} pilots missed or failed in the last "
            f"{BACKOFF_WINDOW_S / 60:g} min; launching again {pause:g} s after the last one "
            f"(or after `skypanda queues reset-backoff`)"
        )
    return None


def uncovered(state: QueueState) -> int:
    """Waiting work that no free slot will take, in slots of a pilot launched here (one per
    core): the cores, or the jobs, that neither a running pilot's free cores and slots nor a
    pilot launched and not yet running covers, whichever is more. A busy pilot covers none.

    Free cores are summed over pilots: four free on each of two pilots count as eight, though
    no 8-core job fits either now (it starts once one of them has emptied)."""
    queued = state.submitted * max(1, state.slots_per_pilot)
    jobs = state.activated - max(0, state.free_slots) - queued
    cores = state.cores_waiting - max(0, state.cores_free) - queued
    return max(0, jobs, cores)


def decide_pull(limits: Limits, state: QueueState) -> Decision:
    """New pull-mode pilots: keep min_pilots, launch for the waiting work no free slot covers
    (one pilot per `slots_per_pilot` cores of it), within the caps."""
    why = backing_off(state)
    if why is not None:
        return Decision(0, (), why)
    live = state.submitted + state.running
    left = uncovered(state)
    per_pilot = max(1, state.slots_per_pilot)
    target = max(limits.min_pilots, min(limits.max_pilots, live + -(-left // per_pilot)))
    wanted = max(0, target - live)
    room, cap = _room(limits, state)
    n = min(wanted, room)
    base = _describe(state, left)
    if wanted == 0 and left:  # (only at max_pilots: below it, the target is above live)
        why = f"max_pilots {limits.max_pilots} reached, the rest wait for a slot"
        return Decision(0, (), f"{base}: enough (target {target}); {why}")
    if wanted == 0:
        return Decision(0, (), f"{base}: enough (target {target})")
    if n < wanted:
        return Decision(n, (), f"{base}: launch {n} of {wanted} wanted (capped by {cap})")
    return Decision(n, (), f"{base}: launch {n} (target {target})")


def _describe(state: QueueState, left: int) -> str:
    """What the pull decision saw: in jobs and slots for 1-core work, else in cores too."""
    if state.one_core:
        waiting = f"{state.activated} jobs waiting, {left} without a free slot"
        free = f"{state.free_slots} slots free"
    else:
        waiting = (
            f"{state.activated} jobs waiting ({state.cores_waiting} cores), "
            f"{left} cores without a free slot"
        )
        free = f"{state.cores_free} cores free"
        if state.free_slots != state.cores_free:
            free += f", {state.free_slots} slots"
    return f"{waiting}; pilots: {state.running} running ({free}) + {state.submitted} queued"


def decide_push(limits: Limits, state: QueueState) -> Decision:
    """Push mode: one pilot per activated job that has none, within the caps."""
    why = backing_off(state)
    if why is not None:
        return Decision(0, (), why)
    room, cap = _room(limits, state)
    jobs = tuple(state.unserved[:room])
    base = f"{len(state.unserved)} jobs without a pilot"
    if len(jobs) < len(state.unserved):
        return Decision(0, jobs, f"{base}: launch {len(jobs)} (capped by {cap})")
    return Decision(0, jobs, f"{base}: launch {len(jobs)}")
