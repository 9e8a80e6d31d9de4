"""What the system stores of the work: tasks, jobs, their attempts, and pilots' reports."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from skypanda.domain.data import MAX_OUTPUTS, OutputFile
from skypanda.domain.states import JobStatus, TaskStatus
from skypanda.domain.taskspec import TaskSpec
from skypanda.domain.values import (
    INT32_MAX,
    ErrorCodeNumber,
    ExitCode,
    Int,
    Resources,
    Strict,
    Text,
)

MAX_ID_CHARS = 200
"""A job id a pilot reports (ids are far shorter)."""
MAX_URI_CHARS = 2048


class Task(Strict):
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


class Job(Strict):
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
    max_rss_mb: int | None = None  # the payload's peak memory, as its pilot reported it
    # When its current attempt became ready to run: its last change before a pilot claimed it
    # (its activation, or a later move while it waited); set by the claim, None before.
    activated_at: float | None = None


assert not Job.__pydantic_post_init__ and not Job.__private_attributes__
assert all(f.alias is None and f.validation_alias is None for f in Job.model_fields.values())


def job_of_values(values: dict[str, Any], fields_set: AbstractSet[str]) -> Job:
    """A Job of values known to be valid (read back from a store, or a validated job's with
    some fields replaced by valid ones), not validated again: what `model_construct` or
    `model_copy(update=...)` would make, set directly, for a third of their cost (a Job has
    no aliases, post-init or private attributes to handle: asserted above). `values` becomes
    the job's own (pass a new dict)."""
    job = Job.__new__(Job)
    object.__setattr__(job, "__dict__", values)
    object.__setattr__(job, "__pydantic_fields_set__", set(fields_set))
    object.__setattr__(job, "__pydantic_extra__", None)
    object.__setattr__(job, "__pydantic_private__", None)
    return job


class Attempt(Strict):
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
    max_rss_mb: int | None = None  # the payload's peak resident memory in this attempt


class JobReport(Strict):
    """What a pilot reports about one job it holds (one element of a bulk update)."""

    job_id: Text = Field(max_length=MAX_ID_CHARS)
    attempt: Int = Field(ge=1, le=INT32_MAX)
    status: JobStatus
    exit_code: ExitCode | None = None
    error_code: ErrorCodeNumber | None = None
    error_diag: Text = Field(default="", max_length=4000)
    log_uri: Text | None = Field(default=None, max_length=MAX_URI_CHARS)
    flags: dict[Text, Text] = Field(default_factory=dict)
    outputs: list[OutputFile] = Field(default_factory=list, max_length=MAX_OUTPUTS)
    # The payload's peak resident memory (its process tree), in a final report.
    max_rss_mb: Int | None = Field(default=None, ge=0, le=INT32_MAX)

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
