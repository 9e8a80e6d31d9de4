"""How skypanda's models are written as Firestore documents and read back, and the pure
decisions of the Firestore store (commit sizes, which claim candidates to pick, outbox seqs).

Plain dicts in and out, no I/O: the store decides where documents live and when they are
written. Fields that queries filter or order on are top-level scalars (`status`, `queue`,
`priority`, `memory_mb`, ...); free-form user data whose keys Firestore may refuse as field
names (a task's spec, a job's env, an event's data) is stored as a JSON string.
infra/FIRESTORE.md lists every field and which ones are indexed.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.domain.events import Event, EventType
from skypanda.domain.models import (
    Attempt,
    Job,
    OutputFile,
    Pilot,
    Queue,
    Resources,
    Task,
    TaskSpec,
)
from skypanda.domain.states import (
    JOB_FINAL,
    JOB_LIVE,
    JobStatus,
    PilotStatus,
    TaskStatus,
    WorkflowStatus,
)
from skypanda.domain.workflow import Workflow, WorkflowSpec
from skypanda.ports import JobChange

Doc = dict[str, Any]
T = TypeVar("T")
Snapshot = Any  # google.cloud.firestore.DocumentSnapshot

MAX_WRITES = 500  # Firestore's cap on writes in one commit (batch or transaction)
MAX_BYTES = 8 * 1024 * 1024  # stay well under the 10 MiB request limit
IN_LIMIT = 30  # values in one `in` filter


def fields(snap: Snapshot) -> Doc:
    """The fields of a snapshot known to exist."""
    d: Doc | None = snap.to_dict()
    assert d is not None, f"document {snap.id} vanished"
    return d


def eq(field: str, value: Any) -> FieldFilter:
    return FieldFilter(field, "==", value)


def is_in(field: str, values: Iterable[Any]) -> FieldFilter:
    return FieldFilter(field, "in", sorted(str(v) for v in values))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- tasks -----------------------------------------------------------------------------------------
def task_doc(task: Task) -> Doc:
    return {
        "name": task.spec.name,
        "owner": task.owner,
        "status": str(task.status),
        "reason": task.reason,
        "n_jobs": task.n_jobs,
        "spec": task.spec.model_dump_json(by_alias=True),
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "workflow_id": task.workflow_id,
        "iteration": task.iteration,
    }


def task_from(task_id: str, d: Mapping[str, Any], counts: dict[str, int]) -> Task:
    return Task(
        id=task_id,
        spec=TaskSpec.model_validate_json(d["spec"]),
        owner=d["owner"],
        status=TaskStatus(d["status"]),
        reason=d["reason"],
        n_jobs=d["n_jobs"],
        created_at=d["created_at"],
        updated_at=d["updated_at"],
        job_counts=counts,
        # Absent on tasks written before workflows existed.
        workflow_id=d.get("workflow_id"),
        iteration=d.get("iteration", 1),
    )


# -- workflows -------------------------------------------------------------------------------------
def workflow_doc(wf: Workflow) -> Doc:
    return {
        "name": wf.spec.name,
        "owner": wf.owner,
        "status": str(wf.status),
        "reason": wf.reason,
        "spec": wf.spec.model_dump_json(by_alias=True),
        "created_at": wf.created_at,
        "updated_at": wf.updated_at,
    }


def workflow_from(workflow_id: str, d: Mapping[str, Any]) -> Workflow:
    return Workflow(
        id=workflow_id,
        spec=WorkflowSpec.model_validate_json(d["spec"]),
        owner=d["owner"],
        status=WorkflowStatus(d["status"]),
        reason=d["reason"],
        created_at=d["created_at"],
        updated_at=d["updated_at"],
    )


# -- jobs ------------------------------------------------------------------------------------------
def job_doc(job: Job, live_attempt: Attempt | None = None) -> Doc:
    """A job as stored. `live_attempt` is the record of its live attempt, kept in the job
    document until the attempt ends (see `plan_changes`)."""
    r = job.resources
    return {
        "task_id": job.task_id,
        "index": job.index,
        "status": str(job.status),
        "attempt": job.attempt,
        "failures": job.failures,
        "max_attempts": job.max_attempts,
        "queue": job.queue,
        "owner": job.owner,
        "priority": job.priority,
        "memory_mb": r.memory_mb,
        "cores": r.cores,
        "walltime_s": float(r.walltime_s),
        "command": list(job.command),
        "inputs": list(job.inputs),
        "env": json.dumps(job.env),
        "parents": list(job.parents),
        "n_parents": len(job.parents),  # what `release_roots` queries (0: a root)
        "pilot_id": job.pilot_id,
        "kill_requested": job.kill_requested,
        "exit_code": job.exit_code,
        "error_code": job.error_code,
        "error_diag": job.error_diag,
        "log_uri": job.log_uri,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "live_attempt": None if live_attempt is None else live_attempt.model_dump_json(),
        "flags": json.dumps(job.flags),  # names are the payload's: JSON, like env
        "flagged": bool(job.flags),  # what `task_flags` queries
        "stage_in": job.stage_in,
        "output_patterns": list(job.output_patterns),
        "outputs": [o.model_dump() for o in job.outputs],  # maps with fixed keys
    }


def job_from(job_id: str, d: Mapping[str, Any]) -> Job:
    # model_construct: the document was validated when it was written (as SqliteStore does).
    return Job.model_construct(
        id=job_id,
        task_id=d["task_id"],
        owner=d.get("owner", "local"),
        index=d["index"],
        status=JobStatus(d["status"]),
        attempt=d["attempt"],
        failures=d["failures"],
        max_attempts=d["max_attempts"],
        queue=d["queue"],
        priority=d["priority"],
        resources=Resources(
            memory_mb=d["memory_mb"], cores=d["cores"], walltime_s=float(d["walltime_s"])
        ),
        command=list(d["command"]),
        inputs=list(d["inputs"]),
        env=json.loads(d["env"]),
        parents=list(d["parents"]),
        pilot_id=d["pilot_id"],
        kill_requested=bool(d["kill_requested"]),
        exit_code=d["exit_code"],
        error_code=d["error_code"],
        error_diag=d["error_diag"],
        log_uri=d["log_uri"],
        created_at=float(d["created_at"]),
        updated_at=float(d["updated_at"]),
        started_at=_float(d["started_at"]),
        ended_at=_float(d["ended_at"]),
        flags=flags_from(d),  # absent on jobs written before flags
        # The data-staging fields are absent on jobs written before them.
        stage_in=bool(d.get("stage_in", False)),
        output_patterns=list(d.get("output_patterns") or []),
        outputs=[OutputFile.model_validate(o) for o in d.get("outputs") or []],
    )


def sent_fields(pilot_id: str, now: float) -> Doc:
    """What a claim writes on a job: sent to the pilot now, results of any earlier attempt reset."""
    return {
        "status": str(JobStatus.SENT), "pilot_id": pilot_id, "updated_at": now,
        "started_at": now, "exit_code": None, "error_code": None, "error_diag": "",
        "log_uri": None, "ended_at": None, "live_attempt": None,
    }  # fmt: skip


def cancelled_fields(reason: str, now: float) -> Doc:
    """What killing a task writes on its queued jobs."""
    return {"status": str(JobStatus.CANCELLED), "error_diag": reason, "updated_at": now,
            "ended_at": now}  # fmt: skip


def retried_fields(attempt: int, now: float) -> Doc:
    """What a user's retry writes on a failed or cancelled job: a new attempt, waiting for its
    parents (defined), with the results of the last attempt cleared."""
    return {
        "status": str(JobStatus.DEFINED), "attempt": attempt + 1, "failures": 0,
        "pilot_id": None, "kill_requested": False, "exit_code": None, "error_code": None,
        "error_diag": "", "log_uri": None, "started_at": None, "ended_at": None,
        "live_attempt": None, "flags": "{}", "flagged": False, "updated_at": now,
    }  # fmt: skip


def choose(window: Sequence[T], need: int, losses: int) -> list[T]:
    """Which candidates of a claim's window to commit: the head of the window (dispatch order)
    until a race was lost, then a random `need` of it, so that competing pilots spread over the
    window instead of colliding on its head. (Picks are committed each on its own, so a lost
    pick costs nothing but itself: no reason to commit fewer than `need`.)"""
    if not losses:
        return list(window[:need])
    return random.sample(list(window), min(len(window), need))


def claim_window(n: int, losses: int = 0) -> int:
    """How many candidates a claim of `n` jobs queries (each one returned is a billed read).

    Exactly `n` until a race was lost: the first picks are the head anyway, so more would be
    read for nothing by a lone pilot. After a lost race, room to spread competing pilots,
    wider after each further loss (more pilots compete than the window spreads), bounded so
    that a claim does not read far past what it takes."""
    if not losses:
        return n
    return n + min(max(n // 4, 2) << min(losses, 6), 200)


# -- job dependencies ------------------------------------------------------------------------------
FINAL = frozenset(str(s) for s in JOB_FINAL)
BAD_ENDS = sorted(FINAL - {str(JobStatus.FINISHED)})  # a parent that ended so: a failed parent


def edge_id(parent: str, child: str) -> str:
    """The document id of the edge parent -> child: deterministic (a repeated split finds the
    edge it made) and hashed, so edges spread over the key space (DESIGN law 5)."""
    return hashlib.blake2b(f"{parent}>{child}".encode(), digest_size=16).hexdigest()


def edge_doc(parent: str, child: str, parent_status: JobStatus | str | None) -> Doc:
    """An edge. `parent_status` is None while the parent has not ended (a status that is not
    final is recorded as None too), then the parent's final status."""
    status = None if parent_status is None else str(parent_status)
    return {
        "parent": parent,
        "child": child,
        "parent_status": status if status in FINAL else None,
    }


