"""MetricsReader on Firestore: aggregation queries (`count()`), run in parallel.

Firestore has no GROUP BY, so the groups are enumerated: each final job status with each known
error code (`wire.codes.ErrorCode`) and none, each queue's activated jobs, each queue's pilots
by status. A code outside the known ones is counted in its status's total and reported as
`error_code=-1` ("other"): the totals stay exact. Each count is billed one read per 1000 index
entries it counts (equality filters on single-field indexes, merged by Firestore): a scrape at
a million ended jobs costs about a thousand reads, so scrape it every minute, not every second.
"""

from __future__ import annotations

from skypanda.adapters.gcp.firestore.base import FirestoreBase, count, eq, where
from skypanda.domain.states import JOB_FINAL, JobStatus, PilotStatus
from skypanda.ports.metrics import FleetCount, JobEndCount, StoreCounts
from skypanda.wire.codes import ErrorCode

OTHER_CODE = -1
"""The error code reported for ends whose code is not one of `ErrorCode`."""


class MetricsPart(FirestoreBase):
    def metric_counts(self) -> StoreCounts:
        queues = sorted(s.id for s in self._stream("metric_counts", self._queues.select([])))
        codes: list[int | None] = [None, *(int(c) for c in ErrorCode)]
        finals = sorted(JOB_FINAL)
        ends = [(s, c) for s in finals for c in codes]
        fleet = [(q, s) for q in queues for s in PilotStatus]
        jobs, pilots = self._jobs, self._pilots
        activated_ = eq("status", str(JobStatus.ACTIVATED))
        queries = [
            *(where(jobs, eq("status", str(s)), eq("error_code", c)) for s, c in ends),
            *(where(jobs, eq("status", str(s))) for s in finals),
            *(where(jobs, eq("queue", q), activated_) for q in queues),
            *(where(pilots, eq("queue", q), eq("status", str(s))) for q, s in fleet),
        ]
        with self._backend("metric_counts"):
            found = list(self._pool.map(count, queries))
        by_end, totals = found[: len(ends)], found[len(ends) : len(ends) + len(finals)]
        rest = found[len(ends) + len(finals) :]
        job_ends = [JobEndCount(s, c, n) for (s, c), n in zip(ends, by_end, strict=True) if n]
        for status, total in zip(finals, totals, strict=True):
            other = total - sum(e.count for e in job_ends if e.status is status)
            if other > 0:
                job_ends.append(JobEndCount(status, OTHER_CODE, other))
        activated = dict(zip(queues, rest[: len(queues)], strict=True))
        by_state = zip(fleet, rest[len(queues) :], strict=True)
        states = tuple(FleetCount(q, s, n) for (q, s), n in by_state if n)
        return StoreCounts(job_ends=tuple(job_ends), activated=activated, pilots=states)
