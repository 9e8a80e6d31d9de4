"""skypanda's tasks and jobs in panda-client's words: pure functions over values, no I/O.

What `pbook show` lists (`task/get_tasks_detailed_info_since`), what `Client.getTaskStatus`
and `Client.getJobStatus` read, the state names both ways, PanDA's reply envelope
`{"success", "message", "data"}` and its datetimes (`{"__datetime__": iso}`, which the client
turns back into `datetime`s).

Job states have the same names in skypanda and PanDA. Task states mostly do; skypanda's
`skipped` (never started: its start_after trigger ended otherwise) and `cancelled` (in a
workflow: not run because a task it needs failed) are PanDA's `broken` (a task that cannot
run). `superStatus` is the status, but `pending` is `registered` and `paused` is `running`
(what `pbook show run` lists as active).
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from skypanda.api.panda.client_mapping import jedi_task_id, task_id_of
from skypanda.api.panda.mapping import PandaInputError, json_object, panda_id, task_number
from skypanda.domain.models import Job, Task
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.wire.codes import ErrorCode

# PanDA's return codes of task commands (`data` of task/kill, finish, retry; submit's own)
CODE_OK = 0
CODE_SERVER_ERROR = 1
CODE_NOT_FOUND = 2
CODE_DENIED = 3
CODE_BAD_STATUS = 4
CODE_BAD_TASK_ID = 101
SUBMIT_DUPLICATE = 2  # insertTaskParams: "duplication in JEDI"
SUBMIT_REFUSED = 4  # insertTaskParams: not accepted

_T = TaskStatus
TASK_STATES: Mapping[TaskStatus, str] = {
    _T.PENDING: "pending", _T.REGISTERED: "registered", _T.READY: "ready",
    _T.RUNNING: "running", _T.PAUSED: "paused", _T.DONE: "done", _T.FINISHED: "finished",
    _T.FAILED: "failed", _T.ABORTED: "aborted", _T.SKIPPED: "broken", _T.CANCELLED: "broken",
}  # fmt: skip
"""skypanda's task states -> PanDA's (JEDI's) task states."""
_SUPER = {_T.PENDING: "registered", _T.PAUSED: "running"}

FILTERS = frozenset({"jediTaskID", "reqID", "status", "superStatus", "taskName", "userName"})
"""The `filters` of `get_tasks_detailed_info_since` skypanda answers (pbook's)."""


def envelope(success: bool, message: str = "", data: Any = None) -> dict[str, Any]:
    """PanDA's reply: `{"success", "message", "data"}`."""
    return {"success": success, "message": message, "data": data}


def when(epoch: float | None) -> dict[str, str] | None:
    """A time as PanDA's JSON encodes a datetime (naive UTC, as PanDA's are)."""
    if epoch is None:
        return None
    stamp = dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)
    return {"__datetime__": stamp.isoformat()}


def task_status(status: TaskStatus) -> str:
    return TASK_STATES[status]


def super_status(status: TaskStatus) -> str:
    return _SUPER.get(status, TASK_STATES[status])


def statuses_of(panda: str, field: str = "status") -> frozenset[TaskStatus]:
    """The skypanda task states a PanDA task status (or superstatus) stands for.

    Raises:
        PandaInputError: a state PanDA does not have (naming the known ones).
    """
    match = (
        frozenset(s for s in TaskStatus if super_status(s) == panda)
        if field == "superStatus"
        else frozenset(s for s in TaskStatus if task_status(s) == panda)
    )
    if not match:
        names = sorted({super_status(s) if field == "superStatus" else task_status(s)
                        for s in TaskStatus})  # fmt: skip
        raise PandaInputError(f"{field} {panda[:40]!r} is not one of {', '.join(names)}",
                              field=field)  # fmt: skip
    return match


