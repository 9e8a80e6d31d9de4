"""What `skypanda bench chaos` checks once its run is over, from two independent witnesses: the
payloads' own records (`chaos_payload`: every run of every job, with its times and whether
another run of the job was alive when it started) and the server's database (jobs, attempts,
tasks, pilots, outbox), read directly with SQLite after every process stopped.

The checks:

- every job and task ended (a final state), and the counts agree: a task holds as many jobs
  as it says, `done` only when every job finished, each job's counted failures match its
  attempts' error codes, a finished job's last attempt ran to its end;
- duplicates: one attempt of a job run more than once;
- overlaps: a run that started while another run of the same job was alive (the job's lock
  was held, or an earlier run ended after it started);
- counted attempts, by cause: the pilot holding the attempt was SIGKILLed by the bench (a
  counted attempt, as documented: 9002), SIGTERMed (never counted: 1201), the attempt ended
  during or just after a server outage (it should never count), or none of those;
- `PRAGMA integrity_check` answers `ok`; no event is parked dead in the outbox.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skypanda.domain.states import JOB_FINAL, TASK_FINAL, JobStatus, TaskStatus
from skypanda.wire.codes import NOT_COUNTED, ErrorCode

PILOT_SIGKILL, PILOT_SIGTERM = "pilot_sigkill", "pilot_sigterm"
SERVER_SIGKILL, REDELIVER = "server_sigkill", "redeliver"
FAULT_KINDS = (PILOT_SIGKILL, PILOT_SIGTERM, SERVER_SIGKILL, REDELIVER)
OUTAGE, OTHER = "outage", "other"
CAUSES = (PILOT_SIGKILL, PILOT_SIGTERM, OUTAGE, OTHER)
"""What a counted attempt can be put down to (`cause`)."""
REAP_S = 2.0
"""The local launcher looks for dead pilots at every tick (1 s) and kills what they left
running: a payload still running this long after its pilot's SIGKILL was left alone."""


@dataclass(frozen=True)
class Fault:
    """One fault the bench injected: when (epoch seconds), on what (a pilot id, the server's
    pid, the outbox rows), and for a server kill when the next server answered."""

    kind: str
    at: float
    target: str = ""
    back_at: float | None = None
    count: int = 1


@dataclass
class Run:
    """One run of a payload, from its record lines (`end` None: it never said how it ended,
    i.e. it was SIGKILLed)."""

    job: str
    attempt: int
    pilot: str
    pid: int
    start: float
    end: float | None = None
    how: str = ""
    lock: str = "alone"


@dataclass
class Database:
    """What the checks read of the server's database."""

    integrity: str
    jobs: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    pilots: Counter[str]
    dead_events: int
    pending_events: int


