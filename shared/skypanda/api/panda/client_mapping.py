"""panda-client's task parameters to a skypanda task: pure functions over values, no I/O.

What `prun` and `Client.insertTaskParams` send to `task/submit` (JEDI's task parameters,
`../shared/reference/panda-protocol.md`) is mapped here field by field onto a `TaskSpec`.
Each field is in exactly one of three lists:

- `MAPPED`: it has a meaning in skypanda and is translated (see `task_spec`);
- `IGNORED`: bookkeeping with no effect here, accepted and dropped (`userName` among them:
  the owner is always the authenticated caller, never what the client claims);
- `REFUSED`: it cannot work here (Rucio datasets, tape carousel, containers, build and merge
  steps, ...), refused with a message naming the field and why.

Any other field is refused as unknown, naming it. A refusal is a `PandaInputError` whose
`field` names the culprit; the routes answer it in PanDA's envelope.

The command: `transPath` is the program and the `jobParameters` constants, joined as JEDI
joins them (a space between items unless `padding` is false; `hidden` items left out) and
split as a shell would, are its arguments. JEDI's placeholders become skypanda's:
`${IN}` (and `${IN/T}`, `${IN/L}`) the job's inputs joined by commas, `${FIRSTEVENT}`,
`${MAXEVENTS}`, `${SKIPEVENTS}` the job's events; any other `${...}` is refused. prun names
no `transPath` (JEDI's runGen wrapper): its `--exec` is the command (`client_prun`).

jediTaskID: a skypanda task id is `t<12 hex digits>` (`handlers.services.new_id`,
`domain.ids.workflow_task_id`), so a task's jediTaskID is those 48 bits read as an integer
(`mapping.task_number`), and the id is found back from it without a lookup table.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from skypanda.api.panda import client_prun
from skypanda.api.panda.mapping import PandaInputError, task_number
from skypanda.domain.fleet import AUTO_QUEUE
from skypanda.domain.models import TaskSpec

MAX_JEDI_TASK_ID = (1 << 48) - 1

MAPPED = frozenset(
    {"taskName", "transPath", "jobParameters", "pfnList", "noInput", "nFiles", "nFilesPerJob",
     "nEvents", "nEventsPerJob", "nEventsPerFile", "nEventsPerInputFile", "ramCount",
     "ramCountUnit", "coreCount", "maxWalltime", "maxAttempt", "disableAutoRetry",
     "currentPriority", "taskPriority", "site", "includedSite", "excludedSite",
     "uniqueTaskName", "noWaitParent"}
)  # fmt: skip
"""Task parameters with a meaning in skypanda."""

IGNORED = frozenset(
    {"userName", "vo", "prodSourceLabel", "taskType", "workingGroup", "processingType",
     "architecture", "transUses", "transHome", "cloud", "cliParams", "osInfo", "noEmail",
     "skipScout", "respectSplitRule", "respectLB", "osMatching", "messageDriven", "official",
     "nMaxFilesPerJob", "noLoopingCheck", "cpuTime", "cpuTimeUnit", "outDiskCount",
     "outDiskUnit", "log", "debugMode", "maxCoreCount", "framework", "sourceURL",
     "fixedSandbox", "countryGroup", "reqID", "campaign", "avoidVP", "taskLabel"}
)  # fmt: skip
"""Bookkeeping accepted and dropped: owner and group names (the owner is the authenticated
caller), labels, the client's own command line and OS, hints to JEDI's scouting and
brokerage that skypanda has no counterpart for, CPU-time and output-size estimates, and the
log dataset (skypanda keeps every job's log itself)."""

_RUCIO = "Rucio datasets are not supported by skypanda: list the files with pfnList"
REFUSED: Mapping[str, str] = {
    "dsForIN": _RUCIO,
    "secondaryDSs": _RUCIO,
    "reuseSecOnDemand": _RUCIO,
    "skipFilesUsedBy": _RUCIO,
    "useRealNumEvents": "input files' event counts from Rucio are not available: give "
    "nEventsPerFile",
    "inputPreStaging": "tape carousel (staging inputs from tape) is not supported by skypanda",
    "toStaging": "tape carousel (staging inputs from tape) is not supported by skypanda",
    "container_name": "containers are not supported for PanDA tasks yet: run the program "
    "directly (transPath)",
    "multiStepExec": "containers are not supported for PanDA tasks yet",
    "buildSpec": "build jobs (and prun's sandbox of the working directory) are not "
    "supported: name the program with transPath",
    "preproSpec": "preprocessing jobs are not supported",
    "mergeSpec": "merge jobs are not supported",
    "mergeOutput": "merge jobs are not supported",
    "log_merge": "merge jobs are not supported",
    "nGBPerJob": "splitting by input size needs file sizes skypanda does not know: give "
    "nFilesPerJob",
    "nGBPerMergeJob": "merge jobs are not supported",
    "useSecrets": "user secrets are not supported by skypanda",
    "tarBallViaDDM": _RUCIO,
    "useLocalIO": "direct I/O modes are not supported",
    "allowInputLAN": "direct I/O modes are not supported",
    "transferType": "direct I/O modes are not supported",
    "waitInput": "incremental inputs are not supported",
    "walltime": "give maxWalltime (hours per job) instead",
    "maxFailure": "give maxAttempt instead",
}
"""Task parameters that cannot work here, with what the refusal says."""

_JOB_PARAM_KEYS = frozenset(
    {"type", "value", "padding", "hidden", "param_type", "dataset", "container", "expand",
     "exclude", "include", "offset", "files", "destination", "token", "consolidate",
     "nFilesPerJob", "allowNoOutput", "ratio", "random", "reusable", "mergeOnly"}
)  # fmt: skip
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_PLACEHOLDERS = {
    "IN": "{input}", "IN/T": "{input}", "IN/L": "{input}",
    "FIRSTEVENT": "{first_event}", "MAXEVENTS": "{n_events}", "SKIPEVENTS": "{skip_events}",
}  # fmt: skip
_RAM_PER_CORE = ("MBPerCore", "MBPerCoreFixed")
_RAM_PER_JOB = ("MB", "MBFixed")


@dataclass(frozen=True)
class Submission:
    """A decoded `task/submit`: the task to submit, and whether its name must be new among
    the caller's tasks (`uniqueTaskName`, prun's default)."""

    spec: TaskSpec
    unique_name: bool


def jedi_task_id(task_id: str) -> int:
    """A skypanda task's jediTaskID (see the module docstring)."""
    return task_number(task_id)


def task_id_of(value: object, field: str = "task_id") -> str:
    """The skypanda task id of a jediTaskID as the client sends it (an int or a decimal string).

    Raises:
        PandaInputError: not a jediTaskID skypanda issues, naming `field`.
    """
    text = str(value).strip() if isinstance(value, int | str) and value is not True else ""
    if not re.fullmatch(r"[0-9]{1,15}", text) or not 0 < int(text) <= MAX_JEDI_TASK_ID:
        raise PandaInputError(f"{field} must be a jediTaskID (a positive integer below 2**48), "
                              f"not {str(value)[:40]!r}", field=field)  # fmt: skip
    return f"t{int(text):012x}"


def submission(params: Mapping[str, Any], parent_task_id: str | None = None) -> Submission:
    """Map a `task/submit`'s task parameters onto a skypanda task. `parent_task_id`: the
    task the client named as parent (`parent_tid`): the new task starts once it ended done
    or finished, unless `noWaitParent`.

    Raises:
        PandaInputError: an unknown or refused field, a missing `taskName` or `transPath`,
            a value of the wrong kind, or a task skypanda finds invalid; naming the field.
    """
    _check_fields(params)
    spec: dict[str, Any] = {"name": _task_name(params), **_command(params)}
    spec.update(_split(params))
    spec.update(_resources(params))
    spec.update(_placement(params))
    spec.update(_attempts_and_priority(params))
    if parent_task_id is not None and not _flag(params, "noWaitParent"):
        spec["start_after"] = {"task": parent_task_id, "status": ["done", "finished"]}
    try:
        task = TaskSpec.model_validate(spec)
    except ValidationError as e:
        problem = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in problem["loc"]) or "task_parameters"
        raise PandaInputError(f"task_parameters: {where}: {problem['msg']}",
                              field=_panda_name(where, problem["msg"])) from e  # fmt: skip
    return Submission(task, _flag(params, "uniqueTaskName"))


