"""What a pilot holds: its jobs (HeldJob, Registry) and its free cores (Cores), and which of
its jobs to give back (`take_back`).

They are shared by the pilot's threads (main, workers, reporter, heartbeat). Standard library
only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from skypanda.pilot.logcap import DEFAULT_CAP_MB, MB, CappedLog
from skypanda.pilot.pacing import GIVE_BACK_AFTER_S, cores_give_back, give_back_count

STOP_CHECK_S = 0.25
"""How often waits that cannot be woken by an event check whether to stop."""


class HeldJob:
    """A job this pilot holds, from acquire until its final report is sent (or refused)."""

    def __init__(self, job: dict[str, Any], log_cap: int = DEFAULT_CAP_MB * MB) -> None:
        self.job = job
        self.id = str(job["id"])
        self.attempt = int(job.get("attempt") or 1)
        resources = job.get("resources") or {}
        self.cores = int(resources.get("cores") or 1)
        self.stop_code: int | None = None  # set on the server's kill or a refused report
        self.started_at: float | None = None  # monotonic: when a worker took it (`started`)
        self.future: Future[None] | None = None  # its run in the worker pool, once queued there
        self.ended = False
        self.given_back = False  # withdrawn while waiting for cores (`Cores.withdraw`)
        self.abandoned = False  # the server refused a report: never report this attempt again
        self.flushed_at = time.monotonic()
        self.log = CappedLog(log_cap)  # this attempt's output, capped (see `logcap`)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def started(self) -> bool:
        """A worker took the job (its cores, then stage-in and the payload)."""
        return self.started_at is not None

    @started.setter
    def started(self, value: bool) -> None:
        self.started_at = time.monotonic() if value else None

    def add_output(self, chunk: bytes) -> int:
        """Take output for the reporter; return how much is ready to send."""
        return self.log.add(chunk)

    def buffered(self) -> int:
        return self.log.pending()

    def take_text(self, limit: int) -> str:
        """Up to `limit` bytes of output as text; only the reporter thread calls this (decoder
        state). Once the log ended (`log.end()`), the last take flushes the decoder."""
        data, dropped, last = self.log.take(limit)
        self.flushed_at = time.monotonic()
        text = self._decoder.decode(data, final=last)
        if dropped:
            text += f"[skypanda-pilot] {dropped} bytes of output dropped (server too slow)\n"
        return text


class Registry:
    """The jobs the pilot holds, shared by all threads; `on_empty` wakes whoever waits for
    the last one to go (called when a removal leaves none)."""

    def __init__(self, on_empty: Callable[[], None]) -> None:
        self._jobs: dict[str, HeldJob] = {}
        self._lock = threading.Lock()
        self._on_empty = on_empty

    def add(self, held: HeldJob) -> None:
        with self._lock:
            self._jobs[held.id] = held

    def get(self, job_id: str) -> HeldJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
            empty = not self._jobs
        if empty:
            self._on_empty()

    def snapshot(self) -> list[HeldJob]:
        with self._lock:
            return list(self._jobs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def running_for(self) -> tuple[int, float]:
        """How many jobs a worker took and has not ended, and the longest time one has run."""
        now = time.monotonic()
        ages = [
            now - h.started_at for h in self.snapshot() if h.started_at is not None and not h.ended
        ]
        return len(ages), max(ages, default=0.0)


def take_back(registry: Registry, slots: int, cores: Cores | None = None) -> list[HeldJob]:
    """The held jobs to give back now: those beyond the free slots (`pacing.give_back_count`),
    of those no worker took, the last acquired first, each withdrawn from the worker pool (a
    cancelled future never runs), so the caller may report them as never started; a job a
    worker is about to take cannot be withdrawn: it stays. With `cores`, also those waiting
    for cores that the running payloads hold (`pacing.cores_give_back`), withdrawn from the
    pool or, when a worker waits with them for cores, from `cores` (`Cores.withdraw`)."""
    running, longest = registry.running_for()
    if not running:
        return []
    waiting = [h for h in registry.snapshot() if not h.started and not h.ended]
    n = give_back_count(
        waiting=len(waiting), running=running, slots=slots, longest_running_s=longest
    )
    taken: list[HeldJob] = []
    for held in reversed(waiting):
        if len(taken) == n:
            break
        if held.future is not None and held.future.cancel():
            taken.append(held)
    if cores is None or longest < GIVE_BACK_AFTER_S:
        return taken
    left = [h for h in waiting if h not in taken]
    back = cores_give_back(
        waiting_cores=[cores.need(h.cores) for h in left],
        free_cores=cores.free,
        longest_running_s=longest,
    )
    for held in (left[i] for i in back):
        if held.future is not None and (held.future.cancel() or cores.withdraw(held)):
            taken.append(held)
    return taken


def cores_held(registry: Registry, cores: Cores) -> int:
    """The cores of the jobs the pilot holds and has not ended (running or waiting to)."""
    return sum(cores.need(h.cores) for h in registry.snapshot() if not h.ended)


class Cores:
    """Cores free on the pilot, so that concurrent multi-core jobs do not oversubscribe it.

    Memory is not gated here: the server only sends jobs that fit the pilot, and payloads
    rarely use all they ask for. A job asking more cores than the pilot has gets them all.
    """

    def __init__(self, total: int) -> None:
        self._total = total
        self._used = 0
        self._cond = threading.Condition()

    @property
    def total(self) -> int:
        return self._total

    @property
    def free(self) -> int:
        """The cores no started job holds now."""
        with self._cond:
            return self._total - self._used

    def need(self, cores: int) -> int:
        """The cores a job asking for `cores` takes here."""
        return max(1, min(cores, self._total))

    def take(self, held: HeldJob, abort: Callable[[], bool]) -> int | None:
        """Wait until the job fits, then mark it started; return the cores taken, or None if
        `abort()` said stop or the job was withdrawn (`withdraw`, `HeldJob.given_back`)."""
        need = self.need(held.cores)
        with self._cond:
            while True:
                if held.given_back or abort():
                    return None
                if self._used + need <= self._total:
                    self._used += need
                    held.started = True  # under the lock: `withdraw` sees it
                    return need
                self._cond.wait(STOP_CHECK_S)

    def withdraw(self, held: HeldJob) -> bool:
        """Withdraw a job that has not taken its cores (its worker may wait for them in
        `take`, which then returns None): True if withdrawn, False if it has started."""
        with self._cond:
            if held.started or held.ended:
                return False
            held.given_back = True
            self._cond.notify_all()
            return True

    def give(self, cores: int) -> None:
        with self._cond:
            self._used -= cores
            self._cond.notify_all()