def job_edges(
    job_id: str, parents: Iterable[str], parent_status: Mapping[str, JobStatus]
) -> Iterator[tuple[str, Doc]]:
    """(id, document) of the edges from each of a job's parents to it, ended as
    `parent_status` says (a parent it does not name, or not as final: pending)."""
    for p in dict.fromkeys(parents):
        yield edge_id(p, job_id), edge_doc(p, job_id, parent_status.get(p))


def flags_from(d: Mapping[str, Any]) -> dict[str, str]:
    """The flags of a stored job (`flags` may be all that was read of it)."""
    flags: dict[str, str] = json.loads(d.get("flags") or "{}")
    return flags


# -- attempts --------------------------------------------------------------------------------------
def attempt_key(a: Attempt) -> str:
    """The document id of an attempt record."""
    return f"{a.job_id}:{a.attempt}"  # as `plan_changes` names an ended attempt


def live_attempt(job_id: str, d: Mapping[str, Any]) -> Attempt | None:
    """The record of the live attempt of the stored job `d` (None unless it is live).

    A live attempt's record is not in `attempts` (see `plan_changes`): it is the one kept in
    the job document by the last change that wrote it, or else (no change since the claim)
    what the claim wrote on the job: sent to its pilot at `started_at`."""
    if JobStatus(d["status"]) not in JOB_LIVE:
        return None
    if d.get("live_attempt"):
        return Attempt.model_validate_json(d["live_attempt"])
    return Attempt(
        job_id=job_id, attempt=d["attempt"], pilot_id=d["pilot_id"],
        status=JobStatus(d["status"]), started_at=_float(d["started_at"]),
    )  # fmt: skip


