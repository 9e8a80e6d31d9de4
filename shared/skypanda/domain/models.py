"""Value objects: what users submit (TaskSpec) and what the system stores (Task, Job, Queue, Pilot).

Models are pydantic: they validate at construction and name the field that is wrong. Stored
objects are frozen; a change is a new object made by `model_copy(update=...)`.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from collections.abc import Sequence
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


STAGE_IN_SCHEMES = ("file", "http", "https", "gs")
"""URL schemes a pilot can stage an input from (see skypanda.pilot.staging)."""
MAX_OUTPUT_PATTERNS = 100
MAX_OUTPUTS = 1000
"""Output files one job may record (files its patterns match, uploaded after it succeeded)."""
_SHA256 = r"^[0-9a-f]{64}$"


def staged_name(url: str) -> str:
    """The name an input URL is staged in as, in the job's working directory: the last part
    of its path (percent-decoded, except for gs:// whose object names are literal), e.g.
    `gs://bucket/run1/hits.root` -> `hits.root`. skypanda.pilot.staging.local_name applies
    the same rule on the pilot (a test holds them together).

    Raises:
        ValueError: not a URL the pilot can fetch, or it names no file.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in STAGE_IN_SCHEMES:
        raise ValueError(
            f"cannot stage in {url!r}: use a {', '.join(s + '://' for s in STAGE_IN_SCHEMES)} URL"
        )
    if scheme.lower() == "gs":
        bucket, _, path = rest.partition("/")
        if not bucket:
            raise ValueError(f"cannot stage in {url!r}: no bucket (write gs://bucket/object)")
    else:
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    name = posixpath.basename(path)
    if name in ("", ".", "..") or "\0" in name:
        raise ValueError(f"cannot stage in {url!r}: its path names no file")
    return name


def check_output_pattern(pattern: str) -> str:
    """A glob pattern of output files, relative to the job's working directory.

    Raises:
        ValueError: empty, absolute, climbing out with `..`, or too long.
    """
    if not pattern.strip() or len(pattern) > 256 or "\0" in pattern:
        raise ValueError(f"output pattern {pattern!r} must be 1 to 256 characters")
    if pattern.startswith("/") or "\\" in pattern:
        raise ValueError(f"output pattern {pattern!r} must be relative to the job's directory")
    if ".." in pattern.split("/"):
        raise ValueError(f"output pattern {pattern!r} must not climb out of it with '..'")
    return pattern


def check_output_name(name: str) -> str:
    """An output's name: its path relative to the job's working directory (`a.txt`,
    `plots/a.png`), also the last part of its blob key.

    Raises:
        ValueError: empty, absolute, with `.`/`..`/empty parts, control characters or
            backslashes, or longer than 512 characters.
    """
    parts = name.split("/")
    if not name or len(name) > 512 or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"output name {name!r} must be a relative path of 1 to 512 characters, "
            "without empty, '.' or '..' parts"
        )
    if "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"output name {name!r} must not hold backslashes or control characters")
    return name


class OutputFile(_Strict):
    """One output a pilot uploaded after its job succeeded (stage-out)."""

    name: str
    uri: str = Field(min_length=1, max_length=2048)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=_SHA256)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return check_output_name(name)


class TaskSpec(_Strict):
    """A task as a user writes it (YAML or JSON).

    With `stage_in`, each input is a URL (file://, http(s)://, gs://) the pilot fetches into
    the job's working directory before the payload starts; the command's placeholders then
    hold the local names (`{input}` of `gs://b/run1/x.root` is `x.root`), so a payload opens
    its inputs as given. `outputs` are glob patterns, relative to the working directory, of
    files the pilot uploads once the payload succeeded (staged inputs are never outputs).
    """

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
    stage_in: bool = False
    outputs: list[str] = Field(default_factory=list, max_length=MAX_OUTPUT_PATTERNS)

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

    @field_validator("outputs")
    @classmethod
    def _output_patterns(cls, outputs: list[str]) -> list[str]:
        return [check_output_pattern(p) for p in outputs]

    @model_validator(mode="after")
    def _inputs_or_n_jobs(self) -> TaskSpec:
        check_job_source(self)
        return self

    @model_validator(mode="after")
    def _stageable_inputs(self) -> TaskSpec:
        if self.stage_in and self.inputs is not None:
            check_staged_inputs(self.inputs, self.files_per_job)
        return self


def check_staged_inputs(inputs: Sequence[str], files_per_job: int) -> None:
    """Every input is a URL a pilot can fetch, and no two inputs of one job land under the
    same local name. Raises ValueError naming the input."""
    for start in range(0, len(inputs), files_per_job):
        seen: dict[str, str] = {}
        for url in inputs[start : start + files_per_job]:
            name = staged_name(url)
            if name in seen:
                raise ValueError(
                    f"inputs {seen[name]!r} and {url!r} of one job would both be staged in "
                    f"as {name!r}"
                )
            seen[name] = url


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
    stage_in: bool = False  # inputs are URLs the pilot fetches first (TaskSpec.stage_in)
    output_patterns: list[str] = Field(default_factory=list)  # TaskSpec.outputs
    outputs: list[OutputFile] = Field(default_factory=list)  # uploaded when it finished


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
    drain: bool = False  # the server asks the pilot to take no new job and exit when idle


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
    outputs: list[OutputFile] = Field(default_factory=list, max_length=MAX_OUTPUTS)

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

    @field_validator("outputs")
    @classmethod
    def _distinct_outputs(cls, outputs: list[OutputFile]) -> list[OutputFile]:
        names = [o.name for o in outputs]
        if len(set(names)) != len(names):
            raise ValueError("two outputs have the same name")
        return outputs

    @model_validator(mode="after")
    def _outputs_of_success(self) -> JobReport:
        if self.outputs and self.status != JobStatus.FINISHED:
            raise ValueError("only a finished report carries outputs")
        return self


MAX_FLAGS = 32

REPORTABLE = frozenset(
    {JobStatus.STARTING, JobStatus.RUNNING, JobStatus.FINISHED, JobStatus.FAILED}
)


def jsonable(model: BaseModel) -> dict[str, Any]:
    """A model as plain JSON-able values (enums as strings)."""
    return model.model_dump(mode="json")
