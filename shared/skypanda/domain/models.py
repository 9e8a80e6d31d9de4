"""Value objects: what users submit (TaskSpec) and what the system stores (Task, Job, Queue, Pilot).

Models are pydantic: they validate at construction and name the field that is wrong. Stored
objects are frozen; a change is a new object made by `model_copy(update=...)`.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from skypanda.domain.launchers import LauncherSpec, LocalLauncherSpec
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
MAX_EVENTS = 10**15
"""Bound on event numbers and counts (a task's job count is bounded separately)."""


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


class QueueChoice(_Strict):
    """Where brokerage may send a task (`queues:` in a task): only `include`d queues when the
    list is given (a test queue only when included), never `exclude`d ones, and only queues
    with at least `gpus` GPUs per pilot."""

    include: list[str] = Field(default_factory=list, max_length=1000)
    exclude: list[str] = Field(default_factory=list, max_length=1000)
    gpus: int = Field(default=0, ge=0, le=64)

    @field_validator("include", "exclude")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not re.match(NAME_PATTERN, n)]
        if bad:
            raise ValueError(f"not queue names: {', '.join(map(repr, bad))}")
        return names

    @model_validator(mode="after")
    def _disjoint(self) -> QueueChoice:
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise ValueError(f"queues both included and excluded: {', '.join(both)}")
        return self


class RetryRule(_Strict):
    """What to do after a failed attempt that matches (JEDI's retry rules). Rules are tried in
    order; the first match decides. A rule matches when every matcher it has matches: error
    `codes`, payload `exit_codes`, a regex `pattern` searched in the diagnosis."""

    codes: list[int] = Field(default_factory=list)
    exit_codes: list[int] = Field(default_factory=list)
    pattern: str | None = None
    action: str = Field(pattern="^(no_retry|retry|increase_memory|increase_walltime)$")
    max_retries: int | None = Field(default=None, ge=0, le=100)
    factor: float = Field(default=1.5, gt=1.0, le=10.0)

    @model_validator(mode="after")
    def _matches_something(self) -> RetryRule:
        if not (self.codes or self.exit_codes or self.pattern):
            raise ValueError("a retry rule needs codes, exit_codes or a pattern to match")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"bad pattern {self.pattern!r}: {e}") from e
        return self


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
    n_events: int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    events_per_job: int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    first_event: int = Field(default=0, ge=0, le=MAX_EVENTS)
    events_per_input: int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    input_sizes_mb: list[Annotated[float, Field(ge=0)]] | None = None
    size_per_job_mb: float | None = Field(default=None, gt=0)
    jobs: list[Annotated[list[str], Field(min_length=1)]] | None = Field(default=None, min_length=1)
    resources: Resources = Field(default_factory=Resources)
    max_attempts: int = Field(default=3, ge=1, le=100)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    queue: str = Field(default="local", pattern=NAME_PATTERN)  # `auto`: brokerage picks it
    queues: QueueChoice | None = None  # brokerage's include/exclude lists (implies queue: auto)
    env: dict[str, str] = Field(default_factory=dict)
    allow_partial: bool = False
    retry_rules: list[RetryRule] = Field(default_factory=list, max_length=50)
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

    @model_validator(mode="before")
    @classmethod
    def _queues_mean_auto(cls, data: Any) -> Any:
        """`queues:` without `queue:` asks for brokerage, as `queue: auto` does."""
        if isinstance(data, dict) and data.get("queues") is not None and "queue" not in data:
            return {**data, "queue": AUTO_QUEUE}
        return data

    @model_validator(mode="after")
    def _inputs_or_n_jobs(self) -> TaskSpec:
        check_job_source(self)
        return self

    @property
    def split_mode(self) -> SplitMode:
        return split_mode(self)


class SplitMode(StrEnum):
    """How a task is cut into jobs; the field that selects each mode is in `_MODE_FIELDS`."""

    FILES = "files"  # inputs, files_per_job per job (the default)
    COUNT = "count"  # n_jobs jobs without inputs
    EVENTS = "events"  # n_events in ranges of events_per_job, without inputs (generation)
    EVENTS_PER_INPUT = "events_per_input"  # each input's events in ranges of events_per_job
    SIZE = "size"  # inputs grouped greedily up to size_per_job_mb
    JOBS = "jobs"  # an explicit list: each entry is one job's inputs


