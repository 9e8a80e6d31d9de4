"""What a user submits: a task's spec (command, inputs, split rule, resources, retry rules,
queue choice) and the job specs a split makes of it."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from skypanda.domain.chain import StartAfter
from skypanda.domain.data import MAX_EVENTS, MAX_OUTPUT_PATTERNS, check_output_pattern
from skypanda.domain.errors import InvalidInput
from skypanda.domain.fleet import AUTO_QUEUE
from skypanda.domain.notifications import (
    DEFAULT_NOTIFY_ON,
    MAX_NOTIFY_URLS,
    NotifyOnList,
    WebhookUrl,
)
from skypanda.domain.patterns import compile_user_pattern
from skypanda.domain.values import (
    MAX_ATTEMPTS,
    MAX_GPUS,
    NAME_PATTERN,
    Arg,
    Env,
    ErrorCodeNumber,
    ExitCode,
    Finite,
    Flag,
    Int,
    Priority,
    Request,
    Resources,
    Strict,
    storable,
)

MAX_JOBS = 10_000_000
"""The most jobs (and inputs, and explicit job lists) a task spec describes; submission sets a
lower limit on the jobs it makes."""
MAX_FILES_PER_JOB = 1_000_000
MAX_SIZE_MB = 1e9
"""An input's size, or the input one job reads: a petabyte."""
MAX_COMMAND_WORDS = 10_000
MAX_QUEUE_NAMES = 1000
MAX_RULE_CODES = 256
MAX_RETRY_RULES = 50
_NAME = re.compile(NAME_PATTERN)


class QueueChoice(Strict):
    """Where brokerage may send a task (`queues:` in a task): only `include`d queues when the
    list is given (a test queue only when included), never `exclude`d ones, and only queues
    with at least `gpus` GPUs per pilot."""

    include: list[str] = Field(default_factory=list, max_length=MAX_QUEUE_NAMES)
    exclude: list[str] = Field(default_factory=list, max_length=MAX_QUEUE_NAMES)
    gpus: Int = Field(default=0, ge=0, le=MAX_GPUS)

    @field_validator("include", "exclude")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not _NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"not queue names: {', '.join(map(repr, bad))}")
        return names

    @model_validator(mode="after")
    def _disjoint(self) -> QueueChoice:
        both = sorted(set(self.include) & set(self.exclude))
        if both:
            raise ValueError(f"queues both included and excluded: {', '.join(both)}")
        return self


class RetryRule(Strict):
    """What to do after a failed attempt that matches (JEDI's retry rules). Rules are tried in
    order; the first match decides. A rule matches when every matcher it has matches: error
    `codes`, payload `exit_codes`, a regex `pattern` searched in the diagnosis."""

    codes: list[ErrorCodeNumber] = Field(default_factory=list, max_length=MAX_RULE_CODES)
    exit_codes: list[ExitCode] = Field(default_factory=list, max_length=MAX_RULE_CODES)
    pattern: str | None = None
    action: str = Field(pattern="^(no_retry|retry|increase_memory|increase_walltime)$")
    max_retries: Int | None = Field(default=None, ge=0, le=MAX_ATTEMPTS)
    factor: Finite = Field(default=1.5, gt=1.0, le=10.0)

    @model_validator(mode="after")
    def _matches_something(self) -> RetryRule:
        if not (self.codes or self.exit_codes or self.pattern):
            raise ValueError("a retry rule needs codes, exit_codes or a pattern to match")
        if self.pattern is not None:
            try:
                compile_user_pattern(self.pattern, "pattern")
            except InvalidInput as e:
                raise ValueError(e.message) from e
        return self


def _all_strings(value: object) -> object:
    """Raises ValueError naming the first value of a list that is not a string, and how many
    such there are."""
    if isinstance(value, list):
        bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
        if bad:
            more = (
                f" (and {len(bad) - 1:,} more values that are not strings)" if len(bad) > 1 else ""
            )
            raise ValueError(f"item {bad[0]} is {type(value[bad[0]]).__name__}, not a string{more}")
    return value