def _check_fields(params: Mapping[str, Any]) -> None:
    for name in params:
        if name in REFUSED:
            raise PandaInputError(f"task parameter {name} is not supported: {REFUSED[name]}",
                                  field=name)  # fmt: skip
    unknown = sorted(set(params) - MAPPED - IGNORED - set(REFUSED))
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise PandaInputError(f"unknown task parameter {unknown[0]!r}{more}; skypanda maps "
                              f"{', '.join(sorted(MAPPED))} and ignores "
                              f"{', '.join(sorted(IGNORED))}", field=unknown[0])  # fmt: skip


def _task_name(params: Mapping[str, Any]) -> str:
    name = _text(params, "taskName")
    if not name:
        raise PandaInputError("taskName is required", field="taskName")
    # prun's taskName is its output dataset container: `user.alice.test/`
    name = name.removesuffix("/")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name):
        raise PandaInputError(f"taskName {name[:120]!r} must be 1-100 letters, digits, '.', "
                              "'_' or '-' (starting with a letter or digit), with at most a "
                              "trailing '/'", field="taskName")  # fmt: skip
    return name


def _command(params: Mapping[str, Any]) -> dict[str, Any]:
    """The task's `command` (and `outputs`, from prun's outputs map)."""
    program = _text(params, "transPath")
    items = params.get("jobParameters", [])
    if not isinstance(items, list):
        raise PandaInputError("jobParameters must be a list of items", field="jobParameters")
    if not program and client_prun.is_prun(items):
        made = client_prun.run_gen(items)
        return {"command": made.command, "outputs": made.outputs}
    if not program:
        raise PandaInputError("transPath is required: the program each job runs (or prun's "
                              "--exec in jobParameters)", field="transPath")  # fmt: skip
    text = ""
    for i, item in enumerate(items):
        text += _job_parameter(i, item)
    try:
        words = shlex.split(text)
    except ValueError as e:
        raise PandaInputError(f"jobParameters do not split into words as a shell would: {e}",
                              field="jobParameters") from e  # fmt: skip
    return {"command": [_escape_braces(program), *words]}


