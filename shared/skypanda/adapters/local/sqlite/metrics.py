"""MetricsReader on SQLite: three small reads, none of which grows with the campaign's jobs.

- jobs ended, by (status, error code), and queue depth (activated jobs by queue): rollup
  tables, `job_end_counts` and `queue_depth`, kept by triggers on `jobs` in the same
  transaction as every change of a job's status, error code or queue (a job enters a final
  state: +1 to its group; leaves one, as a retried job does: -1; likewise for activated). A
  scrape reads a few dozen rows (`SCAN job_end_counts`, `SCAN queue_depth`) instead of
  counting jobs: at a million jobs a grouped count of the ended ones over a covering index took
  1-2 s, and counting 30,000 activated jobs through their partial index 50-350 ms
  (BENCHMARKS.md); the rollups take well under a millisecond. The triggers add one upsert on
  a tiny table to the writes that move a job into or out of those states (a claim, an end).
  The tables are made, and filled from the jobs already there, the first time a store opens a
  database without them, in one write transaction (a second process opening it meanwhile
  waits, then finds them made);
- pilots: `SCAN pilots USING COVERING INDEX pilots_by_queue` (queue, status).

tests/contract/test_metrics.py holds the reads to these plans and the rollup to the jobs' own
count through every change a job goes through.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from skypanda.adapters.local.sqlite.db import FINAL, SqliteDb
from skypanda.domain.states import JobStatus, PilotStatus
from skypanda.ports.metrics import FleetCount, JobEndCount, StoreCounts

NO_CODE = -1
"""`job_end_counts.code` of jobs that ended without an error code (codes are >= 0)."""

_FINAL = ", ".join(f"'{s}'" for s in FINAL)  # statuses are enum values: no quoting issue
_CODE = f"ifnull(%s.error_code, {NO_CODE})"
_ACTIVATED = str(JobStatus.ACTIVATED)
ROLLUP = f"""
CREATE TABLE job_end_counts (
    status TEXT NOT NULL,
    code INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (status, code)
) WITHOUT ROWID;
CREATE TRIGGER job_ends_insert AFTER INSERT ON jobs WHEN new.status IN ({_FINAL})
BEGIN
    INSERT INTO job_end_counts VALUES (new.status, {_CODE % "new"}, 1)
        ON CONFLICT (status, code) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER job_ends_update AFTER UPDATE OF status, error_code ON jobs
    WHEN old.status IN ({_FINAL}) OR new.status IN ({_FINAL})
BEGIN
    UPDATE job_end_counts SET n = n - 1
        WHERE old.status IN ({_FINAL}) AND status = old.status AND code = {_CODE % "old"};
    INSERT INTO job_end_counts SELECT new.status, {_CODE % "new"}, 1 WHERE new.status IN ({_FINAL})
        ON CONFLICT (status, code) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER job_ends_delete AFTER DELETE ON jobs WHEN old.status IN ({_FINAL})
BEGIN
    UPDATE job_end_counts SET n = n - 1 WHERE status = old.status AND code = {_CODE % "old"};
END;
INSERT INTO job_end_counts
    SELECT status, {_CODE % "jobs"}, count(*) FROM jobs WHERE status IN ({_FINAL})
    GROUP BY status, error_code;

CREATE TABLE queue_depth (queue TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TRIGGER queue_depth_insert AFTER INSERT ON jobs WHEN new.status = '{_ACTIVATED}'
BEGIN
    INSERT INTO queue_depth VALUES (new.queue, 1) ON CONFLICT (queue) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER queue_depth_update AFTER UPDATE OF status, queue ON jobs
    WHEN old.status = '{_ACTIVATED}' OR new.status = '{_ACTIVATED}'
BEGIN
    UPDATE queue_depth SET n = n - 1 WHERE old.status = '{_ACTIVATED}' AND queue = old.queue;
    INSERT INTO queue_depth SELECT new.queue, 1 WHERE new.status = '{_ACTIVATED}'
        ON CONFLICT (queue) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER queue_depth_delete AFTER DELETE ON jobs WHEN old.status = '{_ACTIVATED}'
BEGIN
    UPDATE queue_depth SET n = n - 1 WHERE queue = old.queue;
END;
INSERT INTO queue_depth
    SELECT queue, count(*) FROM jobs WHERE status = '{_ACTIVATED}' GROUP BY queue;
"""
ENDS_SQL = "SELECT status, code, n FROM job_end_counts WHERE n > 0"
DEPTH_SQL = "SELECT queue, n FROM queue_depth"
PILOTS_SQL = "SELECT queue, status, count(*) AS n FROM pilots GROUP BY queue, status"
_MADE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue_depth'"
"""Made last by ROLLUP: when it is there, all of ROLLUP is (one transaction made it)."""


class SqliteMetrics(SqliteDb):
    def __init__(self, path: Path | str, **kw: Any) -> None:
        super().__init__(path, **kw)
        if not self._read(_MADE):
            with self._tx() as db:
                if db.execute(_MADE).fetchone() is None:  # another process may have made it
                    for statement in _statements(ROLLUP):
                        db.execute(statement)

    def metric_counts(self) -> StoreCounts:
        ends = tuple(
            JobEndCount(JobStatus(r["status"]), None if r["code"] == NO_CODE else r["code"], r["n"])
            for r in self._read(ENDS_SQL)
        )
        activated = {str(r["name"]): 0 for r in self._read("SELECT name FROM queues")}
        for r in self._read(DEPTH_SQL):
            activated[str(r["queue"])] = int(r["n"])
        pilots = tuple(
            FleetCount(str(r["queue"]), PilotStatus(r["status"]), int(r["n"]))
            for r in self._read(PILOTS_SQL)
        )
        return StoreCounts(job_ends=ends, activated=activated, pilots=pilots)


def _statements(script: str) -> list[str]:
    """`script`'s statements, one by one (`executescript` would commit the transaction)."""
    found, current = [], ""
    for line in script.strip().splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            found.append(current.strip())
            current = ""
    return found