@dataclass
class Findings:
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def read_runs(records: Path) -> list[Run]:
    """Every run recorded under `records` (see chaos_payload for the line format)."""
    runs: dict[tuple[str, int, int], Run] = {}
    for path in sorted(records.glob("*.rec")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 8:
                continue  # a line cut by a crash of the machine: never by a killed payload
            kind, job, attempt, pilot, pid, start, end, lock = parts
            key = (job, int(attempt), int(pid))
            run = runs.setdefault(key, Run(job, int(attempt), pilot, int(pid), float(start)))
            run.lock = "overlap" if "overlap" in (run.lock, lock) else "alone"
            if kind in ("end", "term"):
                run.end, run.how = float(end), kind
    return sorted(runs.values(), key=lambda r: (r.job, r.start))


def read_database(path: Path) -> Database:
    """Read the database of a stopped server (its integrity first)."""
    db = sqlite3.connect(path, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        integrity = "; ".join(str(r[0]) for r in db.execute("PRAGMA integrity_check"))

        def rows(sql: str) -> list[dict[str, Any]]:
            return [dict(r) for r in db.execute(sql)]

        pilots = Counter(str(r["status"]) for r in db.execute("SELECT status FROM pilots"))
        outbox = db.execute(
            "SELECT COALESCE(SUM(dead), 0), "
            "COALESCE(SUM(delivered_at IS NULL AND dead = 0), 0) FROM outbox"
        ).fetchone()
        return Database(
            integrity=integrity,
            jobs=rows("SELECT id, task_id, status, attempt, failures, max_attempts FROM jobs"),
            attempts=rows(
                "SELECT job_id, attempt, pilot_id, status, error_code, ended_at FROM attempts"
            ),
            tasks=rows(
                "SELECT t.id, t.status, t.n_jobs, COUNT(j.id) AS made, "
                "COALESCE(SUM(j.status = 'finished'), 0) AS finished "
                "FROM tasks t LEFT JOIN jobs j ON j.task_id = t.id GROUP BY t.id"
            ),
            pilots=pilots,
            dead_events=int(outbox[0]),
            pending_events=int(outbox[1]),
        )
    finally:
        db.close()


# -- the checks: pure functions over what was read ------------------------------------------


def duplicates(runs: list[Run]) -> list[str]:
    """Attempts run more than once: one line per extra run."""
    seen = Counter((r.job, r.attempt) for r in runs)
    return [f"job {j} attempt {a} ran {n} times" for (j, a), n in sorted(seen.items()) if n > 1]


def overlaps(runs: list[Run]) -> list[str]:
    """Runs that started while another run of the same job was alive: it held the job's lock,
    or it had started earlier and recorded an end after this one's start."""
    by_job: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_job[run.job].append(run)
    found = []
    for job, job_runs in sorted(by_job.items()):
        for i, run in enumerate(job_runs):
            earlier = [e for e in job_runs[:i] if e.end is not None and e.end > run.start]
            if run.lock == "overlap" or earlier:
                found.append(
                    f"job {job} attempt {run.attempt} (pilot {run.pilot}) started at "
                    f"{run.start:.3f} while another run of it was alive"
                )
    return found


def outlived(runs: list[Run], faults: list[Fault]) -> list[Run]:
    """Runs that went on after their pilot was SIGKILLed and ended more than REAP_S later:
    nobody killed the dead pilot's payload (its work is lost; one that outlives the heartbeat
    timeout overlaps the job's next attempt)."""
    killed = {f.target: f.at for f in faults if f.kind == PILOT_SIGKILL}
    return [r for r in runs if r.start < killed.get(r.pilot, 0) < (r.end or 0) - REAP_S]


def counted(code: int | None) -> bool:
    """Whether an attempt that ended with `code` counts against max_attempts."""
    return code is not None and code not in NOT_COUNTED


def cause(attempt: dict[str, Any], faults: list[Fault], grace_s: float) -> str:
    """Why a counted attempt ended: the bench killed its pilot (SIGKILL or SIGTERM), it ended
    during a server outage or within `grace_s` of the server's return, or none of those."""
    pilot = attempt["pilot_id"] or ""
    for fault in faults:
        if fault.kind in (PILOT_SIGKILL, PILOT_SIGTERM) and fault.target == pilot:
            return fault.kind
    ended = attempt["ended_at"]
    for fault in faults:
        if fault.kind == SERVER_SIGKILL and ended is not None:
            back = fault.back_at if fault.back_at is not None else float("inf")
            if fault.at <= ended <= back + grace_s:
                return OUTAGE
    return OTHER


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def check_jobs(db: Database, runs: list[Run]) -> list[str]:
    """Every job ended, and what the database says of it agrees with its runs."""
    problems = []
    attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in db.attempts:
        attempts[row["job_id"]].append(row)
    ran_to_end = {(r.job, r.attempt) for r in runs if r.how == "end"}
    last_run: dict[str, int] = {}
    for run in runs:
        last_run[run.job] = max(last_run.get(run.job, 0), run.attempt)
    for job in db.jobs:
        status, rows = JobStatus(job["status"]), attempts[job["id"]]
        if status not in JOB_FINAL:
            problems.append(f"job {job['id']} did not end: {status}")
        n_counted = sum(counted(a["error_code"]) for a in rows)
        if n_counted != job["failures"]:
            problems.append(
                f"job {job['id']}: {job['failures']} failures counted, {n_counted} attempts "
                "ended with a counted error code"
            )
        if status is JobStatus.FINISHED and (job["id"], job["attempt"]) not in ran_to_end:
            problems.append(
                f"job {job['id']} finished, but no run of attempt {job['attempt']} ran to its end"
            )
        if last_run.get(job["id"], 0) > job["attempt"]:
            problems.append(
                f"job {job['id']} ran attempt {last_run[job['id']]}, but is at {job['attempt']}"
            )
    return problems


def check_tasks(db: Database) -> list[str]:
    """Every task ended, with as many jobs as it says, `done` exactly when all finished."""
    problems = []
    for task in db.tasks:
        status = TaskStatus(task["status"])
        if status not in TASK_FINAL:
            problems.append(f"task {task['id']} did not end: {status}")
        if task["made"] != task["n_jobs"]:
            problems.append(f"task {task['id']} has {task['made']} jobs of {task['n_jobs']}")
        all_finished = task["finished"] == task["made"]
        if (status is TaskStatus.DONE) != all_finished:
            problems.append(
                f"task {task['id']} is {status} with {task['finished']} of {task['made']} "
                "jobs finished"
            )
    return problems


def analyse(db: Database, runs: list[Run], faults: list[Fault], grace_s: float) -> Findings:
    """The figures of a run and the problems found (empty: every check passed)."""
    found = Findings()
    dupes, overlapping = duplicates(runs), overlaps(runs)
    statuses = Counter(str(j["status"]) for j in db.jobs)
    counted_rows = [a for a in db.attempts if counted(a["error_code"])]
    causes = Counter(cause(a, faults, grace_s) for a in counted_rows)
    uncounted = Counter(
        _code_name(a["error_code"])
        for a in db.attempts
        if a["error_code"] is not None and not counted(a["error_code"])
    )
    injected = Counter(f.kind for f in faults)
    found.figures = {
        "faults": {kind: injected.get(kind, 0) for kind in FAULT_KINDS},
        "events_redelivered": sum(f.count for f in faults if f.kind == REDELIVER),
        "jobs": len(db.jobs),
        "tasks": len(db.tasks),
        "jobs_by_status": dict(sorted(statuses.items())),
        "finished": statuses.get(JobStatus.FINISHED, 0),
        "failed": statuses.get(JobStatus.FAILED, 0),
        "not_ended": sum(JobStatus(j["status"]) not in JOB_FINAL for j in db.jobs),
        "runs": len(runs),
        "runs_sigkilled": sum(r.how == "" for r in runs),
        "runs_sigtermed": sum(r.how == "term" for r in runs),
        "runs_outliving_pilot": len(outlived(runs, faults)),
        "duplicates": len(dupes),
        "overlaps": len(overlapping),
        "attempts": sum(j["attempt"] for j in db.jobs),
        "attempts_not_run": sum(j["attempt"] for j in db.jobs)
        - len({(r.job, r.attempt) for r in runs}),
        "attempts_counted": sum(j["failures"] for j in db.jobs),
        "counted_by_cause": {k: causes.get(k, 0) for k in CAUSES},
        "attempts_from_outages": causes.get(OUTAGE, 0),
        "attempts_uncounted": dict(sorted(uncounted.items())),
        "pilots_by_status": dict(sorted(db.pilots.items())),
        "dead_events": db.dead_events,
        "pending_events": db.pending_events,
        "integrity": db.integrity,
    }
    inconsistent = [*check_jobs(db, runs), *check_tasks(db)]
    found.figures["consistent"] = not inconsistent
    found.problems = [*dupes, *overlapping, *inconsistent]
    if db.integrity != "ok":
        found.problems.append(f"integrity check: {db.integrity}")
    if db.dead_events:
        found.problems.append(f"{db.dead_events} events parked dead in the outbox")
    return found
