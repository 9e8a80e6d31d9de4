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

LOG_BUFFER_MAX = 8 * 1024 * 1024
"""Output kept per job while the server is slow to take it; beyond this it is counted, dropped."""
STOP_CHECK_S = 0.25
"""How often waits that cannot be woken by an event check whether to stop."""


class HeldJob:
    """A job this pilot holds, from acquire until its final report is sent (or refused)."""

    def __init__(self, job: dict[str, Any]) -> None:
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
        self._out = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add_output(self, chunk: bytes) -> int:
        """Buffer output for the reporter; return how much is buffered."""
        with self._lock:
            room = LOG_BUFFER_MAX - len(self._out)
            self._out += chunk[:room] if room > 0 else b""
            self._dropped += max(0, len(chunk) - max(room, 0))
            return len(self._out)

    def buffered(self) -> int:
        with self._lock:
            return len(self._out)

    def take_text(self, *, final: bool) -> str:
        """The buffered output as text; only the reporter thread calls this (decoder state)."""
        with self._lock:
            data, dropped = bytes(self._out), self._dropped
            self._out.clear()
            self._dropped = 0
        self.flushed_at = time.monotonic()
        text = self._decoder.decode(data, final=final)
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