_MODE_FIELDS = {
    "n_jobs": SplitMode.COUNT,
    "n_events": SplitMode.EVENTS,
    "events_per_input": SplitMode.EVENTS_PER_INPUT,
    "size_per_job_mb": SplitMode.SIZE,
    "jobs": SplitMode.JOBS,
}
EVENT_MODES = frozenset({SplitMode.EVENTS, SplitMode.EVENTS_PER_INPUT})


def split_mode(spec: TaskSpec) -> SplitMode:
    """The split mode of a (validated) task: the one mode field given, else files."""
    for field, mode in _MODE_FIELDS.items():
        if getattr(spec, field) is not None:
            return mode
    return SplitMode.FILES


def check_job_source(spec: TaskSpec) -> None:
    """A task has exactly one split mode, and only the fields of that mode.

    Raises:
        ValueError: names the fields that clash or are missing.
    """
    given = [f for f in _MODE_FIELDS if getattr(spec, f) is not None]
    if spec.inputs is None and not given:
        raise ValueError(
            "give either inputs (one job per input group), n_jobs, n_events or jobs "
            "to say how the task is split"
        )
    if len(given) > 1:
        raise ValueError(f"one split mode per task: give one of {', '.join(given)}, not several")
    mode = split_mode(spec)
    _check_inputs_for_mode(spec, mode)
    _check_mode_fields(spec, mode)


def _check_inputs_for_mode(spec: TaskSpec, mode: SplitMode) -> None:
    if mode is SplitMode.COUNT and spec.inputs is not None:
        raise ValueError("give inputs or n_jobs, not both")
    if mode is SplitMode.EVENTS and spec.inputs is not None:
        raise ValueError(
            "n_events splits a task without inputs (event generation); to split input files "
            "by events give events_per_input (events in each file) instead of n_events"
        )
    if mode is SplitMode.JOBS and spec.inputs is not None:
        raise ValueError("jobs lists each job's inputs: give jobs or inputs, not both")
    if mode in (SplitMode.EVENTS_PER_INPUT, SplitMode.SIZE) and spec.inputs is None:
        raise ValueError(f"{_field_of(mode)} needs inputs")
    if spec.files_per_job != 1 and mode is not SplitMode.FILES:
        if mode is SplitMode.COUNT:
            raise ValueError("files_per_job needs inputs; with n_jobs there are no files")
        raise ValueError(
            f"files_per_job groups inputs by count; it cannot be combined with {_field_of(mode)}"
        )


def _check_mode_fields(spec: TaskSpec, mode: SplitMode) -> None:
    if mode in EVENT_MODES:
        if spec.events_per_job is None:
            raise ValueError(f"{_field_of(mode)} needs events_per_job (events in each job)")
    elif spec.events_per_job is not None or spec.first_event:
        raise ValueError(
            "events_per_job and first_event need n_events (events without inputs) or "
            "events_per_input (events in each input file)"
        )
    epi, epj = spec.events_per_input, spec.events_per_job
    if epi is not None and epj is not None and epj > epi:
        raise ValueError(
            f"events_per_job ({epj}) is more than events_per_input ({epi}): a job never spans "
            "input files; to put several whole files in one job use files_per_job instead"
        )
    if mode is SplitMode.SIZE:
        if spec.input_sizes_mb is None:
            raise ValueError("size_per_job_mb needs input_sizes_mb (one size in MB per input)")
        if spec.inputs is not None and len(spec.input_sizes_mb) != len(spec.inputs):
            raise ValueError(
                f"input_sizes_mb has {len(spec.input_sizes_mb)} sizes for "
                f"{len(spec.inputs)} inputs: give one size per input, in the same order"
            )
    elif spec.input_sizes_mb is not None:
        raise ValueError("input_sizes_mb needs size_per_job_mb (the most MB one job reads)")


def _field_of(mode: SplitMode) -> str:
    return next(f for f, m in _MODE_FIELDS.items() if m is mode)


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
    owner: str = "local"  # the task's owner: fair share on a queue is between owners
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


