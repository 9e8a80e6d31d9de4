"""PanDA's wire words to skypanda's and back: pure functions over values, no I/O.

What the real PanDA pilot sends and expects (`../shared/reference/panda-protocol.md`) is
decoded here into skypanda's own values (a `JobReport`, a job id) and a skypanda job and queue
are described in PanDA's words. Nothing PanDA-named goes further in than this package.

A PanDA id is an integer; a skypanda job id is `t<12 hex>-<12 hex>` (`domain.ids`), so the
PandaID is those 24 hex digits read as one integer (96 bits; Python's JSON reads it whole),
and decoding it gives the job id back without a lookup table.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from skypanda.domain.errors import Forbidden, InvalidInput, SkypandaError, Unauthorized
from skypanda.domain.models import Job, JobReport, Queue
from skypanda.domain.states import JobStatus
from skypanda.wire.codes import ErrorCode

SC_SUCCESS = 0
SC_NO_JOBS = 20  # the pilot sleeps and asks again
SC_FAILED = 30  # panda-server's Protocol.SC_Failed: e.g. updateJob of a job it does not have
SC_INVALID = 50  # panda-server's Protocol.SC_Invalid: a request it cannot take
SC_ROLE = 60  # panda-server's Protocol.SC_Role: the caller is not a pilot
SCOPE = "skypanda"
"""The Rucio-style scope of the files skypanda names for PanDA pilots (`scopeLog`)."""

LOG_TAIL_CHARS = 64 * 1024
"""The most of a final update's `pilotLog` kept in the job's log (its end)."""

_JOB_ID = re.compile(r"^t([0-9a-f]{12})-([0-9a-f]{12})$")
_MAX_PANDA_ID = (1 << 96) - 1


class PandaInputError(InvalidInput):
    """A PanDA request skypanda cannot take: a field unknown, missing, malformed or with a
    value skypanda does not support. The message names the field."""

    http_status = 400


def panda_id(job_id: str) -> int:
    """The PandaID of a skypanda job.

    Raises:
        PandaInputError: the id is not a split job's (`t<12 hex>-<12 hex>`).
    """
    m = _JOB_ID.match(job_id)
    if m is None:
        raise PandaInputError(f"job {job_id!r} has no PandaID (not a t<hex>-<hex> id)",
                              field="PandaID")  # fmt: skip
    return int(m.group(1) + m.group(2), 16)


def job_id_of(value: str, field: str = "jobId") -> str:
    """The skypanda job id of a PandaID as the pilot sends it (`jobId`, a decimal string).

    Raises:
        PandaInputError: not a decimal PandaID that skypanda issued (naming `field`).
    """
    text = value.strip()
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses
    if not re.fullmatch(r"[0-9]{1,30}", text) or int(text) > _MAX_PANDA_ID:
        raise PandaInputError(f"{field} must be a PandaID skypanda issued, not {value!r}",
                              field=field)  # fmt: skip
    digits = f"{int(text):024x}"
    return f"t{digits[:12]}-{digits[12:]}"


def task_number(task_id: str) -> int:
    """A task's number for PanDA's `taskID`/`jediTaskID` (0 when its id is not `t<hex>`)."""
    m = re.match(r"^t([0-9a-f]{12})$", task_id)
    return int(m.group(1), 16) if m else 0


def log_file_name(job: Job) -> str:
    return f"{job.id}.{job.attempt}.log.tgz"


def ddm_path(lfn: str) -> str:
    """Where a PanDA pilot puts file `lfn` of skypanda's scope under its DDM endpoint's path:
    the Rucio deterministic path (`<scope>/<md5[0:2]>/<md5[2:4]>/<lfn>`, the pilot's
    `get_path`)."""
    digest = hashlib.md5(f"{SCOPE}:{lfn}".encode(), usedforsecurity=False).hexdigest()
    return f"{SCOPE}/{digest[0:2]}/{digest[2:4]}/{lfn}"


def endpoint_name(queue: str) -> str:
    """The DDM endpoint PanDA pilots of `queue` write logs to (`ddmendpoints.json`)."""
    return f"{queue}_DISK"


def describe_job(job: Job, prod_source_label: str) -> dict[str, Any]:
    """The job description the PanDA pilot runs (`getJob`'s reply).

    The command's first word is the `transformation` (the real pilot downloads it as a URL;
    see the reference) and the rest the `jobPars`, shell-quoted.

    Raises:
        PandaInputError: the job uses what the PanDA pilot cannot do (environment variables,
            output patterns, inputs it stages in), naming the field.
    """
    if job.env:
        raise PandaInputError(f"job {job.id}: env is not supported by PanDA pilots "
                              f"({', '.join(sorted(job.env))})", field="env")  # fmt: skip
    if job.output_patterns:
        raise PandaInputError(f"job {job.id}: outputs are not supported by PanDA pilots yet",
                              field="outputs")  # fmt: skip
    if job.stage_in:
        raise PandaInputError(f"job {job.id}: stage_in (Rucio-style input datasets) is not "
                              "supported by PanDA pilots", field="stage_in")  # fmt: skip
    log_file = log_file_name(job)
    task = task_number(job.task_id)
    return {
        "StatusCode": SC_SUCCESS,
        "PandaID": panda_id(job.id),
        "jobName": job.id,
        "taskID": task,
        "jediTaskID": task,
        "jobsetID": task,
        "jobDefinitionID": task,
        "attemptNr": job.attempt,
        "prodSourceLabel": prod_source_label,
        "transformation": job.command[0],
        "jobPars": shlex.join(job.command[1:]),
        "inFiles": ",".join(PurePosixPath(i).name for i in job.inputs),
        "outFiles": log_file,
        "logFile": log_file,
        "logGUID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"skypanda:{job.id}:{job.attempt}")),
        "scopeLog": SCOPE,
        "scopeOut": SCOPE,
        "ddmEndPointOut": endpoint_name(job.queue),
        "destinationSE": endpoint_name(job.queue),
        "coreCount": job.resources.cores,
        "minRamCount": job.resources.memory_mb,
        "maxWalltime": int(job.resources.walltime_s),
        "maxCpuCount": int(job.resources.walltime_s),
        "maxDiskCount": 0,
        "currentPriority": job.priority,
        "swRelease": "NULL",
        "homepackage": "NULL",
        "cmtConfig": "NULL",
    }


def schedconfig(queue: Queue) -> dict[str, Any]:
    """A queue as the pilot's `/cache/schedconfig/{queue}.all.json` (flat, the fields the
    real pilot reads; `timefloor` 0: one job per pilot)."""
    state = "ACTIVE" if queue.online else "OFFLINE"
    walltime = int(queue.max_walltime_s or queue.pilot_resources.walltime_s)
    return {
        "name": queue.name,
        "nickname": queue.name,
        "siteid": queue.name,
        "site": queue.name,
        "atlas_site": queue.name,  # what the real pilot reads as the site (3.7: `site` is unread)
        "panda_resource": queue.name,
        "state": state,
        "status": "online" if queue.online else "offline",
        "maxwdir": int((queue.disk_gb or 10) * 1024),
        "maxrss": queue.pilot_resources.memory_mb,
        "corecount": queue.pilot_resources.cores,
        "timefloor": 0,
        "maxtime": walltime,
        "copytools": {"mv": {}},
        "acopytools": {"pl": ["mv"], "pw": ["mv"], "pr": ["mv"]},
        "astorages": {"pl": [endpoint_name(queue.name)], "pw": [endpoint_name(queue.name)]},
        # `mv` then moves a log to its DDM path (`ddm_path`), where skypanda reads it; without
        # this the pilot leaves it in its own directory for an ARC CE to upload
        "catchall": "mv_final_destination",
    }


def schedconfig_queue(file: str) -> str:
    """The queue a `{queue}.all.json` file name asks for.

    Raises:
        PandaInputError: another file name (naming the form it must have).
    """
    queue = file.removesuffix(".all.json")
    if queue == file or not queue:
        raise PandaInputError(f"schedconfig file {file!r} is not <queue>.all.json", field="file")
    return queue


def ddm_endpoints(queues: list[Queue], path: str) -> dict[str, Any]:
    """`ddmendpoints.json`: one disk endpoint per queue, written with `mv` under `path`."""
    out: dict[str, Any] = {}
    for number, q in enumerate(queues, start=1):
        name = endpoint_name(q.name)
        protocol = {"endpoint": "file://localhost", "path": path, "flavour": "POSIX"}
        out[name] = {
            "name": name, "id": number, "type": "DISK", "state": "ACTIVE", "site": q.name,
            "is_deterministic": True,
            # the activities pilot 3.7 resolves a log's stage-out with are write_lan/write_wan
            "arprotocols": {a: [protocol] for a in ("w", "r", "write_lan", "write_wan",
                                                    "read_lan", "read_wan")},
        }  # fmt: skip
    return out


# -- the two wire shapes --------------------------------------------------------------------


class Fields(dict[str, str]):
    """A request's fields by their `/server/panda` names, decoded from another wire shape
    (the snake_case names of `/api/v1/pilot`): `wire` maps each name back to the caller's, so
    that a refusal names the field as the caller sent it."""

    def __init__(self, values: Mapping[str, str], wire: Mapping[str, str]) -> None:
        super().__init__(values)
        self.wire = dict(wire)


def renamed(body: Mapping[str, Any], names: Mapping[str, str]) -> Fields:
    """A JSON object of another wire shape as `Fields`: each name through `names`, each value
    as text (PanDA's forms are text: numbers as digits, objects and lists as JSON, null as
    nothing).

    Raises:
        PandaInputError: a name not in `names`, named.
    """
    _known(body, frozenset(names))
    values = {names[k]: as_text(v) for k, v in body.items()}
    return Fields(values, {form_name: name for name, form_name in names.items()})


def as_text(value: Any) -> str:
    """A JSON value as a form's text."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _wire(form: Mapping[str, str], name: str) -> str:
    """How the caller named field `name` (see `Fields`)."""
    return form.wire.get(name, name) if isinstance(form, Fields) else name


