"""A task's aggregates as the monitor shows them: its job counts by state, and its page's
charts (job counts by state over time, run times, memory used versus requested). Each is one
`Views` (or `TaskStore.job_counts`) call over the task's jobs, bounded by the port but growing
with the task up to that bound, so:

- a task of up to EMBED_JOBS jobs has its charts in its page, as JSON; a bigger task's page
  comes without them (it stays fast whatever the task's size) and fetches each chart by itself
  afterwards (`/ui/live/tasks/<id>/charts/<name>`);
- a settled task's answers (ended, and every job in a final state) never change until the task
  does (a retry moves it): they are kept (LRU, keyed by the task's state and update time);
  a running task's charts are kept ten seconds, so a page open in many browsers costs the store
  one read per chart per ten seconds. Live counts are never kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cachetools import LRUCache, TTLCache

from skypanda.api.monitor import shape
from skypanda.domain.errors import InvalidInput
from skypanda.domain.records import Task
from skypanda.domain.states import JOB_FINAL, TASK_FINAL
from skypanda.handlers.services import Services

EMBED_JOBS = 5_000
NAMES = ("timeline", "durations", "memory")
LIVE_TTL_S = 10.0
FINAL_JOB_STATES = frozenset(str(s) for s in JOB_FINAL)


def settled(task: Task, counts: Mapping[str, int]) -> bool:
    """Ended, with every job in a final state: nothing about it changes until a retry."""
    return task.status in TASK_FINAL and all(s in FINAL_JOB_STATES for s, n in counts.items() if n)


class TaskCharts:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._kept: LRUCache[tuple[Any, ...], Any] = LRUCache(4096)
        self._recent: TTLCache[tuple[Any, ...], Any] = TTLCache(
            512, LIVE_TTL_S, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def forget(self) -> None:
        """Drop everything kept (a benchmark's first views)."""
        with self._lock:
            self._kept.clear()
            self._recent.clear()

    def counts(self, task: Task) -> dict[str, int]:
        """The task's job counts by state (kept once it is settled)."""
        key = (task.id, "counts", str(task.status), task.updated_at)
        with self._lock:
            hit = self._kept.get(key)
        if hit is not None:
            return dict(hit)
        counts = {str(k): v for k, v in self.svc.tasks.job_counts(task.id).items()}
        if settled(task, counts):
            with self._lock:
                self._kept[key] = counts
        return counts

    def embedded(self, task: Task) -> dict[str, Any]:
        """The charts a task's page carries: all of a small task's, none of a big one's."""
        if task.n_jobs > EMBED_JOBS:
            return dict.fromkeys(NAMES)
        return {name: self.chart(task, name) for name in NAMES}

    def chart(self, task: Task, name: str) -> Any:
        """Raises: InvalidInput for a chart there is not."""
        if name not in NAMES:
            raise InvalidInput(f"no chart {name!r}; there are {', '.join(NAMES)}")
        key = (task.id, name, str(task.status), task.updated_at)
        with self._lock:
            hit = self._kept.get(key, self._recent.get(key))
        if hit is not None:
            return hit
        value = self._compute(task.id, name)
        keep = settled(task, self.counts(task))
        with self._lock:
            (self._kept if keep else self._recent)[key] = value
        return value

    def _compute(self, task_id: str, name: str) -> Any:
        v = self.svc.store
        make: dict[str, Callable[[], Any]] = {
            "timeline": lambda: shape.timeline_chart(v.state_timeline(task_id, points=60)),
            "durations": lambda: shape.bars(v.duration_histogram(task_id), shape.duration_label),
            "memory": lambda: [
                {"requested": p.requested_mb, "used": p.used_mb, "job": p.job_id}
                for p in v.memory_use(task_id, limit=500)
            ],
        }
        return make[name]()