def _job_parameter(i: int, item: object) -> str:
    """One item of `jobParameters` as text (with its trailing space unless `padding` false)."""
    where = f"jobParameters[{i}]"
    if not isinstance(item, dict):
        raise PandaInputError(f"{where} must be an object", field="jobParameters")
    unknown = sorted(set(item) - _JOB_PARAM_KEYS)
    if unknown:
        raise PandaInputError(f"{where}: unknown key {unknown[0]!r}", field="jobParameters")
    kind = item.get("type")
    if kind == "template" or "param_type" in item or "dataset" in item:
        role = item.get("param_type", "template")
        raise PandaInputError(f"{where}: {role} dataset {str(item.get('dataset'))[:100]!r}: "
                              f"{_RUCIO} (inputs) and keeps each job's log itself",
                              field="jobParameters")  # fmt: skip
    if kind != "constant":
        raise PandaInputError(f"{where}: type must be constant, not {kind!r}",
                              field="jobParameters")  # fmt: skip
    value = item.get("value", "")
    if not isinstance(value, str):
        raise PandaInputError(f"{where}: value must be text", field="jobParameters")
    if item.get("hidden") is True:
        return ""
    pad = " " if item.get("padding", True) is not False else ""
    return _placeholders(where, value) + pad


def _placeholders(where: str, value: str) -> str:
    """JEDI's `${X}` placeholders as skypanda's `{x}`; literal braces doubled."""
    out, last = [], 0
    for m in _PLACEHOLDER.finditer(value):
        out.append(_escape_braces(value[last : m.start()]))
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if name not in _PLACEHOLDERS:
            raise PandaInputError(f"{where}: placeholder {m.group(0)!r} is not one skypanda "
                                  f"fills ({', '.join('${' + p + '}' for p in _PLACEHOLDERS)})",
                                  field="jobParameters")  # fmt: skip
        out.append(_PLACEHOLDERS[name])
        last = m.end()
    out.append(_escape_braces(value[last:]))
    return "".join(out)


def _escape_braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _split(params: Mapping[str, Any]) -> dict[str, Any]:
    """pfnList: one job per nFilesPerJob files (or per nEventsPerJob events of files of
    nEventsPerFile); no inputs: nEvents in jobs of nEventsPerJob, or nFiles pseudo-files in
    jobs of nFilesPerJob, or one job."""
    files_per_job = _int(params, "nFilesPerJob", 1, 1_000_000)
    n_files = _int(params, "nFiles", 1, 10_000_000)
    n_events = _int(params, "nEvents", 1, 10**15)
    per_job = _int(params, "nEventsPerJob", 1, 10**15)
    per_file = _int(params, "nEventsPerFile", 1, 10**15) or _int(
        params, "nEventsPerInputFile", 1, 10**15
    )
    pfns = params.get("pfnList")
    if pfns is not None:
        if not isinstance(pfns, list) or not pfns or not all(isinstance(p, str) for p in pfns):
            raise PandaInputError("pfnList must be a non-empty list of file names or URLs",
                                  field="pfnList")  # fmt: skip
        if n_events is not None:
            raise PandaInputError("nEvents splits a task without inputs; with pfnList give "
                                  "nEventsPerFile and nEventsPerJob", field="nEvents")  # fmt: skip
        inputs = [_escape_braces(p) for p in pfns[: n_files or len(pfns)]]
        if per_job is not None or per_file is not None:
            if per_job is None or per_file is None:
                field = "nEventsPerJob" if per_job is None else "nEventsPerFile"
                raise PandaInputError("splitting files by events needs both nEventsPerFile "
                                      "and nEventsPerJob", field=field)  # fmt: skip
            return {"inputs": inputs, "events_per_input": per_file, "events_per_job": per_job}
        return {"inputs": inputs, "files_per_job": files_per_job or 1}
    if per_file is not None:
        raise PandaInputError("nEventsPerFile needs input files (pfnList)", field="nEventsPerFile")
    if n_events is not None:
        return {"n_events": n_events, "events_per_job": per_job or n_events}
    if per_job is not None:
        raise PandaInputError("nEventsPerJob needs nEvents (without inputs) or pfnList with "
                              "nEventsPerFile", field="nEventsPerJob")  # fmt: skip
    return {"n_jobs": math.ceil((n_files or 1) / (files_per_job or 1))}