# -- getJob --------------------------------------------------------------------------------

MAX_JOBS = 100
"""Jobs one request may take (`nJobs`, `n_jobs`)."""

GET_JOB_FIELDS = frozenset(
    {"siteName", "computingSite", "computingElement", "prodSourceLabel", "diskSpace",
     "workingGroup", "cpu", "mem", "node", "allowOtherCountry", "taskID", "countryGroup",
     "atlasRelease", "AtlasRelease", "getProxyKey", "resourceType", "jobType", "harvester_id",
     "worker_id", "schedulerID", "pilotID", "timeout", "readOnly", "token", "prodUserID",
     "nJobs", "background", "viaTopic", "remainingTime", "targetArchitecture"}
)  # fmt: skip


@dataclass(frozen=True)
class JobRequest:
    """A PanDA pilot's `getJob`, decoded."""

    queue: str
    node: str
    prod_source_label: str
    memory_mb: int | None
    n_jobs: int = 1


def job_request(form: Mapping[str, str]) -> JobRequest:
    """Decode a `getJob` form.

    Raises:
        PandaInputError: an unknown field, no queue (siteName or computingSite), or a
            malformed number, naming the field.
    """
    _known(form, GET_JOB_FIELDS)
    queue = form.get("siteName") or form.get("computingSite") or ""
    if not queue:
        site = _wire(form, "siteName")
        raise PandaInputError(f"{site} is required", field=site)
    mem = _int(form, "mem")
    n_jobs = _int(form, "nJobs")
    if n_jobs is not None and not 1 <= n_jobs <= MAX_JOBS:
        name = _wire(form, "nJobs")
        raise PandaInputError(f"{name} must be 1 to {MAX_JOBS}, not {n_jobs}", field=name)
    return JobRequest(
        queue=queue,
        node=_text(form, "node", 255) or "unknown",
        prod_source_label=_text(form, "prodSourceLabel", 50) or "managed",
        memory_mb=mem if mem else None,
        n_jobs=n_jobs or 1,
    )


