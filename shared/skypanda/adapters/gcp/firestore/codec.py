"""How skypanda's models are written as Firestore documents and read back.

Plain dicts in and out, no I/O: the store decides where documents live and when they are
written. Fields that queries filter or order on are top-level scalars (`status`, `queue`,
`priority`, `memory_mb`, ...); free-form user data whose keys Firestore may refuse as field
names (a task's spec, a job's env, an event's data) is stored as a JSON string.
infra/FIRESTORE.md lists every field and which ones are indexed. The pure decisions of the
store (commit sizes, claim candidates, outbox seqs, job change plans) are in `plans`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter

from skypanda.domain.audit import RETENTION_S, AuditEntry
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

Doc = dict[str, Any]
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
        # What its start_after waits for (domain.chain): `held_tasks` finds it by this field.
        "waits_on": task.spec.start_after.trigger_id if task.spec.start_after else None,
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
        # Held by a start_after (domain.chain): the trigger's id, cleared by `end_hold`.
        "waits_on": wf.spec.start_after.trigger_id
        if wf.spec.start_after and wf.status is WorkflowStatus.REGISTERED
        else None,
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
    """A job as stored. `live_attempt` is the record of its current attempt, live or ended,
    kept in the job document until a new attempt replaces it (see `plan_changes`); the name
    is from when only live attempts' records were kept there."""
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
        "max_rss_mb": job.max_rss_mb,
        "activated_at": job.activated_at,
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
        max_rss_mb=d.get("max_rss_mb"),  # absent on jobs written before it
        activated_at=_float(d.get("activated_at")),  # absent on jobs written before it
    )


def sent_fields(pilot_id: str, now: float, activated_at: Any) -> Doc:
    """What a claim writes on a job: sent to the pilot now, results of any earlier attempt
    reset, and `activated_at`: the job's `updated_at` as the claim read it (its last change)."""
    return {
        "status": str(JobStatus.SENT), "pilot_id": pilot_id, "updated_at": now,
        "activated_at": activated_at,
        "started_at": now, "exit_code": None, "error_code": None, "error_diag": "",
        "log_uri": None, "ended_at": None, "live_attempt": None, "max_rss_mb": None,
    }  # fmt: skip


def retried_fields(attempt: int, now: float) -> Doc:
    """What a user's retry writes on a failed or cancelled job: a new attempt, waiting for its
    parents (defined), with the results of the last attempt cleared."""
    return {
        "status": str(JobStatus.DEFINED), "attempt": attempt + 1, "failures": 0,
        "pilot_id": None, "kill_requested": False, "exit_code": None, "error_code": None,
        "error_diag": "", "log_uri": None, "started_at": None, "ended_at": None,
        "live_attempt": None, "flags": "{}", "flagged": False, "updated_at": now,
        "max_rss_mb": None,
    }  # fmt: skip


# Job fields a bulk writes (`domain.bulk.JobBulk.changes`), each stored under its own name
# (`memory_mb`, of the job's resources, is stored flat as every resource is).
BULK_FIELDS = frozenset(
    {"status", "error_diag", "ended_at", "kill_requested", "queue", "priority", "memory_mb",
     "updated_at"}
)  # fmt: skip


def bulk_fields(changes: Mapping[str, Any]) -> Doc:
    """The document fields that carry a bulk's changes of one job (`JobBulk.changes`).

    Raises:
        ValueError: a change names a field this mapping does not know (a new kind of bulk
            needs its field added here, rather than written under a wrong name).
    """
    unknown = set(changes) - BULK_FIELDS
    if unknown:
        raise ValueError(f"no job document field for bulk change(s) {sorted(unknown)}")
    return {k: str(v) if isinstance(v, StrEnum) else v for k, v in changes.items()}


# -- job dependencies ------------------------------------------------------------------------------
FINAL = frozenset(str(s) for s in JOB_FINAL)
BAD_ENDS = sorted(FINAL - {str(JobStatus.FINISHED)})  # a parent that ended so: a failed parent


