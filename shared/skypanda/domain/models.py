"""Value objects: what users submit (TaskSpec) and what the system stores (Task, Job, Queue, Pilot).

Models are pydantic: they validate at construction and name the field that is wrong. Stored
objects are frozen; a change is a new object made by `model_copy(update=...)`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from skypanda.domain.states import JobStatus, PilotStatus, TaskStatus

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


def parse_duration(value: object) -> object:
    """Accept seconds as a number or a string such as '90', '30s', '10m', '2h', '1d'."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. '30s', '10m', '2h')")
        return float(match.group(1)) * _UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    """What one job needs; a pilot only receives jobs that fit its own resources."""

    memory_mb: int = Field(default=2000, ge=1, le=4_000_000)
    cores: int = Field(default=1, ge=1, le=1024)
    walltime_s: Duration = Field(default=3600.0, alias="walltime")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def fits(self, capacity: Resources) -> bool:
        return self.memory_mb <= capacity.memory_mb and self.cores <= capacity.cores


class TaskSpec(_Strict):
    """A task as a user writes it (YAML or JSON)."""

    name: str = Field(pattern=NAME_PATTERN)
    command: list[str] = Field(min_length=1)
    inputs: list[str] | None = None
    n_jobs: int | None = Field(default=None, ge=1, le=10_000_000)
    files_per_job: int = Field(default=1, ge=1)
    resources: Resources = Field(default_factory=Resources)
    max_attempts: int = Field(default=3, ge=1, le=100)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    queue: str = Field(default="local", pattern=NAME_PATTERN)
    env: dict[str, str] = Field(default_factory=dict)
    allow_partial: bool = False

    @field_validator("command")
    @classmethod
    def _command_words(cls, command: list[str]) -> list[str]:
        if not command[0].strip():
            raise ValueError("the first word of command (the program) must not be empty")
        return command

    @field_validator("inputs")
    @classmethod
    def _inputs_nonempty(cls, inputs: list[str] | None) -> list[str] | None:
        if inputs is not None and not inputs:
            raise ValueError("inputs is empty: list at least one input, or use n_jobs")
        return inputs

    @model_validator(mode="after")
    def _inputs_or_n_jobs(self) -> TaskSpec:
        check_job_source(self)
        return self


def check_job_source(spec: TaskSpec) -> None:
    """A task's jobs come from inputs or from n_jobs, exactly one. Raises ValueError."""
    if spec.inputs is None and spec.n_jobs is None:
        raise ValueError("give either inputs (one job per input group) or n_jobs")
    if spec.inputs is not None and spec.n_jobs is not None:
        raise ValueError("give inputs or n_jobs, not both")
    if spec.n_jobs is not None and spec.files_per_job != 1:
        raise ValueError("files_per_job needs inputs; with n_jobs there are no files")


class JobSpec(_Strict):
    """One job cut from a task by the splitter, before it is stored."""

    index: int = Field(ge=0)
    command: list[str]
    inputs: list[str] = Field(default_factory=list)
    parents: list[str] = Field(default_factory=list)


class Task(_Strict):
    id: str
    spec: TaskSpec
    owner: str = "local"
    status: TaskStatus = TaskStatus.REGISTERED
    reason: str = ""
    n_jobs: int = 0
    created_at: float
    updated_at: float
    job_counts: dict[str, int] = Field(default_factory=dict)
    workflow_id: str | None = None
    iteration: int = 1  # a loop's body tasks are made again, iteration 2, 3, ...


class Job(_Strict):
    id: str
    task_id: str
    index: int
    status: JobStatus
    attempt: int = 1
    failures: int = 0
    max_attempts: int = 3
    queue: str
    priority: int = 0
    resources: Resources = Field(default_factory=Resources)
    command: list[str]
    inputs: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    parents: list[str] = Field(default_factory=list)
    pilot_id: str | None = None
    kill_requested: bool = False
    exit_code: int | None = None
    error_code: int | None = None
    error_diag: str = ""
    log_uri: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    ended_at: float | None = None
    flags: dict[str, str] = Field(default_factory=dict)


class Attempt(_Strict):
    """The record of one attempt of a job: kept after the job moves on."""

    job_id: str
    attempt: int
    pilot_id: str | None
    status: JobStatus
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    error_code: int | None = None
    error_diag: str = ""
    log_uri: str | None = None


class Queue(_Strict):
    """Where jobs run (a CRIC PanDA queue), with what the local scaler keeps running there."""

    name: str = Field(pattern=NAME_PATTERN)
    mode: str = Field(default="pull", pattern="^(pull|push)$")
    online: bool = True
    min_pilots: int = Field(default=1, ge=0)
    max_pilots: int = Field(default=2, ge=0, le=10_000)
    pilot_resources: Resources = Field(default_factory=lambda: Resources(memory_mb=4000))
    heartbeat_interval_s: Duration = 5.0
    heartbeat_timeout_s: Duration = 60.0
    idle_timeout_s: Duration = 30.0
    jobs_per_acquire: int = Field(default=8, ge=1, le=1000)
    looping_timeout_s: Duration = 1800.0  # a payload silent this long (no output, no file
    # change in its workdir) is killed as looping (PanDA's looping job check)

    @model_validator(mode="after")
    def _limits(self) -> Queue:
        if self.min_pilots > self.max_pilots:
            raise ValueError(
                f"min_pilots ({self.min_pilots}) exceeds max_pilots ({self.max_pilots})"
            )
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be longer than heartbeat_interval_s")
        return self


class Pilot(_Strict):
    id: str
    queue: str
    status: PilotStatus = PilotStatus.SUBMITTED
    host: str = ""
    pid: int | None = None
    launcher_ref: str = ""
    resources: Resources = Field(default_factory=Resources)
    version: str = ""
    created_at: float
    heartbeat_at: float | None = None
    ended_at: float | None = None
    n_jobs: int = 0
    reason: str = ""


class JobReport(_Strict):
    """What a pilot reports about one job it holds (one element of a bulk update)."""

    job_id: str
    attempt: int = Field(ge=1)
    status: JobStatus
    exit_code: int | None = None
    error_code: int | None = None
    error_diag: str = Field(default="", max_length=4000)
    log_uri: str | None = None
    flags: dict[str, str] = Field(default_factory=dict)

    @field_validator("flags")
    @classmethod
    def _small_flags(cls, flags: dict[str, str]) -> dict[str, str]:
        if len(flags) > MAX_FLAGS or any(len(k) + len(v) > 1000 for k, v in flags.items()):
            raise ValueError(f"at most {MAX_FLAGS} flags of at most 1000 characters each")
        return flags

    @field_validator("status")
    @classmethod
    def _reportable(cls, status: JobStatus) -> JobStatus:
        if status not in REPORTABLE:
            raise ValueError(
                f"a pilot cannot report {status!s}; use one of {', '.join(sorted(REPORTABLE))}"
            )
        return status


MAX_FLAGS = 32

REPORTABLE = frozenset(
    {JobStatus.STARTING, JobStatus.RUNNING, JobStatus.FINISHED, JobStatus.FAILED}
)


def jsonable(model: BaseModel) -> dict[str, Any]:
    """A model as plain JSON-able values (enums as strings)."""
    return model.model_dump(mode="json")