# -- updateJob -----------------------------------------------------------------------------

STATES: Mapping[str, JobStatus | None] = {
    "starting": JobStatus.STARTING,
    "running": JobStatus.RUNNING,
    "finished": JobStatus.FINISHED,
    "failed": JobStatus.FAILED,
    # Still live, no change of state: a heartbeat
    "holding": None,
    "transferring": None,
}
"""PanDA's job states a pilot reports -> skypanda's (None: the job lives on unchanged)."""

UPDATE_FIELDS = frozenset(
    {"jobId", "state", "timestamp", "siteName", "node", "attemptNr", "schedulerID", "pilotID",
     "startTime", "endTime", "coreCount", "cpuConsumptionUnit", "cpuConsumptionTime",
     "cpuConversionFactor", "xml", "pilotLog", "pilotErrorCode", "pilotErrorDiag",
     "transExitCode", "exeErrorCode", "exeErrorDiag", "pilotTiming", "batchID", "maxRSS",
     "maxVMEM", "maxSWAP", "maxPSS", "avgRSS", "avgVMEM", "avgSWAP", "avgPSS", "totRCHAR",
     "totWCHAR", "totRBYTES", "totWBYTES", "rateRCHAR", "rateWCHAR", "rateRBYTES",
     "rateWBYTES", "nEvents", "nInputFiles", "jobMetrics", "jobSubStatus", "corecount",
     "meta_data", "metaData", "outputFiles", "computingElement", "cpu_architecture_level",
     "startTimeFromPilot", "stdout", "meanCoreCount", "corruptedFiles", "timeout", "token",
     "workdir", "remainingSpace", "messageLevel", "grid", "sourceSite", "destinationSite"}
)  # fmt: skip
"""The fields of the real pilots' `updateJob` (others are refused, named)."""