def edge_id(parent: str, child: str) -> str:
    """The document id of the edge parent -> child: deterministic (a repeated split finds the
    edge it made) and hashed, so edges spread over the key space (DESIGN law 5)."""
    return hashlib.blake2b(f"{parent}>{child}".encode(), digest_size=16).hexdigest()


def audit_doc(entry: AuditEntry) -> Doc:
    """An audit entry, with `expire_at` (a timestamp) for a Firestore TTL policy."""
    expire = dt.datetime.fromtimestamp(entry.at + RETENTION_S, tz=dt.UTC)
    return {**entry.model_dump(mode="json"), "expire_at": expire}


def audit_from(doc: Doc) -> AuditEntry:
    return AuditEntry.model_validate({k: v for k, v in doc.items() if k != "expire_at"})


def edge_doc(
    parent: str, child: str, parent_status: JobStatus | str | None, only: bool = False
) -> Doc:
    """An edge. `parent_status` is None while the parent has not ended (a status that is not
    final is recorded as None too), then the parent's final status. `only`: the child has no
    other parent (its release need not look at its other edges: there are none)."""
    status = None if parent_status is None else str(parent_status)
    return {
        "parent": parent,
        "child": child,
        "parent_status": status if status in FINAL else None,
        "only": only,
    }


def job_edges(
    job_id: str, parents: Iterable[str], parent_status: Mapping[str, JobStatus]
) -> Iterator[tuple[str, Doc]]:
    """(id, document) of the edges from each of a job's parents to it, ended as
    `parent_status` says (a parent it does not name, or not as final: pending)."""
    distinct = list(dict.fromkeys(parents))
    for p in distinct:
        yield edge_id(p, job_id), edge_doc(p, job_id, parent_status.get(p), len(distinct) == 1)


def flags_from(d: Mapping[str, Any]) -> dict[str, str]:
    """The flags of a stored job (`flags` may be all that was read of it)."""
    flags: dict[str, str] = json.loads(d.get("flags") or "{}")
    return flags


# -- attempts --------------------------------------------------------------------------------------
def attempt_key(a: Attempt) -> str:
    """The document id of an attempt record."""
    return f"{a.job_id}:{a.attempt}"  # as `plan_changes` names a replaced attempt


def kept_attempt(d: Mapping[str, Any]) -> Attempt | None:
    """The attempt record kept in the stored job `d` (`live_attempt`): its current attempt's,
    live or ended, once a change gave one (see `plan_changes`); None if none is kept."""
    return Attempt.model_validate_json(d["live_attempt"]) if d.get("live_attempt") else None


def live_attempt(job_id: str, d: Mapping[str, Any]) -> Attempt | None:
    """The record of the live attempt of the stored job `d` (None unless it is live).

    A live attempt's record is not in `attempts` (see `plan_changes`): it is the one kept in
    the job document by the last change that wrote it, or else (no change since the claim)
    what the claim wrote on the job: sent to its pilot at `started_at`."""
    if JobStatus(d["status"]) not in JOB_LIVE:
        return None
    kept = kept_attempt(d)
    if kept is not None and kept.attempt == d["attempt"]:
        return kept
    return Attempt(
        job_id=job_id, attempt=d["attempt"], pilot_id=d["pilot_id"],
        status=JobStatus(d["status"]), started_at=_float(d["started_at"]),
    )  # fmt: skip


def attempt_doc(a: Attempt) -> Doc:
    # With its task's id (a job id is `<task id>-<12 hex digits>`: domain.ids), which the
    # task's error summary queries by.
    return {**a.model_dump(mode="json"), "task_id": a.job_id.rsplit("-", 1)[0]}


def attempt_from(d: Mapping[str, Any]) -> Attempt:
    return Attempt.model_validate({k: v for k, v in d.items() if k != "task_id"})


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
    if e.data.get("in_request"):  # its children are released in its report's request
        return {**_event_doc(e, seq, now), "released": False}  # until it says so
    return _event_doc(e, seq, now)


def _event_doc(e: Event, seq: int, now: float) -> Doc:
    return {
        "type": str(e.type),
        "subject": e.subject,
        "data": json.dumps(e.data),
        "created_at": now,
        "sent_at": now,  # created, or last re-sent (`lost_events`)
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