def attempt_doc(a: Attempt) -> Doc:
    return a.model_dump(mode="json")


def attempt_from(d: Mapping[str, Any]) -> Attempt:
    return Attempt.model_validate(d)


# -- queues and pilots -----------------------------------------------------------------------------
def queue_doc(q: Queue) -> Doc:
    return {"name": q.name, "spec": q.model_dump_json(by_alias=True)}


def queue_from(d: Mapping[str, Any]) -> Queue:
    return Queue.model_validate_json(d["spec"])


def pilot_doc(p: Pilot, *, heard: bool = True) -> Doc:
    """A pilot as stored. `heard_at` (last heartbeat, else creation) is what the sweep compares.

    Without `heard`, the fields only `heartbeat` (and creation) writes are left out: an update
    of the record must not move them.
    """
    doc = {**p.model_dump(mode="json"), "heard_at": p.heartbeat_at or p.created_at}
    if not heard:
        del doc["heard_at"], doc["heartbeat_at"]
    return doc


def pilot_from(d: Mapping[str, Any]) -> Pilot:
    fields = {k: v for k, v in d.items() if k != "heard_at"}
    fields["status"] = PilotStatus(fields["status"])
    return Pilot.model_validate(fields)


# -- events ----------------------------------------------------------------------------------------
def event_doc(e: Event, seq: int, now: float) -> Doc:
    return {
        "type": str(e.type),
        "subject": e.subject,
        "data": json.dumps(e.data),
        "created_at": now,
        "seq": seq,
        "delivered": False,
        "delivered_at": None,
        "dead": False,
        "tries": 0,
        "error": None,
    }


def event_from(event_id: str, d: Mapping[str, Any]) -> Event:
    return Event(
        id=event_id, type=EventType(d["type"]), subject=d["subject"], data=json.loads(d["data"])
    )