@dataclass(frozen=True)
class StagedFile:
    """A file a final update says the pilot staged out (its `xml`): the log tarball."""

    lfn: str
    guid: str = ""
    fsize: int | None = None
    adler32: str = ""
    surl: str = ""

    def describe(self) -> str:
        parts = {"fsize": self.fsize, "adler32": self.adler32, "guid": self.guid,
                 "surl": self.surl}  # fmt: skip
        return " ".join(f"{k}={v}" for k, v in parts.items() if v not in (None, ""))


@dataclass(frozen=True)
class JobUpdate:
    """A PanDA pilot's `updateJob`, decoded: the job, its node, and what to report (None: a
    heartbeat only), with the final update's log tail and the files it staged out."""

    job_id: str
    node: str
    report: JobReport | None
    log: str
    staged: tuple[StagedFile, ...] = ()


def job_update(form: Mapping[str, str]) -> JobUpdate:
    """Decode an `updateJob` form into a skypanda report.

    Error codes: a pilot error code (11xx-13xx, PanDA's numbers are skypanda's) wins; else a
    failed payload is `PAYLOAD_FAILED` with its `transExitCode` (or `exeErrorCode`) as the
    exit code.

    Raises:
        PandaInputError: an unknown field or state, a missing jobId/state/attemptNr, a
            malformed number, naming the field.
    """
    _known(form, UPDATE_FIELDS)
    job_id = job_id_of(_required(form, "jobId"), _wire(form, "jobId"))
    raw_state = _required(form, "state")
    if raw_state not in STATES:
        state = _wire(form, "state")
        raise PandaInputError(f"{state} {raw_state!r} is not one skypanda takes "
                              f"({', '.join(sorted(STATES))})", field=state)  # fmt: skip
    status = STATES[raw_state]
    node = _text(form, "node", 255) or "unknown"
    if status is None:
        return JobUpdate(job_id, node, None, "")
    attempt = _int(form, "attemptNr")
    if attempt is None:
        nr = _wire(form, "attemptNr")
        raise PandaInputError(f"{nr} is required with a state change", field=nr)
    fields: dict[str, Any] = {"job_id": job_id, "attempt": attempt, "status": status}
    if status in (JobStatus.FINISHED, JobStatus.FAILED):
        fields.update(_outcome(form, status))
    try:
        report = JobReport(**fields)
    except ValidationError as e:
        problem = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise PandaInputError(f"{where}: {problem['msg']}", field=where) from e
    staged = _files(form)
    return JobUpdate(job_id, node, report, _log(form, staged), staged)