def task_info(task: Task, counts: Mapping[JobStatus, int] | None) -> dict[str, Any]:
    """A task as pbook shows it (JediTaskSpec's names). `counts`: its jobs by state, or None
    when not counted (then the progress is known only for a task that ended done)."""
    info: dict[str, Any] = {
        "jediTaskID": jedi_task_id(task.id),
        "reqID": None,
        "taskName": task.spec.name,
        "userName": task.owner,
        "status": task_status(task.status),
        "superStatus": super_status(task.status),
        "creationDate": when(task.created_at),
        "modificationTime": when(task.updated_at),
        "site": task.spec.queue,
        "currentPriority": task.spec.priority,
        "coreCount": task.spec.resources.cores,
        "ramCount": task.spec.resources.memory_mb,
        "ramCountUnit": "MB",
        "errorDialog": task.reason,
        "prodSourceLabel": "user",
        "skypandaTaskID": task.id,
    }
    info.update(_progress(task, counts))
    return info


def _progress(task: Task, counts: Mapping[JobStatus, int] | None) -> dict[str, Any]:
    total = task.n_jobs
    if counts is None:
        done_all = task.status is TaskStatus.DONE
        finished = total if done_all else None
        failed = 0 if done_all else None
    else:
        finished = counts.get(JobStatus.FINISHED, 0)
        failed = counts.get(JobStatus.FAILED, 0)
    return {"nFiles": total, "nFilesFinished": finished, "nFilesFailed": failed,
            "pctFinished": _pct(finished, total), "pctFailed": _pct(failed, total)}  # fmt: skip


def _pct(n: int | None, total: int) -> int | None:
    return None if n is None else (round(100 * n / total) if total else 0)


def job_description(job: Job, owner_name: str | None = None) -> dict[str, Any]:
    """A job as `Client.getJobStatus` reads it (JobSpec's names; the client fills the rest
    with None). A retry is a new attempt of the same PandaID (`attemptNr`)."""
    task = task_number(job.task_id)
    exit_code = job.exit_code
    desc: dict[str, Any] = {
        "PandaID": panda_id(job.id),
        "jobName": job.id,
        "jobStatus": str(job.status),
        "jediTaskID": task,
        "taskID": task,
        "jobsetID": task,
        "jobDefinitionID": task,
        "attemptNr": job.attempt,
        "maxAttempt": job.max_attempts,
        "failedAttempt": job.failures,
        "transformation": job.command[0],
        "jobParameters": shlex.join(job.command[1:]),
        "computingSite": job.queue,
        "prodUserName": owner_name or job.owner,
        "prodSourceLabel": "user",
        "currentPriority": job.priority,
        "assignedPriority": job.priority,
        "coreCount": job.resources.cores,
        "minRamCount": job.resources.memory_mb,
        "minRamUnit": "MB",
        "maxWalltime": int(job.resources.walltime_s),
        "creationTime": when(job.created_at),
        "modificationTime": when(job.updated_at),
        "stateChangeTime": when(job.updated_at),
        "startTime": when(job.started_at),
        "endTime": when(job.ended_at),
        "pilotID": job.pilot_id,
        "commandToPilot": "tobekilled" if job.kill_requested else None,
        "transExitCode": exit_code,
        "maxRSS": None if job.max_rss_mb is None else job.max_rss_mb * 1024,
        "nInputFiles": len(job.inputs),
        "Files": [_input_file(job, i) for i in job.inputs],
    }
    desc.update(_errors(job))
    return desc


def _input_file(job: Job, uri: str) -> dict[str, Any]:
    return {"lfn": PurePosixPath(uri).name, "type": "input", "status": "ready",
            "PandaID": panda_id(job.id), "dataset": "", "scope": "skypanda"}  # fmt: skip