class TaskSpec(Strict):
    """A task as a user writes it (YAML or JSON).

    With `stage_in`, each input is a URL (file://, http(s)://, gs://) the pilot fetches into
    the job's working directory before the payload starts; the command's placeholders then
    hold the local names (`{input}` of `gs://b/run1/x.root` is `x.root`), so a payload opens
    its inputs as given. `outputs` are glob patterns, relative to the working directory, of
    files the pilot uploads once the payload succeeded (staged inputs are never outputs).
    """

    name: str = Field(pattern=NAME_PATTERN)
    command: list[Arg] = Field(min_length=1, max_length=MAX_COMMAND_WORDS)
    inputs: list[Arg] | None = Field(default=None, max_length=MAX_JOBS)
    n_jobs: Int | None = Field(default=None, ge=1, le=MAX_JOBS)
    files_per_job: Int = Field(default=1, ge=1, le=MAX_FILES_PER_JOB)
    n_events: Int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    events_per_job: Int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    first_event: Int = Field(default=0, ge=0, le=MAX_EVENTS)
    events_per_input: Int | None = Field(default=None, ge=1, le=MAX_EVENTS)
    input_sizes_mb: list[Annotated[Finite, Field(ge=0, le=MAX_SIZE_MB)]] | None = Field(
        default=None, max_length=MAX_JOBS
    )
    size_per_job_mb: Finite | None = Field(default=None, gt=0, le=MAX_SIZE_MB)
    jobs: list[Annotated[list[Arg], Field(min_length=1)]] | None = Field(
        default=None, min_length=1, max_length=MAX_JOBS
    )
    resources: Request = Field(default_factory=Resources)
    max_attempts: Int = Field(default=3, ge=1, le=MAX_ATTEMPTS)
    priority: Priority = 0
    queue: str = Field(default="local", pattern=NAME_PATTERN)  # `auto`: brokerage picks it
    queues: QueueChoice | None = None  # brokerage's include/exclude lists (implies queue: auto)
    env: Env = Field(default_factory=dict)
    allow_partial: Flag = False
    retry_rules: list[RetryRule] = Field(default_factory=list, max_length=MAX_RETRY_RULES)
    stage_in: Flag = False
    outputs: list[str] = Field(default_factory=list, max_length=MAX_OUTPUT_PATTERNS)
    start_after: StartAfter | None = None  # held until another task or workflow ends (chain)
    # Webhooks told when this task ends (signed with the owner's secret: domain.webhooks)
    notify: list[WebhookUrl] = Field(default_factory=list, max_length=MAX_NOTIFY_URLS)
    # What its webhooks and the notifications topic are told: `end` (the default), `job_end`
    # (each job's end), `state` (each change of its status); [] for nothing (domain.notifications)
    notify_on: NotifyOnList = Field(default_factory=lambda: list(DEFAULT_NOTIFY_ON))

    @field_validator("command")
    @classmethod
    def _command_words(cls, command: list[str]) -> list[str]:
        if not command[0].strip():
            raise ValueError("the first word of command (the program) must not be empty")
        return command

    @field_validator("command", "inputs", mode="before")
    @classmethod
    def _strings_first(cls, value: object) -> object:
        """A list of many values that are not strings is one error, not one per value (a
        million integers made a million errors: seconds and a gigabyte)."""
        return _all_strings(value)

    @field_validator("jobs", mode="before")
    @classmethod
    def _groups_of_strings(cls, value: object) -> object:
        if isinstance(value, list):
            for group in value:
                _all_strings(group)
        return value

    @field_validator("inputs")
    @classmethod
    def _inputs_nonempty(cls, inputs: list[str] | None) -> list[str] | None:
        if inputs is not None and not inputs:
            raise ValueError("inputs is empty: list at least one input, or use n_jobs")
        return inputs

    @field_validator("outputs")
    @classmethod
    def _output_patterns(cls, outputs: list[str]) -> list[str]:
        return [storable(check_output_pattern(p)) for p in outputs]

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


class JobSpec(Strict):
    """One job cut from a task by the splitter, before it is stored."""

    index: int = Field(ge=0)
    command: list[str]
    inputs: list[str] = Field(default_factory=list)
    parents: list[str] = Field(default_factory=list)
