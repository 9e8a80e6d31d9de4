"""What a pilot holds: its jobs (HeldJob, Registry) and its free cores (Cores).

They are shared by the pilot's threads (main, workers, reporter, heartbeat). Standard library
only (the pilot ships as a zipapp).
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable
from typing import Any

from skypanda.pilot.logcap import DEFAULT_CAP_MB, MB, CappedLog

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
        self.started = False
        self.ended = False
        self.abandoned = False  # the server refused a report: never report this attempt again
        self.flushed_at = time.monotonic()
        self.log = CappedLog(log_cap)  # this attempt's output, capped (see `logcap`)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

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
    """The jobs the pilot holds, shared by all threads; `on_remove` wakes whoever waits."""

    def __init__(self, on_remove: Callable[[], None]) -> None:
        self._jobs: dict[str, HeldJob] = {}
        self._lock = threading.Lock()
        self._on_remove = on_remove

    def add(self, held: HeldJob) -> None:
        with self._lock:
            self._jobs[held.id] = held

    def get(self, job_id: str) -> HeldJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
        self._on_remove()

    def snapshot(self) -> list[HeldJob]:
        with self._lock:
            return list(self._jobs.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)


class Cores:
    """Cores free on the pilot, so that concurrent multi-core jobs do not oversubscribe it.

    Memory is not gated here: the server only sends jobs that fit the pilot, and payloads
    rarely use all they ask for. A job asking more cores than the pilot has gets them all.
    """

    def __init__(self, total: int) -> None:
        self._total = total
        self._used = 0
        self._cond = threading.Condition()

    def take(self, cores: int, abort: Callable[[], bool]) -> int | None:
        """Wait until the job fits; return the cores taken, or None if `abort()` said stop."""
        need = max(1, min(cores, self._total))
        with self._cond:
            while True:
                if abort():
                    return None
                if self._used + need <= self._total:
                    self._used += need
                    return need
                self._cond.wait(STOP_CHECK_S)

    def give(self, cores: int) -> None:
        with self._cond:
            self._used -= cores
            self._cond.notify_all()