def _resources(params: Mapping[str, Any]) -> dict[str, Any]:
    cores = _int(params, "coreCount", 1, 1024) or 1
    ram = _int(params, "ramCount", 1, 4_000_000)
    unit = params.get("ramCountUnit")
    out: dict[str, Any] = {"cores": cores}
    if unit is not None and unit not in _RAM_PER_CORE + _RAM_PER_JOB:
        raise PandaInputError(f"ramCountUnit {str(unit)[:40]!r} is not one of "
                              f"{', '.join(_RAM_PER_CORE + _RAM_PER_JOB)}",
                              field="ramCountUnit")  # fmt: skip
    if ram is not None:
        out["memory_mb"] = ram * cores if unit in _RAM_PER_CORE else ram
    hours = _number(params, "maxWalltime")
    if hours is not None:
        out["walltime_s"] = hours * 3600.0
    return {"resources": out}


def _placement(params: Mapping[str, Any]) -> dict[str, Any]:
    """`site` names the queue; without one, brokerage picks it among `includedSite` (all
    when empty) less `excludedSite` (PanDA's AUTO)."""
    site = _text(params, "site")
    if site and site.upper() != "AUTO":
        return {"queue": site}
    include, exclude = _sites(params, "includedSite"), _sites(params, "excludedSite")
    if include or exclude:
        return {"queue": AUTO_QUEUE, "queues": {"include": include, "exclude": exclude}}
    return {"queue": AUTO_QUEUE}


def _sites(params: Mapping[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise PandaInputError(f"{name} must be a list of queue names (or one comma-separated "
                              "text)", field=name)  # fmt: skip
    return [s.strip() for s in items if s.strip()]


def _attempts_and_priority(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    attempts = _int(params, "maxAttempt", 1, 100)
    if attempts is not None:
        out["max_attempts"] = attempts
    elif _flag(params, "disableAutoRetry"):
        out["max_attempts"] = 1
    priority = _int(params, "currentPriority", -1_000_000, 1_000_000)
    if priority is None:
        priority = _int(params, "taskPriority", -1_000_000, 1_000_000)
    if priority is not None:
        out["priority"] = priority
    return out


_SPEC_TO_PANDA = {
    "name": "taskName", "command": "jobParameters", "inputs": "pfnList",
    "files_per_job": "nFilesPerJob", "n_events": "nEvents", "events_per_job": "nEventsPerJob",
    "events_per_input": "nEventsPerFile", "n_jobs": "nFiles", "max_attempts": "maxAttempt",
    "priority": "currentPriority", "queue": "site", "queues": "includedSite",
    "resources": "ramCount", "start_after": "parent_tid", "outputs": "jobParameters",
}  # fmt: skip


def _panda_name(where: str, message: str) -> str:
    """The task parameter a TaskSpec field came from (for a refusal's `field`)."""
    top = where.split(".", 1)[0]
    if where.startswith("resources.walltime") or (top == "resources" and "walltime" in message):
        return "maxWalltime"
    if where.startswith("resources.cores"):
        return "coreCount"
    return _SPEC_TO_PANDA.get(top, "task_parameters")


def _text(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PandaInputError(f"{name} must be text, not {type(value).__name__}", field=name)
    return value.strip()


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value in (0, 1):
        return bool(value)
    raise PandaInputError(f"{name} must be true or false, not {str(value)[:40]!r}", field=name)


def _number(params: Mapping[str, Any], name: str) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PandaInputError(f"{name} must be a positive number, not {str(value)[:40]!r}",
                              field=name)  # fmt: skip
    return float(value)


def _int(params: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,16}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PandaInputError(f"{name} must be a whole number from {low} to {high}, not "
                              f"{str(value)[:40]!r}", field=name)  # fmt: skip
    return value