def _log(form: Mapping[str, str], staged: tuple[StagedFile, ...]) -> str:
    """A final update's log: a line for each file of its `xml` (the log tarball the pilot
    staged out: name, size, checksum, where) and the end of its `pilotLog`, at most
    LOG_TAIL_CHARS in all."""
    lines = [f"[panda pilot] staged out {f.lfn}: {f.describe()}" for f in staged]
    head = "".join(line[:1000] + "\n" for line in lines)[: LOG_TAIL_CHARS // 2]
    tail = form.get("pilotLog", "")[-(LOG_TAIL_CHARS - len(head)) :]
    return head + tail


MAX_STAGED = 100
"""Files one final update may name (a PanDA job stages out its log and a few outputs)."""


def _files(form: Mapping[str, str]) -> tuple[StagedFile, ...]:
    """The files of a final update's `xml`: `{lfn: {guid, fsize, adler32, surl}}`.

    Raises:
        PandaInputError: an `xml` that is not a JSON object of files, or too many.
    """
    raw = form.get("xml", "").strip()
    name = _wire(form, "xml")
    if raw in ("", "NULL", "None"):
        return ()
    files = json_object(raw, name, "a JSON object of files")
    if len(files) > MAX_STAGED:
        raise PandaInputError(f"{name} must be a JSON object of at most {MAX_STAGED} files",
                              field=name)  # fmt: skip
    out = []
    for lfn, meta in sorted(files.items()):
        info = meta if isinstance(meta, dict) else {}
        size = str(info.get("fsize", ""))
        out.append(StagedFile(
            lfn=str(lfn)[:1000], guid=str(info.get("guid", ""))[:100],
            fsize=int(size) if size.isdigit() and len(size) < 19 else None,
            adler32=str(info.get("adler32", ""))[:16], surl=str(info.get("surl", ""))[:2048],
        ))  # fmt: skip
    return tuple(out)


def _outcome(form: Mapping[str, str], status: JobStatus) -> dict[str, Any]:
    pilot_code = _int(form, "pilotErrorCode") or 0
    exit_code = _int(form, "transExitCode") or _int(form, "exeErrorCode") or 0
    diag = form.get("pilotErrorDiag") or form.get("exeErrorDiag") or ""
    out: dict[str, Any] = {"exit_code": exit_code, "error_diag": diag[:4000]}
    if status is JobStatus.FAILED:
        out["error_code"] = pilot_code or (ErrorCode.PAYLOAD_FAILED if exit_code else None)
    rss_kb = _int(form, "maxRSS")
    if rss_kb:
        out["max_rss_mb"] = rss_kb // 1024
    return out


def update_reply(kill: bool) -> dict[str, Any]:
    """`updateJob`'s reply: `tobekilled` makes the pilot kill the payload (it then reports
    failed with 1144)."""
    return {"StatusCode": SC_SUCCESS, "command": "tobekilled" if kill else "NULL"}


def status_code(error: SkypandaError) -> int:
    """The `StatusCode` panda-server answers for such a refusal: SC_Role for a caller that is
    not a pilot, SC_Invalid for a request it cannot take, SC_Failed otherwise (as for an
    update of a job it does not have)."""
    if isinstance(error, Unauthorized | Forbidden):
        return SC_ROLE
    if isinstance(error, InvalidInput):
        return SC_INVALID
    return SC_FAILED


def error_reply(
    message: str, field: str | None = None, status_code: int = SC_INVALID
) -> dict[str, Any]:
    """PanDA's envelope for a refused request."""
    body: dict[str, Any] = {"StatusCode": status_code, "errorDialog": message}
    if field:
        body["field"] = field
    return body


def json_object(raw: str | bytes, field: str, what: str = "a JSON object") -> dict[str, Any]:
    """`raw` read as a JSON object.

    Raises:
        PandaInputError: not JSON, or not an object (naming `field`, saying it must be `what`).
    """
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise PandaInputError(f"{field} must be {what}: {e}", field=field) from e
    if not isinstance(data, dict):
        raise PandaInputError(f"{field} must be {what}", field=field)
    return data


def _known(form: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(form) - known)
    if unknown:
        raise PandaInputError(f"unknown PanDA field {unknown[0]!r}"
                              + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""),
                              field=unknown[0])  # fmt: skip


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        wire = _wire(form, name)
        raise PandaInputError(f"{wire} is required", field=wire)
    return value


def _text(form: Mapping[str, str], name: str, limit: int) -> str:
    value = form.get(name, "").strip()
    if len(value) > limit:
        wire = _wire(form, name)
        raise PandaInputError(f"{wire} is longer than {limit} characters", field=wire)
    return value


def _int(form: Mapping[str, str], name: str) -> int | None:
    raw = form.get(name, "").strip()
    if raw in ("", "NULL", "None"):
        return None
    wire = _wire(form, name)
    try:
        value = int(float(raw)) if "." in raw else int(raw)
    except (ValueError, OverflowError) as e:
        raise PandaInputError(f"{wire} must be a number, not {raw[:40]!r}", field=wire) from e
    if not -(2**31) <= value <= 2**31 - 1:
        raise PandaInputError(f"{wire} is out of range: {value}", field=wire)
    return value
