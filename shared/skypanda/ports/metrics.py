"""What the metrics read from a store: counts the store is the truth of, read at scrape time.

`api.metrics` serves them as Prometheus gauges (`GET /metrics`). No read walks the campaign's
jobs: SQLite keeps the ended jobs' counts in a rollup table (triggers, in the jobs' own
transactions) and reads queue depth and pilots from partial and covering indexes; Firestore
runs aggregation queries (`count()`, billed per 1000 index entries). See each adapter for its
query plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from skypanda.domain.states import JobStatus, PilotStatus

__all__ = ["FleetCount", "JobEndCount", "MetricsReader", "StoreCounts"]


@dataclass(frozen=True)
class JobEndCount:
    """Jobs that ended with `status` and `error_code` (None: no error code)."""

    status: JobStatus
    error_code: int | None
    count: int


@dataclass(frozen=True)
class FleetCount:
    """Pilots of `queue` in `status`."""

    queue: str
    status: PilotStatus
    count: int


@dataclass(frozen=True)
class StoreCounts:
    """One scrape's worth of counts."""

    job_ends: tuple[JobEndCount, ...]
    activated: dict[str, int]
    """Queue depth: activated jobs (ready, waiting for a pilot) by queue; every known queue is
    there, with 0 when none waits."""
    pilots: tuple[FleetCount, ...]


class MetricsReader(Protocol):
    def metric_counts(self) -> StoreCounts:
        """Jobs ended by (status, error code), activated jobs by queue, pilots by (queue,
        status): what the store holds now.

        Raises:
            BackendUnavailable: the store could not be read.
        """
        ...