class SeqSource:
    """Outbox sequence numbers: ints that grow with time, strictly within this process.

    Firestore has no autoincrement, and a shared counter document would be a hot document
    (DESIGN law 5). A seq is the wall clock in microseconds times 1000 plus three random digits,
    raised if needed to exceed the last one this process handed out: strictly increasing per
    process, ordered by time across processes (up to clock skew), and colliding across processes
    only within the same microsecond and with the same random digits.
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        candidate = time.time_ns() // 1000 * 1000 + random.randrange(1000)
        with self._lock:
            self._last = max(self._last + 1, candidate)
            return self._last


SEQS = SeqSource()


# -- chunking --------------------------------------------------------------------------------------
def chunks(
    docs: Iterable[tuple[str, Doc]], writes_per_doc: int = 1, *, room: int = 0
) -> Iterator[list[tuple[str, Doc]]]:
    """(id, doc) pairs in runs that fit one commit: at most MAX_WRITES writes and ~MAX_BYTES,
    leaving room for `room` more small writes."""
    run: list[tuple[str, Doc]] = []
    size = 0
    for doc_id, doc in docs:
        approx = len(doc_id) + len(json.dumps(doc, default=str)) + 64
        full = (len(run) + 1) * writes_per_doc + room > MAX_WRITES
        if run and (full or size + approx > MAX_BYTES):
            yield run
            run, size = [], 0
        run.append((doc_id, doc))
        size += approx
    if run:
        yield run


def change_runs(changes: Sequence[JobChange]) -> Iterator[list[JobChange]]:
    """Job changes in runs whose writes (job, attempt records, events) fit one commit."""
    run: list[JobChange] = []
    writes = 0
    for ch in changes:
        record = ch.attempt.attempt if ch.attempt is not None else None
        unrecorded_end = ch.before.status in JOB_LIVE and record != ch.before.attempt
        cost = 2 + int(unrecorded_end) + len(ch.events)  # see plan_changes
        if run and writes + cost > MAX_WRITES:
            yield run
            run, writes = [], 0
        run.append(ch)
        writes += cost
    if run:
        yield run


# -- job changes -----------------------------------------------------------------------------------
@dataclass
class ChangePlan:
    """What a run of job changes writes, given the jobs' stored (status, attempt, kill flag)."""

    won: list[bool] = field(default_factory=list)  # one per change, in order
    jobs: dict[str, Doc] = field(default_factory=dict)  # job id -> fields to update
    attempts: dict[str, Doc] = field(default_factory=dict)  # attempt key -> record
    events: dict[str, Event] = field(default_factory=dict)  # the winners' events, by id


def plan_changes(
    changes: Sequence[JobChange], state: Mapping[str, tuple[str, int, bool]]
) -> ChangePlan:
    """Apply `changes` in order, as if one after the other, to jobs whose stored
    (status, attempt, kill_requested) is `state` (a job not in it does not exist): which win,
    and what to write. The kill flag is compared too: a change computed before a kill was
    requested would otherwise write the flag back to false and lose the kill.

    A job is written once, as its last winning change left it. Attempt records: the record of
    a live attempt (a change to starting or running) is kept in the job document
    (`live_attempt`), which is written anyway; a record goes to `attempts` only when its
    attempt ends or is replaced. So a job costs no attempt write until its attempt ends. A
    change that ends a live attempt without giving its record gets one made from the job as
    it was (never the case for jobflow's changes, which always give it).
    """
    plan = ChangePlan()
    state = dict(state)
    final: dict[str, Job] = {}
    live: dict[str, Attempt | None] = {}  # job id -> live record to store; absent: keep stored
    for ch in changes:
        before, after, record = ch.before, ch.after, ch.attempt
        ok = state.get(before.id) == (str(before.status), before.attempt, before.kill_requested)
        plan.won.append(ok)
        if not ok:
            continue
        state[before.id] = (str(after.status), after.attempt, after.kill_requested)
        final[before.id] = after
        for e in ch.events:
            plan.events.setdefault(e.id, e)
        still_live = after.status in JOB_LIVE and after.attempt == before.attempt
        keep = record is not None and after.status in JOB_LIVE and record.attempt == after.attempt
        if record is not None and not keep:
            plan.attempts[attempt_key(record)] = attempt_doc(record)
        if before.status in JOB_LIVE and not still_live:  # the live attempt ended
            ended = f"{before.id}:{before.attempt}"
            if ended not in plan.attempts:
                kept = live.get(before.id)
                plan.attempts[ended] = attempt_doc(kept or _attempt_as_read(before))
            live[before.id] = None
        if keep:
            live[before.id] = record
    for job_id, job in final.items():
        doc = job_doc(job, live.get(job_id))
        if job_id not in live:
            del doc["live_attempt"]  # unchanged: keep the record stored with the job
        plan.jobs[job_id] = doc
    return plan


def _attempt_as_read(job: Job) -> Attempt:
    return Attempt(
        job_id=job.id, attempt=job.attempt, pilot_id=job.pilot_id, status=job.status,
        started_at=job.started_at, ended_at=job.ended_at, exit_code=job.exit_code,
        error_code=job.error_code, error_diag=job.error_diag, log_uri=job.log_uri,
    )  # fmt: skip