class QueueStatus(StrEnum):
    """A queue's status (CRIC's): whether brokerage sends tasks there."""

    ONLINE = "online"  # brokered to, pilots run
    OFFLINE = "offline"  # not brokered to, no pilot starts; queued jobs wait
    TEST = "test"  # pilots run, but only tasks that name the queue are brokered there


AUTO_QUEUE = "auto"
"""`queue: auto` in a task: brokerage picks the queue. No queue may be named so."""


class Queue(_Strict):
    """Where jobs run (a CRIC PanDA queue): its status and limits, which brokerage checks,
    and what the local scaler keeps running there.

    Limits left out (None) are the pilot's own: `max_cores` defaults to `pilot_resources.cores`;
    memory is always bounded by `pilot_resources.memory_mb`. Older stored queues carry
    `online: true|false` instead of `status`; they load as online/offline.
    """

    name: str = Field(pattern=NAME_PATTERN)
    mode: str = Field(default="pull", pattern="^(pull|push)$")
    status: QueueStatus = QueueStatus.ONLINE
    min_pilots: int = Field(default=1, ge=0)
    max_pilots: int = Field(default=2, ge=0, le=10_000)
    pilot_resources: Resources = Field(default_factory=lambda: Resources(memory_mb=4000))
    max_memory_per_core_mb: int | None = Field(default=None, ge=1, le=4_000_000)
    max_cores: int | None = Field(default=None, ge=1, le=1024)
    max_walltime_s: Duration | None = None
    disk_gb: float | None = Field(default=None, gt=0, le=1_000_000)  # scratch per pilot
    gpus: int = Field(default=0, ge=0, le=64)  # GPUs per pilot
    heartbeat_interval_s: Duration = 5.0
    heartbeat_timeout_s: Duration = 60.0
    idle_timeout_s: Duration = 30.0
    jobs_per_acquire: int = Field(default=8, ge=1, le=1000)
    looping_timeout_s: Duration = 1800.0  # a payload silent this long (no output, no file
    # change in its workdir) is killed as looping (PanDA's looping job check)
    shares: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    launcher: LauncherSpec = Field(default_factory=LocalLauncherSpec)
    # scaler (Harvester): pilots kept ready, new ones per decision, queued (not yet running) at
    # most; push mode launches one pilot per activated job instead
    max_new_per_cycle: int = Field(default=10, ge=1, le=1000)
    max_queued: int = Field(default=10, ge=1, le=10_000)
    # fair share between owners on this queue: owner -> weight (others 1; 0: only when no
    # one else has jobs waiting)

    @model_validator(mode="before")
    @classmethod
    def _online_to_status(cls, data: Any) -> Any:
        """Migrate the old `online: bool` field (stored queues, old files) to `status`."""
        if not isinstance(data, dict) or "online" not in data:
            return data
        data = dict(data)
        online = data.pop("online")
        if not isinstance(online, bool):
            raise ValueError(f"online must be true or false, not {online!r} (prefer status)")
        status = QueueStatus.ONLINE if online else QueueStatus.OFFLINE
        if "status" in data and str(data["status"]) != status:
            raise ValueError(f"online: {online} contradicts status: {data['status']}")
        data.setdefault("status", status)
        return data

    @property
    def online(self) -> bool:
        """Pilots register and are scaled here: the queue is online or test (not offline)."""
        return self.status is not QueueStatus.OFFLINE

    @property
    def cores_limit(self) -> int:
        """Most cores one job may ask for here."""
        return self.max_cores if self.max_cores is not None else self.pilot_resources.cores

    @model_validator(mode="after")
    def _limits(self) -> Queue:
        if self.name == AUTO_QUEUE:
            raise ValueError(f"{AUTO_QUEUE!r} is reserved (queue: auto asks for brokerage)")
        if self.min_pilots > self.max_pilots:
            raise ValueError(
                f"min_pilots ({self.min_pilots}) exceeds max_pilots ({self.max_pilots})"
            )
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be longer than heartbeat_interval_s")
        if self.max_cores is not None and self.max_cores > self.pilot_resources.cores:
            raise ValueError(
                f"max_cores ({self.max_cores}) exceeds pilot_resources.cores "
                f"({self.pilot_resources.cores}): no pilot could run such a job"
            )
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
    push_job: str | None = None  # push mode: the one job this pilot was launched for


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