def _errors(job: Job) -> dict[str, Any]:
    """A job's error as PanDA's: a pilot error (11xx-13xx, PanDA's own numbers) is
    `pilotErrorCode`; a payload that failed is `exeErrorCode` with its exit code; skypanda's
    own reasons (lost heartbeat, task aborted, ...: 9xxx) are the supervisor's
    (`supErrorCode`)."""
    code, diag = job.error_code, job.error_diag
    out: dict[str, Any] = {
        "pilotErrorCode": 0, "pilotErrorDiag": None, "exeErrorCode": 0, "exeErrorDiag": None,
        "supErrorCode": 0, "supErrorDiag": None,
    }  # fmt: skip
    if code is None:
        return out
    if code == ErrorCode.PAYLOAD_FAILED:
        out.update(exeErrorCode=job.exit_code or code, exeErrorDiag=diag)
    elif code < ErrorCode.PAYLOAD_FAILED:
        out.update(pilotErrorCode=code, pilotErrorDiag=diag)
    else:
        out.update(supErrorCode=code, supErrorDiag=diag)
    return out


@dataclass(frozen=True)
class TaskFilter:
    """`get_tasks_detailed_info_since`'s query, decoded."""

    task_id: str | None = None
    owner: str | None = None
    name: str | None = None
    statuses: frozenset[TaskStatus] = frozenset()
    any_req_id: bool = False  # a reqID was asked for: skypanda has none, so nothing matches
    since: float | None = None
    n_tasks: int = 1000

    def matches(self, task: Task) -> bool:
        return (
            (self.owner is None or task.owner == self.owner)
            and (self.name is None or task.spec.name == self.name)
            and (not self.statuses or task.status in self.statuses)
            and (self.since is None or task.updated_at >= self.since)
            and not self.any_req_id
        )


MAX_TASKS = 1000


def task_filter(args: Mapping[str, str], caller: str) -> TaskFilter:
    """Decode `n_tasks`, `since` ('%Y-%m-%d %H:%M:%S', UTC) and `filters` (a JSON object of
    JediTaskSpec names to values). The caller's own tasks unless `userName` names another.

    Raises:
        PandaInputError: a malformed value or an unknown filter, naming it.
    """
    raw_n = args.get("n_tasks", "500").strip()
    if not re.fullmatch(r"[0-9]{1,7}", raw_n) or not 1 <= int(raw_n) <= 10**6:
        raise PandaInputError(f"n_tasks must be a positive whole number, not {raw_n[:20]!r}",
                              field="n_tasks")  # fmt: skip
    since = _since(args.get("since"))
    filters = _filters(args.get("filters"))
    statuses = frozenset[TaskStatus]()
    for key in ("status", "superStatus"):
        if key in filters:
            found = statuses_of(filters[key], key)
            statuses = found if not statuses else statuses & found
    task = filters.get("jediTaskID")
    return TaskFilter(
        task_id=None if task is None else task_id_of(task, "jediTaskID"),
        owner=filters.get("userName", caller),
        name=filters["taskName"].removesuffix("/") if "taskName" in filters else None,
        statuses=statuses,
        any_req_id="reqID" in filters,
        since=since,
        n_tasks=min(int(raw_n), MAX_TASKS),
    )


def _since(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        stamp = dt.datetime.strptime(raw.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError as e:
        raise PandaInputError(f"since must be 'YYYY-MM-DD HH:MM:SS' (UTC), not {raw[:40]!r}",
                              field="since") from e  # fmt: skip
    return stamp.replace(tzinfo=dt.UTC).timestamp()


def _filters(raw: str | None) -> dict[str, str]:
    if raw is None or not raw.strip():
        return {}
    data = json_object(raw, "filters")
    unknown = sorted(set(data) - FILTERS)
    if unknown:
        raise PandaInputError(f"unknown filter {unknown[0]!r}; skypanda filters on "
                              f"{', '.join(sorted(FILTERS))}", field=unknown[0])  # fmt: skip
    out = {}
    for key, value in data.items():
        if not isinstance(value, str | int) or isinstance(value, bool) or len(str(value)) > 200:
            raise PandaInputError(f"filter {key} must be a text or a number", field=key)
        out[key] = str(value)
    return out
