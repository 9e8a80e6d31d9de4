"""Simulated pilots: drive workflows through the real handlers without running payloads.

Each round, every pilot acquires a batch of jobs through `dispatch.acquire` and reports them
ended through `dispatch.update` (so claims, reports, outbox, release, rollups and the workflow
planner all run as in production); the outbox is delivered synchronously between rounds.
Used by `skypanda bench dag` (so the figure is the engine's, not the payloads') and by tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from skypanda.domain.models import Job, JobReport, Resources
from skypanda.domain.states import JobStatus
from skypanda.handlers import dispatch
from skypanda.handlers.services import Services
from skypanda.runtime.router import Router

Outcome = Callable[[Job], tuple[JobStatus, dict[str, str]]]


def all_finish(job: Job) -> tuple[JobStatus, dict[str, str]]:
    return JobStatus.FINISHED, {}


@dataclass
class SimStats:
    rounds: int = 0
    reported: int = 0


class SimulatedPilots:
    """`pilots` pilots on `queue`, each taking up to `batch` jobs per round."""

    def __init__(
        self,
        svc: Services,
        router: Router,
        queue: str,
        *,
        pilots: int = 1,
        batch: int = 500,
        outcome: Outcome = all_finish,
        shuffle: random.Random | None = None,
    ) -> None:
        self.svc = svc
        self.router = router
        self.batch = batch
        self.outcome = outcome
        self.shuffle = shuffle
        self.stats = SimStats()
        capacity = Resources(memory_mb=4_000_000, cores=1024)
        self.pilots = [
            dispatch.register(
                svc, pilot_id=None, queue=queue, host="sim", pid=None, resources=capacity,
                version="sim",
            )[0].id
            for _ in range(pilots)
        ]  # fmt: skip

    def round(self) -> int:
        """One round: deliver events, then every pilot acquires and reports. Returns jobs run."""
        self.router.drain()
        ran = 0
        for pilot in self.pilots:
            jobs = dispatch.acquire(self.svc, pilot, self.batch)
            if not jobs:
                continue
            if self.shuffle is not None:
                self.shuffle.shuffle(jobs)
            reports = []
            for job in jobs:
                status, flags = self.outcome(job)
                failed = status is JobStatus.FAILED
                reports.append(
                    JobReport(
                        job_id=job.id, attempt=job.attempt, status=status,
                        exit_code=1 if failed else 0,
                        flags=flags,
                    )
                )  # fmt: skip
            dispatch.update(self.svc, pilot, reports, {})
            self.stats.reported += len(reports)
            ran += len(jobs)
        self.stats.rounds += 1
        return ran

    def run(self, done: Callable[[], bool], max_idle_rounds: int = 3) -> SimStats:
        """Rounds until `done()` holds after a round that ran nothing (or idle rounds pile up).

        Raises:
            RuntimeError: nothing runs any more and `done()` does not hold (a stuck workflow).
        """
        idle = 0
        while True:
            ran = self.round()
            if ran:
                idle = 0
                continue
            self.router.drain()
            if done():
                return self.stats
            idle += 1
            if idle >= max_idle_rounds:
                raise RuntimeError(f"stuck after {self.stats.rounds} rounds: nothing to run")
